defmodule Jido.Distributed.Transport.LinkStore do
  @moduledoc """
  Owns the state that must outlive Link and Receiver processes: each remote
  node's buffer, epoch, wake-up flag and counters, the Receiver's
  sequencing state (`Jido.Distributed.Transport.Inbound`), the cache of node
  locations, the broadcast subscriptions (so a restarted
  `Jido.Distributed.TreeBroadcast` keeps them), and the nodes this node has
  been connected to with the connection attempts under way (see
  `Jido.Distributed.Transport.NodeCheck`). All are ETS tables, readable by
  callers without a message.

  It also watches node up/down events: it remembers every node that came up
  and forwards the events to the Link of that node, so Links need not each
  subscribe to every node event.

  A link row is `{node, buffer, epoch, notify, counters, pid}`:

    * `epoch` - random per buffer; the receiver resets its sequence state
      when it sees a new one (the sender restarted).
    * `notify` - `:atomics` of 2: slot 1 is 1 while the Link has a wake-up
      message or timer outstanding (so callers send at most one), slot 2 is
      the link's batch size.
    * `counters` - see `counter/1`.
  """
  use GenServer

  alias Jido.Distributed.Counters
  alias Jido.Distributed.Location
  alias Jido.Distributed.Options
  alias Jido.Distributed.Transport.{Inbound, LinkBuffer, NodeCheck}

  @links :jido_distributed_links
  @store :jido_distributed_link_store
  @counter_names [
    :frames,
    :raw_bytes,
    :wire_bytes,
    :acks,
    :retransmits,
    :dropped,
    :rejected
  ]

  @typedoc "A link row."
  @type row ::
          {node(), LinkBuffer.t(), pos_integer(), :atomics.atomics_ref(),
           :counters.counters_ref(), pid() | nil}

  @doc "Starts the store (one per node, registered under the module name)."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The row of `node`, if it has one."
  @spec lookup(node()) :: row() | nil
  def lookup(node) do
    case :ets.lookup(@links, node) do
      [row] -> row
      [] -> nil
    end
  end

  @doc "The row of `node`, created (with an empty buffer) if missing."
  @spec fetch_or_create(node()) :: row()
  def fetch_or_create(node), do: lookup(node) || GenServer.call(__MODULE__, {:create, node})

  @doc "Records the Link pid serving `node`."
  @spec set_pid(node(), pid()) :: true
  def set_pid(node, pid), do: :ets.update_element(@links, node, {6, pid})

  @doc "All link rows."
  @spec rows() :: [row()]
  def rows, do: :ets.tab2list(@links)

  @doc "Index of a named counter in a link's `:counters`."
  @spec counter(atom()) :: pos_integer()
  for {name, index} <- Enum.with_index(@counter_names, 1) do
    def counter(unquote(name)), do: unquote(index)
  end

  @doc "Reads a link's counters into a map."
  @spec read_counters(:counters.counters_ref()) :: %{atom() => non_neg_integer()}
  def read_counters(counters), do: Counters.read(counters, @counter_names)

  @doc "The Receiver's sequencing state (see `Jido.Distributed.Transport.Inbound`)."
  @spec inbound() :: Inbound.t()
  def inbound, do: :ets.lookup_element(@store, :inbound, 2)

  @impl true
  def init(_opts) do
    :ets.new(@links, [:named_table, :public, :set, read_concurrency: true])
    :ets.new(@store, [:named_table, :protected, :set, read_concurrency: true])
    :ets.insert(@store, {:inbound, Inbound.new()})
    :ets.new(Location.table(), [:named_table, :public, :set, read_concurrency: true])
    :ok = :net_kernel.monitor_nodes(true, node_type: :all)
    # After subscribing: a node that comes up from here on is seen either way.
    :ok = NodeCheck.create_tables()
    {:ok, %{}}
  end

  @impl true
  def handle_call({:create, node}, _from, state) do
    row =
      lookup(node) ||
        begin_row(node)

    {:reply, row, state}
  end

  @impl true
  def handle_info({event, node, _info}, state) when event in [:nodeup, :nodedown] do
    if event == :nodeup, do: NodeCheck.seen(node)
    if event == :nodedown, do: Location.forget(node)

    case lookup(node) do
      {_, _, _, _, _, pid} when is_pid(pid) -> send(pid, {event, node})
      _ -> :ok
    end

    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp begin_row(node) do
    link = Options.get(:link)

    buffer = LinkBuffer.new(link[:max_buffer_entries], link[:max_buffer_bytes], link[:overflow])

    notify = :atomics.new(2, signed: false)
    :atomics.put(notify, 2, link[:batch_size])
    counters = Counters.new(@counter_names, [:write_concurrency])
    <<epoch::unsigned-56>> = :crypto.strong_rand_bytes(7)
    row = {node, buffer, epoch + 1, notify, counters, nil}
    true = :ets.insert_new(@links, row)
    row
  end
end

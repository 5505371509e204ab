defmodule Jido.Distributed.Transport.LinkStore do
  @moduledoc """
  Owns the transport's state that must outlive Link and Receiver processes,
  so it is the first child of `Jido.Distributed.Transport.Supervisor`:

    * the links table: one `Jido.Distributed.Transport.LinkRow` per remote
      node (buffer, epoch, flags, counters, Link pid), readable by callers
      without a message;
    * the Receiver's sequencing state and counters
      (`Jido.Distributed.Transport.Inbound`, in NIF memory), so a restarted
      Receiver forgets and resets nothing;
    * the nodes this node has been connected to and the connection attempts
      under way (`Jido.Distributed.Transport.NodeCheck`).

  It also watches node up/down events for the transport: it remembers
  every node that came up and forwards the events to the Link of that
  node, so Links need not each subscribe to every node event.

  Rows are created by the Link that serves the node (an atomic
  `:ets.insert_new/2` on the public table), so Links never call this
  process.
  """
  use GenServer

  require Jido.Distributed.Transport.LinkRow

  alias Jido.Distributed.Transport.{Inbound, LinkRow, NodeCheck}

  @links :jido_distributed_links
  @store :jido_distributed_link_store
  @traffic :jido_distributed_inbound_traffic

  @doc "Starts the store (one per node, registered under the module name)."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The row of `node`, if it has one."
  @spec lookup(node()) :: LinkRow.t() | nil
  def lookup(node) do
    case :ets.lookup(@links, node) do
      [row] -> row
      [] -> nil
    end
  end

  @doc "The pid of the Link serving `node`, if one has started."
  @spec link_pid(node()) :: pid() | nil
  def link_pid(node) do
    case lookup(node) do
      nil -> nil
      row -> LinkRow.link_row(row, :pid)
    end
  end

  @doc """
  The row of `node`, created with the `link` settings if missing. Atomic:
  of two racing callers, both get the row that went in first.
  """
  @spec fetch_or_create(node(), keyword()) :: LinkRow.t()
  def fetch_or_create(node, link) do
    lookup(node) ||
      (
        _ = :ets.insert_new(@links, LinkRow.new(node, link))
        lookup(node)
      )
  end

  @doc "Records the Link pid serving `node`."
  @spec set_pid(node(), pid()) :: true
  def set_pid(node, pid), do: :ets.update_element(@links, node, {LinkRow.pid_pos(), pid})

  @doc "All link rows."
  @spec rows() :: [LinkRow.t()]
  def rows, do: :ets.tab2list(@links)

  @doc "The Receiver's sequencing state (see `Jido.Distributed.Transport.Inbound`)."
  @spec inbound() :: Inbound.t()
  def inbound, do: :ets.lookup_element(@store, :inbound, 2)

  @doc """
  The table of what arrived from each origin node: rows
  `{origin, signals, wire_bytes, frames}`, bumped by the Receiver.
  """
  @spec traffic_table() :: atom()
  def traffic_table, do: @traffic

  @impl true
  def init(_opts) do
    :ets.new(@links, [
      :named_table,
      :public,
      :set,
      keypos: LinkRow.keypos(),
      read_concurrency: true
    ])

    :ets.new(@store, [:named_table, :protected, :set, read_concurrency: true])
    :ets.insert(@store, {:inbound, Inbound.new()})
    :ets.new(@traffic, [:named_table, :public, :set, write_concurrency: true])
    :ok = :net_kernel.monitor_nodes(true, node_type: :all)
    # After subscribing: a node that comes up from here on is seen either way.
    :ok = NodeCheck.create_tables()
    {:ok, %{}}
  end

  @impl true
  def handle_info({event, node, _info}, state) when event in [:nodeup, :nodedown] do
    if event == :nodeup, do: NodeCheck.seen(node)

    case link_pid(node) do
      pid when is_pid(pid) -> send(pid, {event, node})
      nil -> :ok
    end

    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}
end

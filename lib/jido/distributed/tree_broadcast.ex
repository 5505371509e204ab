defmodule Jido.Distributed.TreeBroadcast do
  @moduledoc """
  Broadcasts a signal to every node along a tree, so no node sends more
  than `:fanout` copies, and reports which nodes got it.

  One process per node, registered under this module's name, holds the
  node's local subscribers (by signal type pattern, see
  `Jido.Distributed.Pattern`) and relays broadcasts.

      :ok = Jido.Distributed.TreeBroadcast.subscribe("order.**")
      {:ok, %{delivered: 3, missing: []}} =
        Jido.Distributed.TreeBroadcast.broadcast(%{id: "1", type: "order.placed"})
      # every subscriber of a matching pattern, on every node, gets
      # {:signal, %{id: "1", type: "order.placed"}} once

  ## How a broadcast travels

  The root (the calling node) plans a tree over the members with
  `Jido.Distributed.TreePlanner` (location labels from
  `Jido.Distributed.Location`; members that are not connected are planned
  as unhealthy, so they become leaves when possible), encodes the signal
  once into a `Jido.Distributed.Frame`, and sends each child

      {:jido_bcast, id, parent, frame, atoms, {child, grandchildren}, budget_ms}

  the same frame bytes every time, with the list of atoms the frame
  contains (so the child's distribution layer creates them before the safe
  decode; `:same` when the child was last sent the same list, as for a
  stream of signals of one shape) and the child's own subtree. A node
  decodes the frame once, forwards the same bytes to its children with
  their subtrees (no re-encoding) and delivers to its local subscribers.
  A leaf then reports at once; an interior node confirms receipt to its
  parent (`{:got, id}`) only if its subtree has not reported within a
  short while (half a sweep interval to a sweep and a half, below), so in
  the usual case a parent gets one ack per child and broadcast.

  ## Batches

  Broadcasts started on one node while its broadcast process is busy
  travel together: when the process takes a broadcast, it also takes the
  ones already queued behind it for the same tree (same members, fanout
  and timeout), up to 64 or 64 KiB of signals, and sends them as one batch:
  one frame holding every signal, one message per child, one session, one
  report per child. Nothing waits to fill a batch, so a lone broadcast
  leaves at once; under a stream of broadcasts the per-broadcast work of
  every node (the root's sends, each node's decode, receipts and reports)
  is shared by the whole batch. Batches leave in the order their
  broadcasts were started, and each node delivers a batch's signals in
  order. On the wire and in every node's sessions, a batch is known by its
  first broadcast's id; every broadcast of a batch gets the batch's
  result.

  ## Completion

  Each node reports to its parent once its whole subtree is accounted for:
  `{:done, id, delivered, missing}`, the number of nodes that delivered and
  the nodes that could not be confirmed. Reports are summed on the way up,
  so the root learns the totals from its own children only. A node must
  report within the `budget_ms` its parent gave it; it gives its own
  children a little less (a tenth, for the hop back), and when its deadline
  passes, every node of a subtree that has not reported is counted missing.

  Receipts and reports travel to a parent in batches,
  `{:jido_bcast_acks, node, [ack]}`: a node sends what it has as soon as it
  has nothing else to do (so an idle node adds no delay), and otherwise
  every 64 acks or 5 ms. Under a stream of broadcasts a root thus gets a
  few ack messages per child, not two per broadcast. Deadlines and receipt
  timeouts are checked by a periodic sweep (a quarter of the ack timeout,
  10 to 250 ms apart) while broadcasts are in flight, not by a timer per
  broadcast.

  ## Failures, adoption and retries

  A child is given up when it is not connected (the send returns
  `:noconnect`), when its node goes down (`:nodedown`), or when it does not
  confirm receipt within the `:ack_timeout_ms` setting. Its parent then
  sends the frame to the child's children itself, each with its own subtree
  (the repair of `Jido.Distributed.TreePlanner.adopt/2`, done one hop at a
  time), so every live node still receives. A given-up child that had
  confirmed receipt is counted delivered. One that had not may still be
  reachable from elsewhere (only the link to its parent may be cut): its
  parent hands it up, `{:retry, id, child}` in its acks, and no longer
  counts it; the grandparent sends it the frame alone (its children were
  adopted below) and counts it, or, if it cannot reach it either, hands it
  up in turn. Only the root, the last resort, counts a child missing, so
  `missing` names the nodes that neither their parent nor any ancestor
  could reach. Each ancestor that tries waits up to `:ack_timeout_ms` for
  a receipt, so a silent node deep in the tree takes one ack timeout per
  level before it is reported missing (within the broadcast's timeout).

  A report that arrives later from a slow child counts the child alone,
  since its subtree now reports through the parent; one from a child
  handed up is left to the ancestor that took it. See
  `Jido.Distributed.TreeBroadcast.Session`.

  ## Messages from other nodes

  Every message that arrives from another node, broadcasts and acks, but
  also calls and casts to this process, is checked by
  `Jido.Distributed.TreeBroadcast.Wire` before use: its whole shape
  (ids, node names, the frame a binary, the atom list, the subtree made of
  node names only and bounded in size and depth, the budget a positive
  integer, every ack). A message that fails is dropped: it bumps the
  `malformed` counter (`stats/0`), emits a `malformed` event, and is logged
  the first time for each reason (`t:Jido.Distributed.TreeBroadcast.Wire.reason/0`,
  and `:undecodable_frame` for a frame that does not decode,
  `:bad_subscription`, `:bad_caller` for a call that cannot be answered);
  a call gets `{:error, :malformed}`. It never crashes the process, so
  broadcasts in flight are not lost. Sends go out with `:noconnect` and
  cannot raise, whatever the destination.

  ## Duplicates

  After adoption a node may get the same broadcast twice. Each node
  remembers recent broadcast ids with their outcome (`:dedup_size`,
  `:dedup_ttl_ms`; see `Jido.Distributed.TreeBroadcast.Recent`): a repeat is
  not delivered again, and its sender still gets a report (at once if the
  subtree is done, when it is done otherwise), so it can finish too.

  ## Limits

    * Members that are connected but do not run this library (a remote
      console, a monitoring node) cannot confirm receipt: each broadcast to
      them waits `:ack_timeout_ms` and reports them missing. Pass `:nodes`
      to leave them out.
    * Broadcasts started with `await: false` are not flow-controlled: a
      caller that starts them faster than the tree delivers builds queues
      on the way, and a child whose queue holds a broadcast longer than
      `:ack_timeout_ms` is given up (its subtree adopted, itself reported
      missing unless its report still arrives in time). Await now and then
      (`await/2`) to bound what is in flight.
    * A tree holds at most 65,536 nodes and is at most 4,096 deep (the
      bounds every node checks, see `Jido.Distributed.TreeBroadcast.Wire`);
      the `:tree` option refuses larger ones.
    * The root's CPU per broadcast is about constant (encode once, send
      `:fanout` copies, take its children's reports), shared by the whole
      batch under a stream of broadcasts, while a root that sends to every
      member itself pays per member. A lone awaited broadcast, though,
      costs the root more than sending to every member of a small cluster
      would: it waits for its children's reports, and each wakes it
      (`bench/broadcast.exs`).

  ## Settings

  Under `config :jido_distributed, broadcast: [...]`: `:fanout`,
  `:timeout_ms`, `:ack_timeout_ms`, `:dedup_size`, `:dedup_ttl_ms` (see
  `Jido.Distributed`).

  ## Telemetry

    * `[:jido, :distributed, :broadcast, :start]` - on the root; measurements
      `system_time`, `nodes`; metadata `id`, `fanout`, `depth`.
    * `[:jido, :distributed, :broadcast, :stop]` - on the root when the
      broadcast completed; measurements `duration` (native units),
      `delivered`, `missing`; metadata `id`, `missing` (the nodes).
    * `[:jido, :distributed, :broadcast, :malformed]` - on any node, for
      each message dropped as malformed (see "Messages from other nodes");
      measurements `count` (1); metadata `reason`.
  """
  use GenServer

  import Bitwise, only: [<<<: 2]

  require Logger

  alias Jido.Distributed.{CapabilityIndex, Counters, Frame, Location, Message, Options, Pattern}
  alias Jido.Distributed.{Signal, Telemetry, TreePlanner}
  import Jido.Distributed.Signal, only: [is_signal: 1]
  alias Jido.Distributed.TreeBroadcast.{Recent, Session, Wire}

  @plans :jido_distributed_broadcast_plans
  @plan_cache :"$jido_distributed_broadcast_plan"
  @subscriptions :jido_distributed_broadcast_subscriptions
  @counter_names [
    :started,
    :batches,
    :received,
    :duplicates,
    :delivered,
    :forwarded,
    :adopted,
    :failed_children,
    :handed_up,
    :retried,
    :acks_sent,
    :ack_messages,
    :malformed
  ]
  # Bumps a counter; inlined, as it is on every broadcast's path.
  defmacrop count(state, name, n \\ 1) do
    index = Counters.index!(@counter_names, name)
    quote do: :counters.add(unquote(state).counters, unquote(index), unquote(n))
  end

  # Acks to one parent are sent together: when idle, or at this many, or
  # when the oldest is this old.
  @max_acks 64
  @ack_linger_ms 5
  @max_routes 1_024
  # Most broadcasts sent together in one frame, and most bytes of signals
  # (in external term format) in it, so a batch's frame is encoded and
  # decoded on a normal scheduler (see `Jido.Distributed.Frame`).
  @max_batch 64
  @max_batch_bytes 64 * 1024
  # Extra time a caller of an awaited broadcast gives the server beyond
  # the broadcast timeout, which already bounds the reply.
  @call_slack_ms 5_000

  @typedoc "A broadcast id: the root node, its instance, a counter."
  @type id :: {node(), non_neg_integer(), pos_integer()}

  @typedoc """
  The outcome of a broadcast: how many nodes delivered it to their
  subscribers (the root included), and the members that could not be
  confirmed, sorted.
  """
  @type result :: %{delivered: non_neg_integer(), missing: [node()]}

  @doc "Starts the node's broadcast process, registered under the module name."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  Broadcasts `signal` (a map or struct with `:id` and `:type`) to the
  subscribers of every member node, this node being the root.

  ## Options

    * `:nodes` - the member nodes; this node is always one. Defaults to
      this node and every connected node.
    * `:fanout` - most copies any node sends, a positive integer. Defaults
      to the `:fanout` setting (4).
    * `:timeout` - milliseconds the broadcast may take; members not
      confirmed by then are reported missing. Defaults to the `:timeout_ms`
      setting (5000).
    * `:await` - when `true` (default), returns `{:ok, result}` once every
      member is accounted for; when `false`, returns `{:ok, id}` at once, to
      be passed to `await/2`.
    * `:tree` - a tree to broadcast along instead of planning one, such as
      one returned by `Jido.Distributed.TreePlanner.plan/3`, rooted at this
      node; its nodes are the members and `:nodes` and `:fanout` are
      ignored.

  Returns `{:error, {:invalid_signal, term}}` for a term that is not a
  signal (a map or struct with `:id` and `:type`), as `Jido.Distributed.send/3`
  does, `{:error, :too_large}` at once for a signal larger, in external
  term format, than the `:max_frame_size` setting (no member could decode
  it), and `{:error, :malformed}` for a planned tree beyond the bounds
  under "Limits".

      iex> {:ok, %{delivered: 1, missing: []}} =
      ...>   Jido.Distributed.TreeBroadcast.broadcast(%{id: "1", type: "demo"}, nodes: [])
      iex> {:ok, id} = Jido.Distributed.TreeBroadcast.broadcast(%{id: "2", type: "demo"}, nodes: [], await: false)
      iex> Jido.Distributed.TreeBroadcast.await(id)
      {:ok, %{delivered: 1, missing: []}}
  """
  @spec broadcast(term(), keyword()) ::
          {:ok, result()}
          | {:ok, id()}
          | {:error, Frame.error_reason() | :malformed | {:invalid_signal, term()}}
  def broadcast(signal, opts \\ [])

  def broadcast(signal, opts) when not is_signal(signal) and is_list(opts),
    do: Signal.check(signal)

  def broadcast(signal, opts) when is_list(opts) do
    {fanout, timeout, max_frame_size} = defaults()

    opts =
      parse_opts(opts, %{nodes: nil, fanout: fanout, timeout: timeout, await: true, tree: nil})

    planned = if opts.tree, do: {:ok, opts.tree}, else: plan(opts.nodes, opts.fanout)

    with {:ok, tree} <- planned,
         {:ok, size} <- framed_size(signal, max_frame_size) do
      id = {node(), :persistent_term.get({__MODULE__, :instance}, 0), next_counter()}
      start = {:start, id, signal, size, tree, opts.timeout, opts.fanout}

      if opts.await do
        GenServer.call(__MODULE__, start, opts.timeout + @call_slack_ms)
      else
        GenServer.cast(__MODULE__, start)
        {:ok, id}
      end
    end
  end

  @doc """
  Waits for the broadcast `id`, started on this node with `await: false`,
  and returns its result, or `{:error, reason}` if it could not be framed
  (`t:Jido.Distributed.Frame.error_reason/0`) or its tree was refused
  (`:malformed`). Returns
  `{:error, :unknown_broadcast}` for an id
  this node did not start or no longer remembers (see the `:dedup_size` and
  `:dedup_ttl_ms` settings). Exits if nothing comes within `timeout`.
  """
  @spec await(id(), timeout()) ::
          {:ok, result()} | {:error, :unknown_broadcast | Frame.error_reason() | :malformed}
  def await(id, timeout \\ :infinity)

  def await({root, _, _} = id, timeout) when root == node(),
    do: GenServer.call(__MODULE__, {:await, id}, timeout)

  def await(_id, _timeout), do: {:error, :unknown_broadcast}

  @doc """
  Subscribes a local process to broadcast signals whose type matches
  `pattern` (see `Jido.Distributed.Pattern`). Subscribing the same process
  to the same pattern twice is the same as once; a process whose patterns
  overlap gets each signal once. A subscriber that exits is removed.

  ## Options

    * `:pid` - the subscriber, a local pid; defaults to the caller.
    * `:message_format` - what it receives; see `Jido.Distributed.Message`.
      Defaults to `:signal`, so it receives `{:signal, signal}`.

  Returns `{:error, reason}` for an invalid pattern.

      iex> Jido.Distributed.TreeBroadcast.subscribe("demo.*")
      :ok
      iex> Jido.Distributed.TreeBroadcast.subscribe("demo..x")
      {:error, :empty_segment}
  """
  @spec subscribe(String.t(), keyword()) :: :ok | {:error, Pattern.error_reason()}
  def subscribe(pattern, opts \\ []) when is_list(opts) do
    opts = Keyword.validate!(opts, pid: self(), message_format: :signal)
    pid = pid!(opts[:pid])
    format = opts[:message_format]

    :ok = Message.validate!(format)

    with {:ok, compiled} <- Pattern.compile(pattern) do
      GenServer.call(__MODULE__, {:subscribe, pid, compiled.source, format})
    end
  end

  @doc """
  Removes the subscriptions of a local process (the caller, or the `:pid`
  option) to `pattern`, whatever their message formats. Returns `:ok`, also
  when there was none.

      iex> :ok = Jido.Distributed.TreeBroadcast.subscribe("demo.*")
      iex> Jido.Distributed.TreeBroadcast.unsubscribe("demo.*")
      :ok
  """
  @spec unsubscribe(String.t(), keyword()) :: :ok
  def unsubscribe(pattern, opts \\ []) when is_binary(pattern) and is_list(opts) do
    opts = Keyword.validate!(opts, pid: self())
    GenServer.call(__MODULE__, {:unsubscribe, pid!(opts[:pid]), pattern})
  end

  @doc """
  This node's broadcast counters and state:

    * `counters` - `started` (broadcasts rooted here), `batches` (the
      batches they left in, see "Batches"), `received` (frames
      from parents, repeats included), `duplicates`, `delivered` (messages
      to local subscribers), `forwarded` (frames sent to children, adoptions
      included), `adopted` (subtrees taken over from failed children),
      `failed_children`, `handed_up` (failed children passed to the
      parents to try), `retried` (nodes this node tried for a child that
      could not reach them), `acks_sent` (receipts, reports and retries),
      `ack_messages` (the batches they went in), `malformed` (messages
      dropped, see "Messages from other nodes");
    * `sends` - frames sent per destination node;
    * `sessions` - broadcasts in flight here; `subscribers` - subscribed
      processes; `remembered` - broadcast ids remembered.
  """
  @spec stats() :: %{
          counters: %{atom() => non_neg_integer()},
          sends: %{node() => non_neg_integer()},
          sessions: non_neg_integer(),
          subscribers: non_neg_integer(),
          remembered: non_neg_integer()
        }
  def stats, do: GenServer.call(__MODULE__, :stats)

  # --- planning (in the caller) -------------------------------------------------

  @doc false
  # The members with their labels and health, as the planner takes them.
  # Labels of connected nodes come from `Location` (cached); a member that
  # is not connected is planned unhealthy, without labels (asking it would
  # try to connect).
  @spec located_members([node()]) :: [TreePlanner.member()]
  def located_members(members) do
    connected = MapSet.new(Node.list())

    Enum.map(members, fn node ->
      cond do
        node == node() -> {node, labels(Location.local())}
        MapSet.member?(connected, node) -> {node, labels(Location.of(node))}
        true -> {node, healthy: false}
      end
    end)
  end

  defp labels(%{region: region, zone: zone}), do: [region: region, zone: zone]

  # The last plan is kept, keyed by the `:nodes` option and the fanout, in
  # a table for every caller and in the caller's process dictionary (so a
  # process broadcasting a stream does not copy it out of the table each
  # time). The plan depends only on the members, their labels and health,
  # which change only when nodes connect or disconnect: then the server
  # moves the plan generation on, and plans of an older one are not used.
  defp plan(nodes, fanout) do
    key = {fanout, nodes}
    generation = plan_generation()

    case Process.get(@plan_cache) do
      {^generation, ^key, tree} when generation != nil ->
        {:ok, tree}

      _ ->
        with {:ok, tree} <- shared_plan(nodes, fanout, key, generation) do
          Process.put(@plan_cache, {generation, key, tree})
          {:ok, tree}
        end
    end
  end

  defp shared_plan(nodes, fanout, key, generation) do
    case :ets.lookup(@plans, :last) do
      [{:last, ^generation, ^key, tree}] ->
        {:ok, tree}

      _ ->
        if nodes && not Enum.all?(nodes, &is_atom/1),
          do: bad!(:nodes, "a list of node names", nodes)

        members = Enum.uniq([node() | nodes || Node.list()])

        with {:ok, tree} <- TreePlanner.plan(located_members(members), node(), fanout: fanout) do
          :ets.insert(@plans, {:last, generation, key, tree})
          {:ok, tree}
        end
    end
  end

  # `{counter, value}` of the server's plan generation; nil without a server.
  defp plan_generation do
    case :persistent_term.get({__MODULE__, :plan_generation}, nil) do
      nil -> nil
      counter -> {counter, :atomics.get(counter, 1)}
    end
  end

  # Drops the plans: callers plan again.
  defp new_plan_generation do
    :atomics.add(:persistent_term.get({__MODULE__, :plan_generation}), 1, 1)
    :ets.delete_all_objects(@plans)
  end

  defp next_counter, do: :erlang.unique_integer([:positive, :monotonic])

  # The signal's size in external term format, which its frame entry has;
  # a signal that no member could decode is refused here.
  defp framed_size(signal, max_frame_size) do
    size = :erlang.external_size(signal)
    if size > max_frame_size, do: {:error, :too_large}, else: {:ok, size}
  end

  # One pass over the options (this is on every broadcast's path). Node
  # names are checked when a plan is made for them.
  defp parse_opts([], acc), do: acc

  defp parse_opts([{:nodes, nodes} | rest], acc) when is_list(nodes),
    do: parse_opts(rest, %{acc | nodes: nodes})

  defp parse_opts([{:fanout, fanout} | rest], acc) when is_integer(fanout) and fanout > 0,
    do: parse_opts(rest, %{acc | fanout: fanout})

  defp parse_opts([{:timeout, timeout} | rest], acc) when is_integer(timeout) and timeout > 0,
    do: parse_opts(rest, %{acc | timeout: timeout})

  defp parse_opts([{:await, await} | rest], acc) when is_boolean(await),
    do: parse_opts(rest, %{acc | await: await})

  defp parse_opts([{:tree, tree} | rest], acc) do
    if match?({root, _} when root == node(), tree) and Wire.tree?(tree),
      do: parse_opts(rest, %{acc | tree: tree}),
      else:
        bad!(
          :tree,
          "a tree rooted at this node, {node(), subtrees}, of node names " <>
            "(at most 65,536 nodes, 4,096 deep)",
          tree
        )
  end

  defp parse_opts([{key, value} | _], _acc) when key in [:nodes, :fanout, :timeout, :await] do
    what =
      case key do
        :nodes -> "a list of node names"
        :await -> "a boolean"
        _ -> "a positive integer"
      end

    bad!(key, what, value)
  end

  defp parse_opts([{key, _} | _], _acc) do
    raise ArgumentError,
          "unknown option #{inspect(key)}, known: [:nodes, :fanout, :timeout, :await, :tree]"
  end

  defp parse_opts(other, _acc),
    do: raise(ArgumentError, "expected options as a keyword list, got: #{inspect(other)}")

  defp defaults do
    case :persistent_term.get({__MODULE__, :defaults}, nil) do
      nil ->
        settings = Options.get(:broadcast)
        {settings[:fanout], settings[:timeout_ms], Options.get(:max_frame_size)}

      defaults ->
        defaults
    end
  end

  defp bad!(key, what, value),
    do: raise(ArgumentError, "the #{inspect(key)} option must be #{what}, got: #{inspect(value)}")

  defp pid!(pid) when is_pid(pid) and node(pid) == node(), do: pid
  defp pid!(other), do: bad!(:pid, "a local pid", other)

  @doc false
  # Subscriptions, `{pid, pattern, format}`, in a table owned by
  # `Jido.Distributed.Transport.LinkStore`, so they outlive this process.
  @spec subscriptions_table() :: atom()
  def subscriptions_table, do: @subscriptions

  # --- server ---------------------------------------------------------------------

  @impl true
  def init(_opts) do
    settings = Options.get(:broadcast)
    :ok = :net_kernel.monitor_nodes(true)

    # Started on its own (without the application's LinkStore), it keeps
    # the table itself.
    if :ets.whereis(@subscriptions) == :undefined,
      do: :ets.new(@subscriptions, [:named_table, :public, :bag])

    subscriptions = :ets.tab2list(@subscriptions)

    if :ets.whereis(@plans) == :undefined,
      do: :ets.new(@plans, [:named_table, :public, :set, read_concurrency: true])

    # Kept across restarts (a new counter would mean a global GC).
    if :persistent_term.get({__MODULE__, :plan_generation}, nil) == nil,
      do: :persistent_term.put({__MODULE__, :plan_generation}, :atomics.new(1, []))

    new_plan_generation()

    :persistent_term.put({__MODULE__, :instance}, :rand.uniform(1 <<< 47))

    :persistent_term.put(
      {__MODULE__, :defaults},
      {settings[:fanout], settings[:timeout_ms], Options.get(:max_frame_size)}
    )

    {:ok,
     %{
       counters: Counters.new(@counter_names),
       # Subscriptions from before a restart; a pid that died meanwhile is
       # removed when its monitor fires.
       index:
         CapabilityIndex.new(
           for {pid, pattern, format} <- subscriptions, do: {pattern, {pid, format}}
         ),
       # pid => {monitor ref, MapSet of {pattern, format}}
       subscribers:
         subscriptions
         |> Enum.group_by(&elem(&1, 0), &{elem(&1, 1), elem(&1, 2)})
         |> Map.new(fn {pid, entries} -> {pid, {Process.monitor(pid), MapSet.new(entries)}} end),
       sessions: %{},
       # broadcast id => the id of the batch it went in, while in flight,
       # for the broadcasts that are not first in their batch
       batch_of: %{},
       recent: Recent.new(settings[:dedup_size], settings[:dedup_ttl_ms]),
       sends: %{},
       # node => the atom list last sent to it, or received from it
       atoms_sent: %{},
       atoms_from: %{},
       # signal type => local subscribers, dropped when subscriptions change
       routes: %{},
       # parent => {count, acks newest first}; `acks_since` is when the
       # oldest was queued
       outbox: %{},
       acks_since: nil,
       sweep: nil,
       prune: schedule_prune(settings[:dedup_ttl_ms]),
       # reasons of malformed messages already logged (each is logged once)
       logged: MapSet.new(),
       sweep_ms: settings[:ack_timeout_ms] |> div(4) |> max(10) |> min(250),
       ack_timeout_ms: settings[:ack_timeout_ms],
       ttl_ms: settings[:dedup_ttl_ms],
       max_frame_size: Options.get(:max_frame_size)
     }}
  end

  # Every call and cast may come from another node: a request of the wrong
  # shape is answered `{:error, :malformed}` (calls), counted and logged. A
  # call whose `from` is not `{pid, tag}` cannot be answered (gen_server's
  # reply would raise): it is only counted.
  @impl true
  def handle_call(request, from, state) when not (is_tuple(from) and tuple_size(from) == 2),
    do: noreply(malformed(state, :bad_caller, {request, from}))

  def handle_call({:start, _, _, _, _, _, _} = start, from, state),
    do: noreply(start_batches(state, start, from))

  def handle_call({:await, id}, from, state) do
    batch = Map.get(state.batch_of, id, id)

    case state.sessions do
      %{^batch => session} ->
        session = Session.add_parent(session, {:caller, from})
        noreply(%{state | sessions: Map.put(state.sessions, batch, session)})

      _ ->
        case Recent.get(state.recent, id) do
          {:done, delivered, missing} -> reply({:ok, result(delivered, missing)}, state)
          {:error, _} = error -> reply(error, state)
          nil -> reply({:error, :unknown_broadcast}, state)
        end
    end
  end

  def handle_call({:subscribe, pid, pattern, _format} = request, _from, state)
      when not (is_pid(pid) and node(pid) == node() and is_binary(pattern)) do
    reply({:error, :malformed}, malformed(state, :bad_subscription, request))
  end

  def handle_call({:subscribe, pid, pattern, format} = request, _from, state) do
    if Message.valid?(format) and match?({:ok, %{source: ^pattern}}, Pattern.compile(pattern)),
      do: reply(:ok, subscribe_pid(state, pid, pattern, format)),
      else: reply({:error, :malformed}, malformed(state, :bad_subscription, request))
  end

  def handle_call({:unsubscribe, pid, pattern}, _from, state)
      when is_pid(pid) and is_binary(pattern) do
    case state.subscribers do
      %{^pid => {ref, entries}} ->
        {gone, kept} = Enum.split_with(entries, &match?({^pattern, _}, &1))
        :ets.match_delete(@subscriptions, {pid, pattern, :_})

        index =
          Enum.reduce(gone, state.index, fn {pattern, format}, index ->
            CapabilityIndex.delete(index, pattern, {pid, format})
          end)

        subscribers =
          if kept == [] do
            Process.demonitor(ref, [:flush])
            Map.delete(state.subscribers, pid)
          else
            Map.put(state.subscribers, pid, {ref, MapSet.new(kept)})
          end

        reply(:ok, %{state | index: index, routes: %{}, subscribers: subscribers})

      _ ->
        reply(:ok, state)
    end
  end

  def handle_call(:stats, _from, state) do
    counters = Counters.read(state.counters, @counter_names)

    reply(
      %{
        counters: counters,
        sends: state.sends,
        sessions: map_size(state.sessions),
        subscribers: map_size(state.subscribers),
        remembered: Recent.size(state.recent)
      },
      state
    )
  end

  def handle_call(request, _from, state),
    do: reply({:error, :malformed}, malformed(state, :unknown_message, request))

  @impl true
  def handle_cast({:start, _, _, _, _, _, _} = start, state),
    do: noreply(start_batches(state, start, nil))

  def handle_cast(request, state), do: noreply(malformed(state, :unknown_message, request))

  @impl true
  def handle_info({:jido_bcast, _, _, _, _, _, _} = message, state) do
    case Wire.check(message, node()) do
      :ok -> noreply(received(state, message))
      {:error, reason} -> noreply(malformed(state, reason, message))
    end
  end

  def handle_info({:jido_bcast_acks, _, _} = message, state) do
    case Wire.check(message, node()) do
      :ok ->
        {:jido_bcast_acks, child, acks} = message
        noreply(handle_acks(acks, child, state))

      {:error, reason} ->
        noreply(malformed(state, reason, message))
    end
  end

  def handle_info(:timeout, state), do: noreply(flush_acks(state))

  def handle_info({:timeout, ref, :sweep}, %{sweep: ref} = state),
    do: noreply(sweep(%{state | sweep: nil}))

  def handle_info({:timeout, ref, :prune}, %{prune: ref} = state) do
    state = %{state | prune: schedule_prune(state.ttl_ms)}
    noreply(%{state | recent: Recent.prune(state.recent, now_ms())})
  end

  def handle_info({:nodedown, node}, state) when is_atom(node) do
    new_plan_generation()
    state = forget_atoms(state, node)

    state.sessions
    |> Enum.reduce(state, fn {_id, session}, state ->
      if Map.has_key?(session.pending, node) do
        {session, state} = give_up(state, session, node)
        settle(state, session)
      else
        state
      end
    end)
    |> noreply()
  end

  def handle_info({:nodeup, node}, state) when is_atom(node) do
    new_plan_generation()
    noreply(forget_atoms(state, node))
  end

  def handle_info({:DOWN, ref, :process, pid, _reason}, state) do
    case state.subscribers do
      %{^pid => {^ref, entries}} ->
        :ets.delete(@subscriptions, pid)

        index =
          Enum.reduce(entries, state.index, fn {_pattern, format}, index ->
            CapabilityIndex.delete_value(index, {pid, format})
          end)

        noreply(%{
          state
          | index: index,
            routes: %{},
            subscribers: Map.delete(state.subscribers, pid)
        })

      _ ->
        noreply(state)
    end
  end

  def handle_info(other, state), do: noreply(malformed(state, :unknown_message, other))

  defp subscribe_pid(state, pid, pattern, format) do
    {ref, entries} =
      case state.subscribers do
        %{^pid => existing} -> existing
        _ -> {Process.monitor(pid), MapSet.new()}
      end

    :ets.insert(@subscriptions, {pid, pattern, format})

    %{
      state
      | index: CapabilityIndex.put(state.index, pattern, {pid, format}),
        routes: %{},
        subscribers:
          Map.put(state.subscribers, pid, {ref, MapSet.put(entries, {pattern, format})})
    }
  end

  # A broadcast message that passed `Wire.check/2`.
  defp received(state, {:jido_bcast, id, parent, frame, atoms, {_me, children}, budget}) do
    count(state, :received)
    {atoms, state} = parent_atoms(state, parent, atoms)

    cond do
      Map.has_key?(state.sessions, id) ->
        count(state, :duplicates)
        session = Session.add_parent(state.sessions[id], parent)
        state = %{state | sessions: Map.put(state.sessions, id, session)}

        # An owed receipt goes to every parent at once, this one included.
        if session.data[:receipt_due],
          do: state,
          else: ack(state, parent, Wire.got(id))

      match?({:done, _, _}, Recent.get(state.recent, id)) ->
        count(state, :duplicates)
        {:done, delivered, missing} = Recent.get(state.recent, id)
        ack(state, parent, Wire.done(id, delivered, missing))

      true ->
        relay(state, id, parent, frame, atoms, children, budget)
    end
  end

  # Counts a message refused by `Wire` (or a frame that does not decode),
  # emits an event and logs it, the first of each reason only.
  defp malformed(state, reason, message) do
    count(state, :malformed)
    Telemetry.emit([:broadcast, :malformed], %{count: 1}, %{reason: reason})

    if MapSet.member?(state.logged, reason) do
      state
    else
      Logger.warning(
        "#{inspect(__MODULE__)} dropped a malformed message (#{reason}): " <>
          "#{inspect(message, limit: 8, printable_limit: 256)}; " <>
          "further ones for this reason are only counted (malformed in stats/0)"
      )

      %{state | logged: MapSet.put(state.logged, reason)}
    end
  end

  defp forget_atoms(state, node) do
    %{
      state
      | atoms_sent: Map.delete(state.atoms_sent, node),
        atoms_from: Map.delete(state.atoms_from, node)
    }
  end

  # --- broadcasts ---------------------------------------------------------------

  # The root. Starts the broadcast `start` (with `waiter`, the caller of an
  # awaited broadcast, or nil) together with the starts queued behind it for
  # the same tree, timeout and fanout, as one batch; then any start that
  # could not join, the same way, so broadcasts leave in the order they
  # were started. A start of the wrong shape (from another node) is refused.
  defp start_batches(state, start, waiter) do
    case Wire.check_start(start, node()) do
      :ok ->
        {:start, id, signal, size, tree, timeout, fanout} = start
        {entries, next} = collect({tree, timeout, fanout}, 1, size, [{id, signal, waiter}])
        state = start_batch(state, entries, tree, timeout, fanout)

        case next do
          nil -> state
          {start, waiter} -> start_batches(state, start, waiter)
        end

      {:error, reason} ->
        if waiter, do: GenServer.reply(waiter, {:error, :malformed})
        state = malformed(state, reason, start)

        # One of this node's ids (a planned tree beyond the bounds) can be
        # awaited for its error.
        case start do
          {:start, {root, _, _} = id, _, _, _, _, _} when root == node() ->
            if Wire.id?(id),
              do: %{state | recent: Recent.put(state.recent, id, {:error, :malformed}, now_ms())},
              else: state

          _ ->
            state
        end
    end
  end

  # Takes the starts already in the mailbox (without waiting) while they
  # fit the batch; returns the batch in order, and the first start that
  # did not fit, if any.
  defp collect(_key, n, _bytes, acc) when n >= @max_batch, do: {Enum.reverse(acc), nil}

  defp collect(key, n, bytes, acc) do
    receive do
      {:"$gen_cast", {:start, _, _, _, _, _, _} = start} ->
        take(key, n, bytes, acc, start, nil)

      {:"$gen_call", {_, _} = from, {:start, _, _, _, _, _, _} = start} ->
        take(key, n, bytes, acc, start, from)
    after
      0 -> {Enum.reverse(acc), nil}
    end
  end

  # A start joins if it is for the batch's tree, timeout and fanout (so
  # those are checked already) and the rest of it is right too.
  defp take({tree, timeout, fanout} = key, n, bytes, acc, start, waiter) do
    case start do
      {:start, id, %{id: _, type: _} = signal, size, ^tree, ^timeout, ^fanout}
      when is_integer(size) and size >= 0 and bytes + size <= @max_batch_bytes ->
        if Wire.id?(id),
          do: collect(key, n + 1, bytes + size, [{id, signal, waiter} | acc]),
          else: {Enum.reverse(acc), {start, waiter}}

      _ ->
        {Enum.reverse(acc), {start, waiter}}
    end
  end

  # Encodes the batch's signals into one frame, sends it to the children
  # first, then delivers here. The batch is known by its first broadcast's
  # id.
  defp start_batch(
         state,
         [{batch, _, _} | _] = entries,
         {_root, children} = tree,
         timeout,
         fanout
       ) do
    signals = for {_id, signal, _waiter} <- entries, do: signal

    case Frame.encode_with_atoms(signals) do
      {:ok, frame, atoms} ->
        ids = for {id, _signal, _waiter} <- entries, do: id
        count(state, :started, length(ids))
        count(state, :batches)
        now = now_ms()
        data = %{frame: frame, atoms: atoms, deadline: now + timeout, ids: ids}

        # `started` (for the stop events' duration) only when there is telemetry.
        data =
          if Telemetry.available?() do
            measurements = %{
              system_time: System.system_time(),
              nodes: length(TreePlanner.nodes(tree))
            }

            metadata = %{fanout: fanout, depth: TreePlanner.depth(tree)}

            Enum.each(
              ids,
              &Telemetry.emit([:broadcast, :start], measurements, Map.put(metadata, :id, &1))
            )

            Map.put(data, :started, System.monotonic_time())
          else
            data
          end

        session =
          Enum.reduce(entries, %{Session.new(batch, node(), true) | data: data}, fn
            {_id, _signal, nil}, session -> session
            {_id, _signal, from}, session -> Session.add_parent(session, {:caller, from})
          end)

        batch_of = Enum.reduce(tl(ids), state.batch_of, &Map.put(&2, &1, batch))

        {session, state} = send_children(%{state | batch_of: batch_of}, session, children, now)
        state = deliver(state, signals)
        settle(state, session)

      {:error, _} = error ->
        now = now_ms()

        Enum.reduce(entries, state, fn {id, _signal, waiter}, state ->
          if waiter, do: GenServer.reply(waiter, error)
          %{state | recent: Recent.put(state.recent, id, error, now)}
        end)
    end
  end

  # A broadcast new to this node: forward, deliver, confirm.
  defp relay(state, id, parent, frame, atoms, children, budget) do
    now = now_ms()

    {signals, state} =
      case Frame.decode(frame, max_decoded_size: state.max_frame_size) do
        {:ok, signals} -> {signals, state}
        other -> {nil, malformed(state, :undecodable_frame, {id, other})}
      end

    state = if signals && children == [], do: deliver(state, signals), else: state

    # `:same` from a parent this process has no list of (it restarted):
    # the frame decoded, so its atoms exist here.
    atoms =
      with nil <- atoms,
           true <- signals != nil and children != [],
           {:ok, atoms} <- Frame.atoms(frame, max_decoded_size: state.max_frame_size) do
        atoms
      else
        atoms when is_list(atoms) -> atoms
        _ -> []
      end

    if children == [] do
      {delivered, missing} = if signals, do: {1, []}, else: {0, [node()]}
      state = %{state | recent: Recent.put(state.recent, id, {:done, delivered, missing}, now)}
      ack(state, parent, Wire.done(id, delivered, missing))
    else
      session = %{
        Session.new(id, node(), signals != nil, parent)
        | data: %{frame: frame, atoms: atoms, deadline: now + budget}
      }

      {session, state} = send_children(state, session, children, now)
      state = if signals, do: deliver(state, signals), else: state
      # The receipt is owed, sent by the sweep if the subtree is slow.
      settle(state, %{session | data: Map.put(session.data, :receipt_due, now)})
    end
  end

  # Sends the frame to each subtree's top node, with its subtree; a node
  # that is not connected is given up at once (its children adopted).
  defp send_children(state, session, subtrees, now) do
    %{id: id, data: %{frame: frame, atoms: atoms, deadline: deadline}} = session
    budget = child_budget(deadline - now)
    session = Session.sent_all(session, subtrees, now)

    {sends, atoms_sent, sent, unreachable} =
      send_frames(subtrees, {id, frame, atoms, budget}, {state.sends, state.atoms_sent, 0, []})

    count(state, :forwarded, sent)
    state = %{state | sends: sends, atoms_sent: atoms_sent}

    Enum.reduce(unreachable, {session, state}, fn child, {session, state} ->
      give_up(state, session, child)
    end)
  end

  # Returns the updated per-node send counts and atom lists sent, how many
  # frames were sent, and the children that are not connected. A child
  # last sent the same atom list gets `:same` instead (see `parent_atoms/3`).
  defp send_frames([], _message, acc), do: acc

  defp send_frames([{child, _} = subtree | rest], {id, frame, atoms, budget} = m, acc) do
    {sends, atoms_sent, sent, unreachable} = acc

    {wire_atoms, atoms_sent} =
      case atoms_sent do
        %{^child => ^atoms} -> {:same, atoms_sent}
        _ -> {atoms, Map.put(atoms_sent, child, atoms)}
      end

    message = Wire.bcast(id, node(), frame, wire_atoms, subtree, budget)

    case Wire.send_to(child, message) do
      :ok ->
        sends =
          case sends do
            %{^child => n} -> %{sends | child => n + 1}
            _ -> Map.put(sends, child, 1)
          end

        send_frames(rest, m, {sends, atoms_sent, sent + 1, unreachable})

      :noconnect ->
        atoms_sent = Map.delete(atoms_sent, child)
        send_frames(rest, m, {sends, atoms_sent, sent, [child | unreachable]})
    end
  end

  # The atom list a parent sent with a frame, remembered per parent: a
  # parent sends `:same` for the list it sent this node last (most signals
  # of a stream have the same atoms, and each atom in a message costs
  # encoding). `nil` for `:same` from a parent this process has no list
  # of. Both sides forget a node when it goes down or comes up.
  defp parent_atoms(state, parent, :same) do
    case state.atoms_from do
      %{^parent => atoms} -> {atoms, state}
      _ -> {nil, state}
    end
  end

  defp parent_atoms(state, parent, atoms) do
    case state.atoms_from do
      %{^parent => ^atoms} -> {atoms, state}
      from -> {atoms, %{state | atoms_from: Map.put(from, parent, atoms)}}
    end
  end

  # Gives up on a pending child and sends to its children instead; a child
  # handed up (see `Session.fail/2`) is passed to every parent node, for an
  # ancestor that can reach it to try.
  defp give_up(state, session, child) do
    case Session.fail(session, child) do
      {^session, []} ->
        {session, state}

      {session, adopted} ->
        count(state, :failed_children)
        if adopted != [], do: count(state, :adopted, length(adopted))

        state =
          if Session.handed_up?(session, child), do: hand_up(state, session, child), else: state

        send_children(state, session, adopted, now_ms())
    end
  end

  defp hand_up(state, session, child) do
    count(state, :handed_up)

    Enum.reduce(session.parents, state, fn
      {:caller, _}, state -> state
      parent, state -> ack(state, parent, Wire.retry(session.id, child))
    end)
  end

  defp handle_acks([], _child, state), do: state

  defp handle_acks([ack | rest], child, state),
    do: handle_acks(rest, child, handle_ack(ack, child, state))

  # Acks passed `Wire.check/2`.
  defp handle_ack({:got, id}, child, state) do
    case state.sessions do
      %{^id => session} -> put_session(state, Session.received(session, child))
      _ -> state
    end
  end

  defp handle_ack({:done, id, delivered, missing}, child, state) do
    case state.sessions do
      %{^id => session} -> settle(state, Session.done(session, child, delivered, missing))
      _ -> state
    end
  end

  # `child` could not reach `node`: this node tries it, if it is still
  # counting `child`'s subtree (see `Session.retry/4`).
  defp handle_ack({:retry, id, node}, child, state) do
    now = now_ms()

    with %{^id => session} <- state.sessions,
         {:ok, session} <- Session.retry(session, child, node, now) do
      count(state, :retried)
      {session, state} = send_children(state, session, [{node, []}], now)
      settle(state, session)
    else
      _ -> state
    end
  end

  # Checks deadlines and receipt timeouts of the broadcasts in flight.
  defp sweep(state) do
    now = now_ms()
    late = now - state.ack_timeout_ms

    owed = now - div(state.sweep_ms, 2)

    state =
      Enum.reduce(state.sessions, state, fn {_id, session}, state ->
        {session, state} = send_receipt(state, session, owed)

        cond do
          now >= session.data.deadline ->
            settle(state, Session.expire(session))

          (overdue = Session.overdue(session, late)) != [] ->
            {session, state} =
              Enum.reduce(overdue, {session, state}, fn child, {session, state} ->
                give_up(state, session, child)
              end)

            settle(state, session)

          Map.has_key?(session.data, :receipt_due) ->
            state

          true ->
            put_session(state, session)
        end
      end)

    schedule_sweep(state)
  end

  # Sends the receipt owed since before `owed` to every parent.
  defp send_receipt(state, %{data: %{receipt_due: at}} = session, owed) when at <= owed do
    state =
      Enum.reduce(session.parents, state, fn
        {:caller, _}, state -> state
        parent, state -> ack(state, parent, Wire.got(session.id))
      end)

    {%{session | data: Map.delete(session.data, :receipt_due)}, state}
  end

  defp send_receipt(state, session, _owed), do: {session, state}

  # Keeps a session in flight, or reports it if it is complete.
  defp settle(state, session) do
    if Session.complete?(session),
      do: finish(state, session),
      else: state |> put_session(session) |> schedule_sweep()
  end

  defp put_session(state, session),
    do: %{state | sessions: Map.put(state.sessions, session.id, session)}

  defp finish(state, session) do
    {delivered, missing} = Session.result(session)

    state =
      Enum.reduce(session.parents, state, fn
        {:caller, from}, state ->
          GenServer.reply(from, {:ok, result(delivered, missing)})
          state

        parent, state ->
          ack(state, parent, Wire.done(session.id, delivered, missing))
      end)

    # On the root, the batch's broadcasts; elsewhere, the batch.
    ids = Map.get(session.data, :ids, [session.id])

    with %{started: started} <- session.data do
      measurements = %{
        duration: :erlang.monotonic_time() - started,
        delivered: delivered,
        missing: length(missing)
      }

      Enum.each(
        ids,
        &Telemetry.emit([:broadcast, :stop], measurements, %{id: &1, missing: missing})
      )
    end

    now = now_ms()
    outcome = {:done, delivered, missing}

    %{
      state
      | sessions: Map.delete(state.sessions, session.id),
        batch_of: Map.drop(state.batch_of, tl(ids)),
        recent: Recent.put_all(state.recent, ids, outcome, now)
    }
  end

  # Delivers each signal, in order, to its local subscribers. Returns the
  # state: the subscribers of each type are looked up once and kept until
  # subscriptions change (at most @max_routes types).
  defp deliver(state, signals) when is_list(signals),
    do: Enum.reduce(signals, state, &deliver_one(&2, &1))

  defp deliver_one(state, signal) do
    {subscribers, state} =
      case signal do
        %{type: type} when is_binary(type) ->
          case state.routes do
            %{^type => subscribers} ->
              {subscribers, state}

            routes ->
              subscribers = CapabilityIndex.lookup(state.index, type)
              routes = if map_size(routes) >= @max_routes, do: %{}, else: routes
              {subscribers, %{state | routes: Map.put(routes, type, subscribers)}}
          end

        _ ->
          {[], state}
      end

    Enum.each(subscribers, fn {pid, format} -> send(pid, format(signal, format)) end)
    if subscribers != [], do: count(state, :delivered, length(subscribers))
    state
  end

  defp format(signal, format) when is_function(format, 1) do
    format.(signal)
  rescue
    e ->
      Logger.error("#{inspect(__MODULE__)} message format failed: #{Exception.message(e)}")
      {:signal, signal}
  end

  defp format(signal, format), do: Message.format(signal, format)

  # --- acks to parents ------------------------------------------------------------

  # A report supersedes a receipt for the same broadcast still queued.
  defp ack(state, parent, ack) do
    count(state, :acks_sent)

    {n, acks} =
      case {state.outbox, ack} do
        {%{^parent => {n, acks}}, {:done, id, _, _}} ->
          if {:got, id} in acks, do: {n - 1, List.delete(acks, {:got, id})}, else: {n, acks}

        {%{^parent => queued}, _} ->
          queued

        _ ->
          {0, []}
      end

    state = %{
      state
      | outbox: Map.put(state.outbox, parent, {n + 1, [ack | acks]}),
        acks_since: state.acks_since || now_ms()
    }

    if n + 1 >= @max_acks, do: flush_acks(state, parent), else: state
  end

  defp flush_acks(state) do
    state = Enum.reduce(Map.keys(state.outbox), state, &flush_acks(&2, &1))
    %{state | acks_since: nil}
  end

  defp flush_acks(state, parent) do
    case Map.pop(state.outbox, parent) do
      {nil, _} ->
        state

      {{_n, acks}, outbox} ->
        message = Wire.acks(node(), Enum.reverse(acks))

        if parent == node(),
          do: send(self(), message),
          else: Wire.send_to(parent, message)

        count(state, :ack_messages)
        %{state | outbox: outbox, acks_since: if(outbox == %{}, do: nil, else: state.acks_since)}
    end
  end

  # Every callback ends here: queued acks go out when the mailbox is empty
  # (a zero timeout) or when the oldest has waited long enough.
  defp noreply(state) do
    state = maybe_flush(state)
    if state.outbox == %{}, do: {:noreply, state}, else: {:noreply, state, 0}
  end

  defp reply(reply, state) do
    state = maybe_flush(state)
    if state.outbox == %{}, do: {:reply, reply, state}, else: {:reply, reply, state, 0}
  end

  defp maybe_flush(%{acks_since: nil} = state), do: state

  defp maybe_flush(state) do
    if now_ms() - state.acks_since >= @ack_linger_ms, do: flush_acks(state), else: state
  end

  # --- helpers ----------------------------------------------------------------------

  defp result(delivered, missing), do: %{delivered: delivered, missing: missing}

  # What a child gets of the time left: a tenth is kept for its report to
  # come back and be counted.
  @doc false
  @spec child_budget(integer()) :: pos_integer()
  def child_budget(remaining), do: max(remaining - max(div(remaining, 10), 1), 1)

  # Timers are matched by their reference, so a `:sweep` or `:prune` from
  # elsewhere is not taken for one.
  defp schedule_sweep(%{sweep: nil, sessions: sessions} = state) when map_size(sessions) > 0,
    do: %{state | sweep: :erlang.start_timer(state.sweep_ms, self(), :sweep)}

  defp schedule_sweep(state), do: state

  defp schedule_prune(ttl_ms), do: :erlang.start_timer(max(div(ttl_ms, 2), 1_000), self(), :prune)

  defp now_ms, do: :erlang.monotonic_time(:millisecond)
end

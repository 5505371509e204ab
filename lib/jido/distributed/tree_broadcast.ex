defmodule Jido.Distributed.TreeBroadcast do
  @moduledoc """
  Broadcasts a signal to every node along a tree, so no node sends more
  than `:fanout` copies, and reports which nodes got it.

  One process per node, registered under this module's name, holds the
  node's local subscribers (by signal type pattern, see
  `Jido.Distributed.Routing.Pattern`) and relays broadcasts.

      :ok = Jido.Distributed.TreeBroadcast.subscribe("order.**")
      {:ok, %{delivered: 3, missing: []}} =
        Jido.Distributed.TreeBroadcast.broadcast(%{id: "1", type: "order.placed"})
      # every subscriber of a matching pattern, on every node, gets
      # {:signal, %{id: "1", type: "order.placed"}} once

  ## How a broadcast travels

  The root (the calling node) plans a tree over the members with
  `Jido.Distributed.TreePlanner` (location labels from
  `Jido.Distributed.Routing.Location`; members that are not connected are planned
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
  `Jido.Distributed.Broadcast.Session`.

  ## Messages from other nodes

  Every message that arrives from another node, broadcasts and acks, but
  also calls and casts to this process, is checked by
  `Jido.Distributed.Broadcast.Wire` before use: its whole shape
  (ids, node names, the frame a binary, the atom list, the subtree made of
  node names only and bounded in size and depth, the budget a positive
  integer, every ack). A message that fails is dropped: it bumps the
  `malformed` counter (`stats/0`), emits a `malformed` event, and is logged
  the first time for each reason (`t:Jido.Distributed.Broadcast.Wire.reason/0`,
  and `:undecodable_frame` for a frame that does not decode,
  `:bad_subscription`, `:bad_caller` for a call that cannot be answered);
  a call gets `{:error, :malformed}`. It never crashes the process, so
  broadcasts in flight are not lost. Sends go out with `:noconnect` and
  cannot raise, whatever the destination.

  ## Duplicates

  After adoption a node may get the same broadcast twice. Each node
  remembers recent broadcast ids with their outcome (`:dedup_size`,
  `:dedup_ttl_ms`; see `Jido.Distributed.Broadcast.Recent`): a repeat is
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
      bounds every node checks, see `Jido.Distributed.Broadcast.Wire`);
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

  ## Where the code is

  This module is the API; the subsystem lives in `lib/jido/distributed/broadcast/`:

    * `Jido.Distributed.Broadcast.Supervisor` - owns the subsystem's tables
      (subscriptions, plans) and supervises the server;
    * `Jido.Distributed.Broadcast.Server` - the process: takes starts,
      relays, sweeps; `Jido.Distributed.Broadcast.Actions` carries out on
      its state what the protocol decides (sends, acks, replies);
    * pure: `Jido.Distributed.Broadcast.Protocol` (arrival, relay, adopt,
      hand up, retry, settle, sweep), `Jido.Distributed.Broadcast.Session`
      (one broadcast's bookkeeping), `Jido.Distributed.Broadcast.Recent`
      (duplicates), `Jido.Distributed.Broadcast.Outbox` (acks to parents),
      `Jido.Distributed.Broadcast.Atoms` (atom lists per node);
    * `Jido.Distributed.Broadcast.Batch` (batches from the mailbox),
      `Jido.Distributed.Broadcast.Subscriptions`,
      `Jido.Distributed.Broadcast.PlanCache` (what callers read without a
      message), `Jido.Distributed.Broadcast.Stats` (counters),
      `Jido.Distributed.TreePlanner` (planning, in Rust);
    * `Jido.Distributed.Broadcast.Wire` - every message between nodes,
      built and checked.
  """

  alias Jido.Distributed.{Frame, Message, Options, Signal, TreePlanner}
  alias Jido.Distributed.Routing.Pattern
  alias Jido.Distributed.Broadcast.{PlanCache, Protocol, Wire}
  import Jido.Distributed.Signal, only: [is_signal: 1]

  # Extra time a caller of an awaited broadcast gives the server beyond
  # the broadcast timeout, which already bounds the reply.
  @call_slack_ms 5_000
  @opts_cache :"$jido_distributed_broadcast_opts"

  @broadcast_schema [
    nodes: [
      type: {:custom, &__MODULE__.node_names?/1, "a list of node names"},
      default: nil,
      doc:
        "The member nodes; this node is always one. Defaults to this node and every connected node."
    ],
    fanout: [
      type: :pos_integer,
      default: nil,
      doc:
        "Most copies any node sends, a positive integer. Defaults to the `:fanout` setting (4)."
    ],
    timeout: [
      type: :pos_integer,
      default: nil,
      doc:
        "Milliseconds the broadcast may take; members not confirmed by then are reported " <>
          "missing. Defaults to the `:timeout_ms` setting (5000)."
    ],
    await: [
      type: :boolean,
      default: true,
      doc:
        "When `true`, returns `{:ok, result}` once every member is accounted for; when " <>
          "`false`, returns `{:ok, id}` at once, to be passed to `await/2`."
    ],
    tree: [
      type:
        {:custom, &__MODULE__.local_tree?/1,
         "a tree rooted at this node, {node(), subtrees}, of node names " <>
           "(at most 65,536 nodes, 4,096 deep)"},
      default: nil,
      doc:
        "A tree to broadcast along instead of planning one, such as one returned by " <>
          "`Jido.Distributed.TreePlanner.plan/3`, rooted at this node; its nodes are the " <>
          "members and `:nodes` and `:fanout` are ignored."
    ]
  ]

  @pid_option [
    type: {:custom, &__MODULE__.local_pid?/1, "a local pid"},
    default: nil,
    doc: "The subscriber, a local pid; defaults to the caller."
  ]

  @subscribe_schema [
    pid: @pid_option,
    message_format: [
      type: {:custom, &Message.valid?/1, ":signal, :raw, {:tag, atom} or a 1-arity function"},
      default: :signal,
      doc:
        "What it receives; see `Jido.Distributed.Message`. `:signal` sends " <>
          "`{:signal, signal}`."
    ]
  ]

  @unsubscribe_schema [pid: @pid_option]

  @typedoc "A broadcast id: the root node, its instance, a counter."
  @type id :: {node(), non_neg_integer(), pos_integer()}

  @typedoc """
  The outcome of a broadcast: how many nodes delivered it to their
  subscribers (the root included), and the members that could not be
  confirmed, sorted.
  """
  @type result :: %{delivered: non_neg_integer(), missing: [node()]}

  @doc """
  Broadcasts `signal` (a map or struct with `:id` and `:type`) to the
  subscribers of every member node, this node being the root.

  ## Options

  #{Options.docs(@broadcast_schema)}
  The options are checked through that schema; a caller that passes the
  same options again (a stream of broadcasts) reuses the last check, kept
  in its process dictionary, as the broadcast path is CPU-critical.

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
    {nodes, fanout, timeout, await, tree} = broadcast_opts(opts)

    with {:ok, {instance, {default_fanout, default_timeout, max_frame_size}}, tree} <-
           PlanCache.fetch(nodes, fanout, tree),
         {:ok, size} <- framed_size(signal, max_frame_size) do
      id = {node(), instance, :erlang.unique_integer([:positive, :monotonic])}
      timeout = timeout || default_timeout
      start = Wire.start(id, signal, size, tree, timeout, fanout || default_fanout)

      if await do
        GenServer.call(Wire.name(), start, timeout + @call_slack_ms)
      else
        GenServer.cast(Wire.name(), start)
        {:ok, id}
      end
    end
  end

  # Validated through the schema; the last options and their check are
  # kept in the caller's process dictionary (the same options again cost
  # one comparison).
  defp broadcast_opts([]), do: {nil, nil, nil, true, nil}

  defp broadcast_opts(opts) do
    case Process.get(@opts_cache) do
      {^opts, checked} ->
        checked

      _ ->
        valid = Options.validate!(opts, @broadcast_schema)
        checked = {valid[:nodes], valid[:fanout], valid[:timeout], valid[:await], valid[:tree]}
        Process.put(@opts_cache, {opts, checked})
        checked
    end
  end

  # The signal's size in external term format, which its frame entry has;
  # a signal that no member could decode is refused here.
  defp framed_size(signal, max_frame_size) do
    size = :erlang.external_size(signal)
    if size > max_frame_size, do: {:error, :too_large}, else: {:ok, size}
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
    do: GenServer.call(Wire.name(), {:await, id}, timeout)

  def await(_id, _timeout), do: {:error, :unknown_broadcast}

  @doc """
  Subscribes a local process to broadcast signals whose type matches
  `pattern` (see `Jido.Distributed.Routing.Pattern`). Subscribing the same process
  to the same pattern twice is the same as once; a process whose patterns
  overlap gets each signal once. A subscriber that exits is removed.

  ## Options

  #{Options.docs(@subscribe_schema)}
  Returns `{:error, reason}` for an invalid pattern.

      iex> Jido.Distributed.TreeBroadcast.subscribe("demo.*")
      :ok
      iex> Jido.Distributed.TreeBroadcast.subscribe("demo..x")
      {:error, :empty_segment}
  """
  @spec subscribe(String.t(), keyword()) :: :ok | {:error, Pattern.error_reason()}
  def subscribe(pattern, opts \\ []) when is_list(opts) do
    opts = Options.validate!(opts, @subscribe_schema)

    with {:ok, compiled} <- Pattern.compile(pattern) do
      request = {:subscribe, opts[:pid] || self(), compiled.source, opts[:message_format]}
      GenServer.call(Wire.name(), request)
    end
  end

  @doc """
  Removes the subscriptions of a local process to `pattern`, whatever
  their message formats. Returns `:ok`, also when there was none.

  ## Options

  #{Options.docs(@unsubscribe_schema)}
      iex> :ok = Jido.Distributed.TreeBroadcast.subscribe("demo.*")
      iex> Jido.Distributed.TreeBroadcast.unsubscribe("demo.*")
      :ok
  """
  @spec unsubscribe(String.t(), keyword()) :: :ok
  def unsubscribe(pattern, opts \\ []) when is_binary(pattern) and is_list(opts) do
    opts = Options.validate!(opts, @unsubscribe_schema)
    GenServer.call(Wire.name(), {:unsubscribe, opts[:pid] || self(), pattern})
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
  def stats, do: GenServer.call(Wire.name(), :stats)

  @doc false
  @spec located_members([node()]) :: [TreePlanner.member()]
  defdelegate located_members(members), to: PlanCache

  @doc false
  @spec subscriptions_table() :: atom()
  defdelegate subscriptions_table(), to: Jido.Distributed.Broadcast.Supervisor

  @doc false
  @spec child_budget(integer()) :: pos_integer()
  defdelegate child_budget(remaining), to: Protocol

  @doc false
  # Option checks of the schemas above.
  @spec node_names?(term()) :: boolean()
  def node_names?(nodes), do: is_list(nodes) and Enum.all?(nodes, &is_atom/1)

  @doc false
  @spec local_tree?(term()) :: boolean()
  def local_tree?(tree), do: match?({root, _} when root == node(), tree) and Wire.tree?(tree)

  @doc false
  @spec local_pid?(term()) :: boolean()
  def local_pid?(pid), do: is_pid(pid) and node(pid) == node()
end

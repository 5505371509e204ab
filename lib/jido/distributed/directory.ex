defmodule Jido.Distributed.Directory do
  @moduledoc """
  A cluster-wide directory of agents: their ids, pids, capabilities (signal
  type patterns, see `Jido.Distributed.Pattern`) and load.

      :ok = Directory.register("billing-1", ["order.*.added", "invoice.**"], load: 3)
      Directory.capable("order.item.added")
      #=> [%{id: "billing-1", pid: #PID<...>, node: :"a@host", capabilities: [...], load: 3.0}]

  An agent registers itself (or is registered with `pid:` by, say, its
  supervisor) on its own node. Every node's Directory keeps a replica of
  every other node's agents, so `capable/1`, `whereis/1` and
  `Jido.Router.route_with_locality/1` answer from local ETS tables,
  `:atomics` and a `:persistent_term`, without a message or a network round
  trip. An agent vanishes from every node when its process exits, when it
  unregisters, or when its node goes down.

  ## Replication

  Directories find each other through OTP's `:pg`: each joins one group in a
  scope of its own (`scope/0`) and watches it with `:pg.monitor_scope/1`.
  On seeing another node's Directory join - at start, when a node connects,
  when it reconnects after a partition, when its Directory restarts - a
  Directory *subscribes* to it: it monitors that Directory and sends it a
  subscription carrying the monitor's reference. The other side monitors the
  subscriber back and answers with a *snapshot* of its local agents (and its
  location labels), then streams *deltas* (agent added or changed, removed,
  load changed) to every subscriber, batched: sent when the Directory's
  mailbox is empty, when `:max_batch` changes wait, or after
  `:max_delay_ms`.

  Consistency: each node is the only writer of its own agents, and messages
  between two processes arrive in the order sent, so a replica always holds
  a past state of its owner's agents: deltas apply in order after the
  snapshot (other processes may see a batch half applied; load changes
  within one batch are coalesced to the last value). A
  replica ignores deltas until the snapshot answering its *current*
  subscription has arrived (older snapshots are recognised by their
  reference and dropped), so nothing sent on a previous connection can be
  mixed in. When the monitor of a remote Directory fires (its node went
  down or was cut off, or it crashed), every agent of that node is removed
  from the replica at once; a reconnection is seen as a new `:pg` join and
  starts a new subscription. Replicas are therefore eventually consistent:
  after a change, other nodes see it within one batch delay plus one
  network hop; an agent whose node is unreachable is not listed. Nothing is
  agreed cluster-wide: a router may pick an agent that exited a moment ago
  (the signal then goes nowhere, as a plain `send/2` to a dead pid would).

  Agent ids are unique per node (`register/3` refuses an id held by another
  live process on the same node). Two nodes may register the same id; they
  are then two agents, and `whereis/1` prefers the local one, then the one on
  the smallest node name. Ids are compared with `==`, as keys of an ordered
  ETS table.

  ## Lookups

  Exact patterns (without wildcards) are found with one ETS lookup keyed by
  the signal type. Patterns with wildcards are kept, once each whatever the
  number of agents declaring them, in a compiled
  `Jido.Distributed.CapabilityIndex` published in `:persistent_term`; a
  lookup walks it to find the matching patterns, then reads their agents.
  The index is republished only when the set of wildcard patterns changes;
  loads live in `:atomics` and are read in place.

  Local agents and remote agents are kept in separate tables, so the router
  answers "is there a capable agent on this node?" without looking at remote
  ones.
  """
  use GenServer

  alias Jido.Distributed.{CapabilityIndex, Location, Options, Pattern, Telemetry}
  alias Jido.Distributed.Directory.Store

  @scope :jido_distributed_directory
  @group :directories
  @view {__MODULE__, :view}
  @tag :"$jido_directory"
  @initial_slots 1024

  @register_schema [
    pid: [
      type: {:custom, &is_pid/1, "a pid"},
      default: nil,
      doc:
        "The agent process; defaults to the caller. The registration is made on that " <>
          "process's node."
    ],
    load: [
      type: :any,
      default: 0,
      doc:
        "A non-negative number (see `update_load/2`); another value is refused with " <>
          "`{:error, {:invalid_load, value}}`."
    ]
  ]

  @typedoc "An agent id: any term, unique per node."
  @type id :: term()

  @typedoc """
  What the directory knows of an agent:

    * `:id`, `:pid`, `:node` (the pid's node);
    * `:capabilities` - its signal type patterns, as strings;
    * `:load` - its last reported load, as a float (0.0 unless reported).
  """
  @type descriptor :: %{
          id: id(),
          pid: pid(),
          node: node(),
          capabilities: [String.t()],
          load: float()
        }

  @typedoc "Why a registration or update was refused."
  @type error ::
          {:invalid_pattern, term(), Pattern.error_reason()}
          | {:invalid_load, term()}
          | {:already_registered, pid()}
          | :not_registered
          | {:directory_unavailable, node()}

  # -- API ----------------------------------------------------------------------

  @doc """
  Starts the Directory, registered under the module name. It needs the
  `scope/0` `:pg` scope and `Jido.Distributed.Directory.Store` running; the
  application starts all three.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The `:pg` scope the Directories of the cluster meet in."
  @spec scope() :: atom()
  def scope, do: @scope

  @doc """
  Registers the agent `id` with its capabilities, a list of signal type
  patterns (strings or compiled `Jido.Distributed.Pattern`s).

  Registering the same id again from the same process replaces its
  capabilities and load. The registration lasts until `unregister/1` or the
  process exits, and is visible on this node when this returns, on other
  nodes shortly after.

  ## Options

  #{Options.docs(@register_schema)}

  ## Examples

      iex> alias Jido.Distributed.Directory
      iex> Directory.register("doc-agent", ["doc.*"])
      :ok
      iex> [%{id: "doc-agent", load: 0.0}] = Directory.capable("doc.written")
      iex> Directory.register("doc-agent", ["doc..x"])
      {:error, {:invalid_pattern, "doc..x", :empty_segment}}
      iex> Directory.unregister("doc-agent")
      :ok
  """
  @spec register(id(), [Pattern.t() | String.t()], keyword()) :: :ok | {:error, error()}
  def register(id, capabilities, opts \\ [])

  def register(_id, capabilities, _opts) when not is_list(capabilities) do
    raise ArgumentError,
          "the capabilities argument must be a list of signal type patterns, got: " <>
            inspect(capabilities)
  end

  def register(id, capabilities, opts) do
    opts = Options.validate!(opts, @register_schema)
    pid = opts[:pid] || self()
    load = opts[:load]

    if valid_load?(load) do
      with {:ok, sources} <- compile_capabilities(capabilities) do
        call(node(pid), {:register, id, pid, sources, load})
      end
    else
      {:error, {:invalid_load, load}}
    end
  end

  @doc """
  Sets the load of the agent `id` registered on this node: a non-negative
  number, lower meaning more available (for example a queue length or a
  utilisation). The router prefers less loaded agents among equally near
  ones. Other nodes see the new figure after the next delta batch.
  """
  @spec update_load(id(), number()) :: :ok | {:error, :not_registered | {:invalid_load, term()}}
  def update_load(id, load) do
    if valid_load?(load),
      do: call(node(), {:update_load, id, load}),
      else: {:error, {:invalid_load, load}}
  end

  @doc "Removes the agent `id` registered on this node. Idempotent."
  @spec unregister(id()) :: :ok
  def unregister(id), do: call(node(), {:unregister, id})

  @doc """
  The agent registered as `id`: the one on this node if there is one,
  otherwise the one on the smallest node name. `nil` when unknown.
  """
  @spec whereis(id()) :: descriptor() | nil
  def whereis(id) do
    case view() do
      {_trie, loads, _classes} -> whereis(id, loads)
      nil -> nil
    end
  end

  defp whereis(id, loads) do
    agents = Store.agents()

    case :ets.lookup(agents, {id, node()}) do
      [row] ->
        describe(row, loads)

      [] ->
        # Node names are atoms, which sort after every number: the first key
        # after {id, 0} is this id's row on the smallest node, if any.
        case :ets.next(agents, {id, 0}) do
          {key_id, _node} = key when key_id == id ->
            case :ets.lookup(agents, key) do
              [row] -> describe(row, loads)
              [] -> nil
            end

          _ ->
            nil
        end
    end
  rescue
    ArgumentError -> nil
  end

  @doc """
  Every agent, local or remote, with a capability matching the signal
  `type`, each once: this node's first, then the others'. `[]` for an
  invalid type.
  """
  @spec capable(String.t()) :: [descriptor()]
  def capable(type) do
    case view() do
      {trie, loads, _classes} when is_binary(type) ->
        keys = [type | CapabilityIndex.lookup(trie, type)]

        for table <- [Store.local(), Store.remote()],
            key <- keys,
            {_pattern, id, pid, _slot, _hash} <- :ets.lookup(table, key),
            uniq: true do
          {id, pid}
        end
        |> Enum.flat_map(fn {id, pid} ->
          case :ets.lookup(Store.agents(), {id, node(pid)}) do
            [row] -> [describe(row, loads)]
            [] -> []
          end
        end)

      _ ->
        []
    end
  rescue
    ArgumentError -> []
  end

  @doc "Every agent this node knows of, local and remote, ordered by `{id, node}`."
  @spec agents() :: [descriptor()]
  def agents do
    case view() do
      {_trie, loads, _classes} -> Enum.map(:ets.tab2list(Store.agents()), &describe(&1, loads))
      nil -> []
    end
  rescue
    ArgumentError -> []
  end

  @doc """
  The nodes whose agents this node's replica holds: every node whose
  Directory answered this node's current subscription. Useful to wait for
  the directory to converge after nodes join.
  """
  @spec peers() :: [node()]
  def peers, do: GenServer.call(__MODULE__, :peers)

  # -- internals for Jido.Router (no message, no copy of the index) --------------

  @doc false
  # {capability index of wildcard patterns, load atomics, %{node => class}}, or nil.
  @spec view() :: {CapabilityIndex.t(), :atomics.atomics_ref(), map()} | nil
  def view, do: :persistent_term.get(@view, nil)

  @doc false
  @spec describe(tuple(), :atomics.atomics_ref()) :: descriptor()
  def describe({{id, node}, pid, sources, slot}, loads) do
    %{id: id, pid: pid, node: node, capabilities: sources, load: load_at(loads, slot)}
  end

  @doc false
  # Loads are stored as the bits of a non-negative float, whose order as
  # unsigned integers is the order of the floats: compare them unconverted.
  @spec encode_load(number()) :: non_neg_integer()
  def encode_load(load) when load == 0, do: 0

  def encode_load(load) do
    <<bits::unsigned-64>> = <<:erlang.float(load)::float-64>>
    bits
  end

  @doc false
  @spec decode_load(non_neg_integer()) :: float()
  def decode_load(bits) do
    <<load::float-64>> = <<bits::unsigned-64>>
    load
  end

  # A slot beyond the array: the array grew after `loads` was read.
  defp load_at(loads, slot) do
    if slot <= :atomics.info(loads).size,
      do: decode_load(:atomics.get(loads, slot)),
      else: load_at(elem(view(), 1), slot)
  end

  defp valid_load?(load), do: (is_integer(load) and load >= 0) or (is_float(load) and load >= 0)

  defp compile_capabilities(capabilities) do
    Enum.reduce_while(capabilities, {:ok, []}, fn pattern, {:ok, acc} ->
      case Pattern.compile(pattern) do
        {:ok, %Pattern{source: source}} -> {:cont, {:ok, [source | acc]}}
        {:error, reason} -> {:halt, {:error, {:invalid_pattern, pattern, reason}}}
      end
    end)
    |> case do
      {:ok, sources} -> {:ok, sources |> Enum.reverse() |> Enum.uniq()}
      error -> error
    end
  end

  defp call(node, message) do
    dest = if node == node(), do: __MODULE__, else: {__MODULE__, node}
    GenServer.call(dest, message)
  catch
    :exit, _reason -> {:error, {:directory_unavailable, node}}
  end

  # -- server -------------------------------------------------------------------

  # State:
  #   local       %{id => {pid, sources, slot, monitor_ref}}
  #   remote      %{node => %{id => {pid, sources, slot}}}
  #   refs        %{monitor_ref => {:agent, id} | {:peer, pid} | {:subscriber, pid}}
  #   peers       %{directory_pid => {monitor_ref, :pending | :synced}}, those we subscribe to
  #   subscribers %{directory_pid => monitor_ref}, those subscribed to us
  #   wild        %{wildcard pattern => number of agents declaring it}
  #   trie        CapabilityIndex of the wildcard patterns (value = pattern)
  #   loads, capacity, free, next_slot - load slots in :atomics
  #   classes     %{node => distance class}, learned from snapshots
  #   dirty, dirty_since - view (trie, loads, classes) changed since last published
  #   ops, op_count, pending_loads, since - deltas not yet sent to subscribers

  @impl true
  def init(_opts) do
    settings = Options.get(:directory)
    {pg_ref, groups} = watch_scope()

    {loads, capacity} =
      case view() do
        {_trie, loads, _classes} -> {loads, :atomics.info(loads).size}
        nil -> {:atomics.new(@initial_slots, signed: false), @initial_slots}
      end

    state = %{
      local: %{},
      remote: %{},
      refs: %{},
      peers: %{},
      subscribers: %{},
      wild: %{},
      trie: CapabilityIndex.new(),
      loads: loads,
      capacity: capacity,
      free: [],
      next_slot: 1,
      classes: %{},
      dirty: true,
      dirty_since: nil,
      ops: [],
      op_count: 0,
      pending_loads: %{},
      since: nil,
      pg_ref: pg_ref,
      max_batch: settings[:max_batch],
      max_delay: settings[:max_delay_ms]
    }

    state = recover(state)
    :ok = :pg.join(@scope, @group, self())
    state = groups |> Map.get(@group, []) |> Enum.reduce(state, &subscribe/2)
    {:ok, publish(state)}
  end

  # `:pg.monitor_scope/1` from a linked forwarder, not from this process:
  # OTP 25's pg crashes (a case clause in its 'DOWN' handler) when one
  # process both joined a group and monitors the scope, and dies. The
  # forwarder passes the scope's join/leave messages on unchanged, in order,
  # and dies with this process.
  defp watch_scope do
    directory = self()

    watcher =
      spawn_link(fn ->
        {ref, groups} = :pg.monitor_scope(@scope)
        send(directory, {:scope_watch, self(), ref, groups})
        forward_scope_events(directory)
      end)

    receive do
      {:scope_watch, ^watcher, ref, groups} -> {ref, groups}
    after
      5_000 -> exit({:pg_scope_unavailable, @scope})
    end
  end

  defp forward_scope_events(directory) do
    receive do
      message -> send(directory, message)
    end

    forward_scope_events(directory)
  end

  # After a restart: keep the local agents found in the tables (monitoring
  # them again), forget remote ones (peers send fresh snapshots).
  defp recover(state) do
    me = node()
    :ets.delete_all_objects(Store.remote())

    state =
      Enum.reduce(:ets.tab2list(Store.agents()), state, fn
        {{id, ^me}, pid, sources, slot}, state ->
          ref = Process.monitor(pid)

          %{
            state
            | local: Map.put(state.local, id, {pid, sources, slot, ref}),
              refs: Map.put(state.refs, ref, {:agent, id}),
              next_slot: max(state.next_slot, slot + 1)
          }
          |> add_wild(sources)

        {key, _pid, _sources, _slot}, state ->
          :ets.delete(Store.agents(), key)
          state
      end)

    used = for {_id, {_pid, _sources, slot, _ref}} <- state.local, into: MapSet.new(), do: slot
    free = for slot <- 1..(state.next_slot - 1)//1, not MapSet.member?(used, slot), do: slot
    state = ensure_capacity(%{state | free: free}, state.next_slot - 1)
    for slot <- free, do: :atomics.put(state.loads, slot, 0)
    state
  end

  @impl true
  def handle_call({:register, _id, pid, _sources, _load}, _from, state)
      when node(pid) != node(),
      do: {:reply, {:error, {:not_local, pid}}, state}

  def handle_call({:register, id, pid, sources, load}, _from, state) do
    case Map.fetch(state.local, id) do
      {:ok, {^pid, old_sources, slot, ref}} ->
        :ets.insert(Store.agents(), {{id, node()}, pid, sources, slot})
        delete_rows(Store.local(), id, pid, slot, old_sources)
        insert_rows(Store.local(), id, pid, slot, sources)
        :atomics.put(state.loads, slot, encode_load(load))

        state =
          %{state | local: Map.put(state.local, id, {pid, sources, slot, ref})}
          |> add_wild(sources)
          |> remove_wild(old_sources)
          |> queue({:put, id, pid, sources, load}, id)

        {:reply, :ok, finish(state, true)}

      {:ok, {other, _sources, _slot, _ref}} ->
        {:reply, {:error, {:already_registered, other}}, state}

      :error ->
        {slot, state} = alloc_slot(state)
        ref = Process.monitor(pid)
        :atomics.put(state.loads, slot, encode_load(load))
        :ets.insert(Store.agents(), {{id, node()}, pid, sources, slot})
        insert_rows(Store.local(), id, pid, slot, sources)

        state =
          %{
            state
            | local: Map.put(state.local, id, {pid, sources, slot, ref}),
              refs: Map.put(state.refs, ref, {:agent, id})
          }
          |> add_wild(sources)
          |> queue({:put, id, pid, sources, load}, id)

        {:reply, :ok, finish(state, true)}
    end
  end

  def handle_call({:update_load, id, load}, _from, state) do
    case Map.fetch(state.local, id) do
      {:ok, {_pid, _sources, slot, _ref}} ->
        :atomics.put(state.loads, slot, encode_load(load))
        {:reply, :ok, finish(queue_load(state, id, load))}

      :error ->
        {:reply, {:error, :not_registered}, finish(state)}
    end
  end

  def handle_call({:unregister, id}, _from, state) do
    state =
      case Map.fetch(state.local, id) do
        {:ok, {_pid, _sources, _slot, ref}} ->
          Process.demonitor(ref, [:flush])
          remove_local(%{state | refs: Map.delete(state.refs, ref)}, id)

        :error ->
          state
      end

    {:reply, :ok, finish(state)}
  end

  def handle_call(:peers, _from, state) do
    nodes = for {pid, {_ref, :synced}} <- state.peers, do: node(pid)
    {:reply, Enum.sort(nodes), finish(state)}
  end

  @impl true
  def handle_info({ref, :join, @group, pids}, %{pg_ref: ref} = state),
    do: {:noreply, finish(Enum.reduce(pids, state, &subscribe/2))}

  # Leaves are seen through the monitors, which are ordered with the
  # Directory's own messages.
  def handle_info({ref, :leave, @group, _pids}, %{pg_ref: ref} = state),
    do: {:noreply, finish(state)}

  def handle_info({@tag, :subscribe, from, sub_ref}, state)
      when is_pid(from) and node(from) != node() do
    # Deltas already queued go to the existing subscribers only: the
    # snapshot below includes them.
    state = flush(state)

    state =
      case Map.fetch(state.subscribers, from) do
        {:ok, old} ->
          Process.demonitor(old, [:flush])
          %{state | refs: Map.delete(state.refs, old)}

        :error ->
          state
      end

    ref = Process.monitor(from)

    entries =
      for {id, {pid, sources, slot, _ref}} <- state.local do
        {id, pid, sources, decode_load(:atomics.get(state.loads, slot))}
      end

    send_to(from, {@tag, :snapshot, self(), sub_ref, Location.local(), entries})

    state = %{
      state
      | subscribers: Map.put(state.subscribers, from, ref),
        refs: Map.put(state.refs, ref, {:subscriber, from})
    }

    {:noreply, finish(state)}
  end

  def handle_info({@tag, :snapshot, from, sub_ref, labels, entries}, state)
      when is_pid(from) and is_list(entries) do
    case Map.fetch(state.peers, from) do
      {:ok, {^sub_ref, _status}} ->
        node = node(from)

        state =
          state
          |> drop_stale_peers(node, from)
          |> replace_node(node, entries)
          |> learn_location(node, labels)

        state = %{state | peers: Map.put(state.peers, from, {sub_ref, :synced})}
        agents = map_size(Map.get(state.remote, node, %{}))
        Telemetry.emit([:directory, :sync], %{agents: agents}, %{node: node})
        {:noreply, finish(state)}

      _stale ->
        {:noreply, finish(state)}
    end
  end

  def handle_info({@tag, :delta, from, ops}, state) when is_pid(from) and is_list(ops) do
    case Map.fetch(state.peers, from) do
      {:ok, {_ref, :synced}} ->
        node = node(from)
        {:noreply, finish(Enum.reduce(ops, state, &apply_op(&2, node, &1)))}

      _not_synced ->
        {:noreply, finish(state)}
    end
  end

  def handle_info({:DOWN, ref, :process, _pid, reason}, state) do
    {kind, refs} = Map.pop(state.refs, ref)
    state = %{state | refs: refs}

    state =
      case kind do
        {:agent, id} ->
          remove_local(state, id)

        {:peer, pid} ->
          node = node(pid)
          dropped = map_size(Map.get(state.remote, node, %{}))
          state = drop_node(%{state | peers: Map.delete(state.peers, pid)}, node)

          Telemetry.emit([:directory, :peer_down], %{agents: dropped}, %{
            node: node,
            reason: reason
          })

          state

        {:subscriber, pid} ->
          %{state | subscribers: Map.delete(state.subscribers, pid)}

        nil ->
          state
      end

    {:noreply, finish(state)}
  end

  def handle_info(_other, state), do: {:noreply, finish(state)}

  # -- subscriptions ---------------------------------------------------------------

  # (Re)subscribes to the Directory `pid` on another node. A join for a
  # Directory already subscribed to means its node reconnected: the old
  # subscription's monitor is dropped (with any DOWN already queued) and a
  # new one starts; the replica keeps the old copy until the new snapshot.
  defp subscribe(pid, state) when node(pid) == node(), do: state

  defp subscribe(pid, state) do
    refs =
      case Map.fetch(state.peers, pid) do
        {:ok, {old, _status}} ->
          Process.demonitor(old, [:flush])
          Map.delete(state.refs, old)

        :error ->
          state.refs
      end

    ref = Process.monitor(pid)
    send_to(pid, {@tag, :subscribe, self(), ref})

    %{
      state
      | peers: Map.put(state.peers, pid, {ref, :pending}),
        refs: Map.put(refs, ref, {:peer, pid})
    }
  end

  # A snapshot from a new Directory on `node` means any older one there is
  # gone (its DOWN may still be on the way).
  defp drop_stale_peers(state, node, current) do
    Enum.reduce(state.peers, state, fn
      {pid, {ref, _status}}, state when pid != current and node(pid) == node ->
        Process.demonitor(ref, [:flush])
        %{state | peers: Map.delete(state.peers, pid), refs: Map.delete(state.refs, ref)}

      _peer, state ->
        state
    end)
  end

  defp learn_location(state, node, labels) do
    if is_map(labels) and Map.keys(labels) -- [:region, :zone, :rack] == [] do
      labels = Map.merge(%{region: nil, zone: nil, rack: nil}, labels)
      Location.put(node, labels)
      class = Location.class(Location.local(), labels)

      if Map.get(state.classes, node) == class,
        do: state,
        else: %{state | classes: Map.put(state.classes, node, class), dirty: true}
    else
      state
    end
  end

  defp send_to(pid, message), do: :erlang.send(pid, message, [:noconnect])

  # -- replica of remote agents ----------------------------------------------------

  defp replace_node(state, node, entries) do
    state = Enum.reduce(entries, state, &put_remote(&2, node, &1))
    keep = for entry <- entries, into: MapSet.new(), do: elem(entry, 0)

    state.remote
    |> Map.get(node, %{})
    |> Map.keys()
    |> Enum.reject(&MapSet.member?(keep, &1))
    |> Enum.reduce(state, &delete_remote(&2, node, &1))
  end

  defp apply_op(state, node, {:put, id, pid, sources, load}),
    do: put_remote(state, node, {id, pid, sources, load})

  defp apply_op(state, node, {:del, id}), do: delete_remote(state, node, id)

  defp apply_op(state, node, {:load, id, load}) do
    case state.remote do
      %{^node => %{^id => {_pid, _sources, slot}}} when is_number(load) and load >= 0 ->
        :atomics.put(state.loads, slot, encode_load(load))
        state

      _ ->
        state
    end
  end

  defp apply_op(state, _node, _unknown), do: state

  defp put_remote(state, node, {id, pid, sources, load})
       when is_pid(pid) and node(pid) == node and is_list(sources) do
    sources = for source <- sources, is_binary(source), Pattern.valid?(source), do: source
    load = if is_number(load) and load >= 0, do: load, else: 0
    agents = Map.get(state.remote, node, %{})

    {slot, state} =
      case agents do
        %{^id => {^pid, ^sources, slot}} ->
          {slot, state}

        %{^id => {old_pid, old_sources, slot}} ->
          delete_rows(Store.remote(), id, old_pid, slot, old_sources)
          insert_rows(Store.remote(), id, pid, slot, sources)
          :ets.insert(Store.agents(), {{id, node}, pid, sources, slot})
          {slot, state |> add_wild(sources) |> remove_wild(old_sources)}

        _ ->
          {slot, state} = alloc_slot(state)
          insert_rows(Store.remote(), id, pid, slot, sources)
          :ets.insert(Store.agents(), {{id, node}, pid, sources, slot})
          {slot, add_wild(state, sources)}
      end

    :atomics.put(state.loads, slot, encode_load(load))
    agents = Map.get(state.remote, node, %{})
    %{state | remote: Map.put(state.remote, node, Map.put(agents, id, {pid, sources, slot}))}
  end

  defp put_remote(state, _node, _malformed), do: state

  defp delete_remote(state, node, id) do
    case state.remote do
      %{^node => %{^id => {pid, sources, slot}} = agents} ->
        delete_rows(Store.remote(), id, pid, slot, sources)
        :ets.delete(Store.agents(), {id, node})
        agents = Map.delete(agents, id)

        remote =
          if agents == %{},
            do: Map.delete(state.remote, node),
            else: Map.put(state.remote, node, agents)

        %{state | remote: remote} |> remove_wild(sources) |> free_slot(slot)

      _ ->
        state
    end
  end

  defp drop_node(state, node) do
    state.remote
    |> Map.get(node, %{})
    |> Map.keys()
    |> Enum.reduce(state, &delete_remote(&2, node, &1))
  end

  # -- local agents ------------------------------------------------------------------

  defp remove_local(state, id) do
    case Map.pop(state.local, id) do
      {{pid, sources, slot, _ref}, local} ->
        delete_rows(Store.local(), id, pid, slot, sources)
        :ets.delete(Store.agents(), {id, node()})

        %{state | local: local}
        |> remove_wild(sources)
        |> free_slot(slot)
        |> queue({:del, id}, id)

      {nil, _local} ->
        state
    end
  end

  # The id's hash is kept in the row for the router's tie-break.
  defp insert_rows(table, id, pid, slot, sources) do
    hash = :erlang.phash2(id)
    :ets.insert(table, for(source <- sources, do: {source, id, pid, slot, hash}))
  end

  defp delete_rows(table, id, pid, slot, sources) do
    hash = :erlang.phash2(id)
    Enum.each(sources, &:ets.delete_object(table, {&1, id, pid, slot, hash}))
  end

  # -- wildcard patterns and the published view ------------------------------------

  defp add_wild(state, sources) do
    Enum.reduce(sources, state, fn source, state ->
      if wildcard?(source) do
        case state.wild do
          %{^source => n} ->
            %{state | wild: %{state.wild | source => n + 1}}

          _ ->
            %{
              state
              | wild: Map.put(state.wild, source, 1),
                trie: CapabilityIndex.put(state.trie, source, source),
                dirty: true
            }
        end
      else
        state
      end
    end)
  end

  defp remove_wild(state, sources) do
    Enum.reduce(sources, state, fn source, state ->
      case state.wild do
        %{^source => 1} ->
          %{
            state
            | wild: Map.delete(state.wild, source),
              trie: CapabilityIndex.delete(state.trie, source, source),
              dirty: true
          }

        %{^source => n} ->
          %{state | wild: %{state.wild | source => n - 1}}

        _ ->
          state
      end
    end)
  end

  defp wildcard?(source), do: :binary.match(source, "*") != :nomatch

  defp alloc_slot(%{free: [slot | free]} = state), do: {slot, %{state | free: free}}

  defp alloc_slot(%{next_slot: slot, capacity: capacity} = state) when slot <= capacity,
    do: {slot, %{state | next_slot: slot + 1}}

  defp alloc_slot(%{capacity: capacity} = state),
    do: state |> ensure_capacity(capacity * 2) |> alloc_slot()

  # A larger array, with the loads copied, published at once: rows written
  # next may use its new slots, which readers of the old view must not meet.
  # (Only this process writes loads, so none is lost between copy and swap.)
  defp ensure_capacity(%{capacity: capacity} = state, needed) when needed <= capacity,
    do: state

  defp ensure_capacity(%{capacity: capacity, loads: old} = state, needed) do
    size = max(needed, capacity * 2)
    loads = :atomics.new(size, signed: false)
    old_size = :atomics.info(old).size
    for slot <- 1..old_size, do: :atomics.put(loads, slot, :atomics.get(old, slot))
    publish(%{state | loads: loads, capacity: size})
  end

  defp free_slot(state, slot) do
    :atomics.put(state.loads, slot, 0)
    %{state | free: [slot | state.free]}
  end

  defp publish(state) do
    :persistent_term.put(@view, {state.trie, state.loads, state.classes})
    %{state | dirty: false, dirty_since: nil}
  end

  # -- deltas to subscribers -----------------------------------------------------------

  # A put carries the current load, so a load queued before it is stale.
  defp queue(state, op, id) do
    %{
      state
      | ops: [op | state.ops],
        op_count: state.op_count + 1,
        pending_loads: Map.delete(state.pending_loads, id),
        since: state.since || now()
    }
  end

  defp queue_load(state, id, load) do
    %{
      state
      | pending_loads: Map.put(state.pending_loads, id, load),
        op_count: state.op_count + 1,
        since: state.since || now()
    }
  end

  defp flush(%{op_count: 0} = state), do: state

  defp flush(state) do
    ops = Enum.reverse(state.ops, for({id, load} <- state.pending_loads, do: {:load, id, load}))

    for chunk <- Enum.chunk_every(ops, state.max_batch), {pid, _ref} <- state.subscribers do
      send_to(pid, {@tag, :delta, self(), chunk})
    end

    %{state | ops: [], op_count: 0, pending_loads: %{}, since: nil}
  end

  # Called at the end of every callback: publishes the view and sends the
  # queued deltas when the mailbox is empty (so bursts are batched), when
  # enough deltas wait, or when the oldest has waited `:max_delay_ms`.
  # `force` publishes the view now (a registration is visible locally when
  # `register/3` returns).
  defp finish(state, force \\ false) do
    idle = Process.info(self(), :message_queue_len) == {:message_queue_len, 0}

    state =
      cond do
        not state.dirty -> state
        force or idle or overdue?(state.dirty_since, state.max_delay) -> publish(state)
        state.dirty_since == nil -> %{state | dirty_since: now()}
        true -> state
      end

    if idle or state.op_count >= state.max_batch or overdue?(state.since, state.max_delay),
      do: flush(state),
      else: state
  end

  defp overdue?(nil, _max_delay), do: false
  defp overdue?(since, max_delay), do: now() - since >= max_delay

  defp now, do: System.monotonic_time(:millisecond)
end

defmodule Jido.Distributed.Directory.Server do
  @moduledoc """
  The node's Directory process (registered as
  `Jido.Distributed.Directory.Wire.name/0`): the only writer of the
  Directory's tables. It registers and watches this node's agents, sends
  their changes to the subscribed Directories of other nodes, and keeps
  the replica of theirs (see `Jido.Distributed.Directory` for the
  protocol).

  The work is done by pure modules and the table writer:
  `Jido.Distributed.Directory.Wire` checks every message from another node,
  `Jido.Distributed.Directory.Replica` turns snapshots and deltas into table
  work, `Jido.Distributed.Directory.Deltas` batches this node's changes,
  and `Jido.Distributed.Directory.Index` writes the tables and the view.
  A message refused by the wire is counted (`:malformed` in
  `Jido.Distributed.Directory.stats/0`) and logged, the first of each kind
  only; it never crashes the server.

  On a restart the server keeps every agent found in the tables: local ones
  are monitored again; remote ones stay until their node's Directory
  answers the new subscription (its snapshot replaces them) or is found
  gone.
  """
  use GenServer
  require Logger

  alias Jido.Distributed.{Malformed, Monitor, Options, Telemetry}
  alias Jido.Distributed.Directory.{Deltas, Index, Replica, Store, Wire}
  alias Jido.Distributed.Routing.Location

  @doc "Starts the server. It needs the `:pg` scope and the tables (its supervisor's)."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: Wire.name())

  # State:
  #   local       %{id => {pid, sources, slot, monitor_ref}}
  #   remote      %{node => %{id => {pid, sources, slot}}} (Replica.known per node)
  #   refs        %{monitor_ref => {:agent, id} | {:peer, pid} | {:subscriber, pid}}
  #   peers       %{directory_pid => {monitor_ref, :pending | :synced}}, those we subscribe to
  #   subscribers %{directory_pid => monitor_ref}, those subscribed to us
  #   index       Index (tables, loads, view)
  #   deltas      Deltas waiting for the subscribers
  #   logged      garbage kinds already logged

  @impl true
  def init(_opts) do
    settings = Options.get(:directory)
    {pg_ref, groups} = watch_scope()
    {index, local, remote} = Index.recover(node())

    refs_local =
      Map.new(local, fn {id, {pid, sources, slot}} ->
        {id, {pid, sources, slot, Process.monitor(pid)}}
      end)

    state = %{
      local: refs_local,
      remote: remote,
      refs: Map.new(refs_local, fn {id, {_pid, _s, _slot, ref}} -> {ref, {:agent, id}} end),
      peers: %{},
      subscribers: %{},
      index: index,
      deltas: Deltas.new(),
      logged: MapSet.new(),
      # node => timer ref: agents kept while the Monitor finds the node
      # unreachable (not gone), see `down/3`
      kept: %{},
      pg_ref: pg_ref,
      limits: {settings[:max_batch], settings[:max_delay_ms]}
    }

    :ok = :pg.join(Wire.scope(), Wire.group(), self())
    members = Map.get(groups, Wire.group(), [])
    # Remote agents of a node without a Directory in the scope are gone.
    present = MapSet.new(members, &node/1)

    state =
      state.remote
      |> Map.keys()
      |> Enum.reject(&MapSet.member?(present, &1))
      |> Enum.reduce(state, &drop_node(&2, &1))

    state = Enum.reduce(members, state, &subscribe/2)
    {:ok, %{state | index: Index.publish(state.index)}}
  end

  # `:pg.monitor_scope/1` from a linked forwarder, not from this process:
  # OTP 25's pg crashes (a case clause in its 'DOWN' handler) when one
  # process both joined a group and monitors the scope, and dies. The
  # forwarder passes the scope's join/leave messages on unchanged, in order,
  # and dies with this process.
  defp watch_scope do
    directory = self()
    scope = Wire.scope()

    watcher =
      spawn_link(fn ->
        {ref, groups} = :pg.monitor_scope(scope)
        send(directory, {:scope_watch, self(), ref, groups})
        forward_scope_events(directory)
      end)

    receive do
      {:scope_watch, ^watcher, ref, groups} -> {ref, groups}
    after
      5_000 -> exit({:pg_scope_unavailable, scope})
    end
  end

  defp forward_scope_events(directory) do
    receive do
      message -> send(directory, message)
    end

    forward_scope_events(directory)
  end

  # -- calls --------------------------------------------------------------------

  @impl true
  def handle_call(request, _from, state) do
    case Wire.parse_call(request) do
      {:ok, request} ->
        request(request, state)

      {:error, {:not_local, _pid} = error} ->
        {:reply, {:error, error}, state}

      {:error, kind} ->
        {:reply, {:error, :malformed}, finish(garbage(state, kind, request))}
    end
  end

  defp request({:register, entry}, state), do: register(entry, state)

  defp request({:update_load, id, load}, state) do
    case Map.fetch(state.local, id) do
      {:ok, {_pid, _sources, slot, _ref}} ->
        index = Index.set_load(state.index, slot, load)
        deltas = Deltas.load(state.deltas, id, load, now())
        {:reply, :ok, finish(%{state | index: index, deltas: deltas})}

      :error ->
        {:reply, {:error, :not_registered}, finish(state)}
    end
  end

  defp request({:unregister, id}, state) do
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

  defp request(:peers, state) do
    nodes = for {pid, {_ref, :synced}} <- state.peers, do: node(pid)
    {:reply, Enum.sort(nodes), finish(state)}
  end

  defp register({id, pid, sources, load}, state) do
    case Map.fetch(state.local, id) do
      {:ok, {^pid, old_sources, slot, ref}} ->
        index =
          state.index
          |> Index.replace(Store.local(), node(), id, {pid, old_sources}, {pid, sources}, slot)
          |> Index.set_load(slot, load)

        state = %{
          state
          | index: index,
            local: Map.put(state.local, id, {pid, sources, slot, ref})
        }

        {:reply, :ok, finish(queue(state, {:put, id, pid, sources, load}, id), true)}

      {:ok, {other, _sources, _slot, _ref}} ->
        {:reply, {:error, {:already_registered, other}}, state}

      :error ->
        {slot, index} = Index.insert(state.index, Store.local(), node(), id, pid, sources, load)
        ref = Process.monitor(pid)

        state = %{
          state
          | index: index,
            local: Map.put(state.local, id, {pid, sources, slot, ref}),
            refs: Map.put(state.refs, ref, {:agent, id})
        }

        {:reply, :ok, finish(queue(state, {:put, id, pid, sources, load}, id), true)}
    end
  end

  # -- messages -------------------------------------------------------------------

  @impl true
  def handle_info({ref, :join, group, pids}, %{pg_ref: ref} = state) do
    if group == Wire.group(),
      do: {:noreply, finish(Enum.reduce(pids, state, &subscribe/2))},
      else: {:noreply, finish(state)}
  end

  # Leaves are seen through the monitors, which are ordered with the
  # Directory's own messages.
  def handle_info({ref, :leave, _group, _pids}, %{pg_ref: ref} = state),
    do: {:noreply, finish(state)}

  def handle_info({:kept_check, node, ref}, state) do
    case state.kept do
      %{^node => ^ref} -> {:noreply, finish(check_kept(state, node))}
      _ -> {:noreply, state}
    end
  end

  def handle_info({:DOWN, ref, :process, _pid, reason}, state) do
    {kind, refs} = Map.pop(state.refs, ref)
    {:noreply, finish(down(kind, reason, %{state | refs: refs}))}
  end

  def handle_info(message, state) do
    case Wire.parse(message) do
      {:ok, parsed, 0} ->
        {:noreply, finish(handle_wire(parsed, state))}

      {:ok, parsed, _dropped} ->
        {:noreply, finish(handle_wire(parsed, garbage(state, :bad_entry, message)))}

      {:error, kind} ->
        {:noreply, finish(garbage(state, kind, message))}

      :other ->
        {:noreply, finish(state)}
    end
  end

  defp handle_wire({:subscribe, from, sub_ref}, state) do
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
        {id, pid, sources, Index.decode_load(:atomics.get(state.index.loads, slot))}
      end

    Wire.send_to(from, Wire.snapshot(self(), sub_ref, Location.local(), entries))

    %{
      state
      | subscribers: Map.put(state.subscribers, from, ref),
        refs: Map.put(state.refs, ref, {:subscriber, from})
    }
  end

  defp handle_wire({:snapshot, from, sub_ref, labels, entries}, state) do
    case Map.fetch(state.peers, from) do
      {:ok, {^sub_ref, _status}} ->
        node = node(from)
        state = drop_stale_peers(state, node, from)
        ops = Replica.snapshot_ops(Map.get(state.remote, node, %{}), entries)
        state = state |> apply_ops(node, ops) |> learn_location(node, labels)
        state = %{state | peers: Map.put(state.peers, from, {sub_ref, :synced})}
        agents = map_size(Map.get(state.remote, node, %{}))
        Telemetry.emit([:directory, :sync], %{agents: agents}, %{node: node})
        state

      _stale ->
        state
    end
  end

  defp handle_wire({:delta, from, ops}, state) do
    case Map.fetch(state.peers, from) do
      {:ok, {_ref, :synced}} -> apply_ops(state, node(from), ops)
      _not_synced -> state
    end
  end

  defp down({:agent, id}, _reason, state), do: remove_local(state, id)

  defp down({:peer, pid}, reason, state) do
    node = node(pid)
    state = %{state | peers: Map.delete(state.peers, pid)}

    # A connection lost while the Monitor finds the node unreachable (a
    # partition, not a departure): its agents stay, unrouted (the Router
    # weighs the node :infinity), until the Monitor says it is gone, so
    # a short partition costs no churn; a reconnect replaces them with a
    # fresh snapshot.
    if reason == :noconnection and Monitor.status(node) == :unreachable,
      do: keep_node(state, node),
      else: drop_peer_node(state, node, reason)
  end

  defp down({:subscriber, pid}, _reason, state),
    do: %{state | subscribers: Map.delete(state.subscribers, pid)}

  defp down(nil, _reason, state), do: state

  # Counts a message (or part of one) refused by the wire; logs the first
  # of each kind.
  defp garbage(state, kind, message) do
    Store.count(:malformed)

    %{
      state
      | logged: Malformed.report(state.logged, :directory, kind, message, inspect(Wire.name()))
    }
  end

  # -- subscriptions ----------------------------------------------------------------

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
    Wire.send_to(pid, Wire.subscribe(self(), ref))

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

  defp learn_location(state, _node, nil), do: state

  defp learn_location(state, node, labels) do
    Location.put(node, labels)
    %{state | index: Index.put_class(state.index, node, Location.class(Location.local(), labels))}
  end

  # -- the replica -------------------------------------------------------------------

  defp apply_ops(state, node, ops) do
    {known, index} =
      Enum.reduce(ops, {Map.get(state.remote, node, %{}), state.index}, fn op, acc ->
        Enum.reduce(Replica.effects(elem(acc, 0), op), acc, &apply_effect(&1, node, &2))
      end)

    remote =
      if known == %{},
        do: Map.delete(state.remote, node),
        else: Map.put(state.remote, node, known)

    %{state | remote: remote, index: index}
  end

  defp apply_effect({:insert, id, pid, sources, load} = effect, node, {known, index}) do
    {slot, index} = Index.insert(index, Store.remote(), node, id, pid, sources, load)
    {Replica.update(known, effect, slot), index}
  end

  defp apply_effect({:replace, id, old, new, slot} = effect, node, {known, index}),
    do:
      {Replica.update(known, effect, nil),
       Index.replace(index, Store.remote(), node, id, old, new, slot)}

  defp apply_effect({:set_load, slot, load}, _node, {known, index}),
    do: {known, Index.set_load(index, slot, load)}

  defp apply_effect({:remove, id, pid, sources, slot} = effect, node, {known, index}),
    do:
      {Replica.update(known, effect, nil),
       Index.remove(index, Store.remote(), node, id, pid, sources, slot)}

  defp drop_peer_node(state, node, reason) do
    dropped = map_size(Map.get(state.remote, node, %{}))
    state = drop_node(%{state | kept: Map.delete(state.kept, node)}, node)
    Telemetry.emit([:directory, :peer_down], %{agents: dropped}, %{node: node, reason: reason})
    state
  end

  @kept_check_ms 1_000

  defp keep_node(state, node) do
    ref = make_ref()
    Process.send_after(self(), {:kept_check, node, ref}, @kept_check_ms)
    %{state | kept: Map.put(state.kept, node, ref)}
  end

  defp check_kept(state, node) do
    cond do
      # Back: its new subscription's snapshot took over.
      Enum.any?(Map.keys(state.peers), &(node(&1) == node)) ->
        %{state | kept: Map.delete(state.kept, node)}

      Monitor.status(node) == :unreachable ->
        keep_node(state, node)

      true ->
        drop_peer_node(state, node, :noconnection)
    end
  end

  defp drop_node(state, node) do
    dels = for id <- Map.keys(Map.get(state.remote, node, %{})), do: {:del, id}
    apply_ops(state, node, dels)
  end

  # -- local agents ------------------------------------------------------------------

  defp remove_local(state, id) do
    case Map.pop(state.local, id) do
      {{pid, sources, slot, _ref}, local} ->
        index = Index.remove(state.index, Store.local(), node(), id, pid, sources, slot)
        queue(%{state | local: local, index: index}, {:del, id}, id)

      {nil, _local} ->
        state
    end
  end

  # -- deltas to subscribers and the view ---------------------------------------------

  defp queue(state, op, id), do: %{state | deltas: Deltas.op(state.deltas, op, id, now())}

  defp flush(state) do
    {chunks, deltas} = Deltas.take(state.deltas, elem(state.limits, 0))

    for chunk <- chunks,
        {pid, _ref} <- state.subscribers,
        do: Wire.send_to(pid, Wire.delta(self(), chunk))

    %{state | deltas: deltas}
  end

  # Called at the end of every callback: publishes the view and sends the
  # queued deltas when the mailbox is empty (so bursts are batched), when
  # enough deltas wait, or when the oldest has waited `:max_delay_ms`.
  # `force` publishes the view now (a registration is visible locally when
  # `register/3` returns).
  defp finish(state, force \\ false) do
    idle = Process.info(self(), :message_queue_len) == {:message_queue_len, 0}
    now = now()
    {_max_batch, max_delay} = state.limits
    state = %{state | index: Index.maybe_publish(state.index, force or idle, now, max_delay)}
    if Deltas.due?(state.deltas, idle, now, state.limits), do: flush(state), else: state
  end

  defp now, do: System.monotonic_time(:millisecond)
end

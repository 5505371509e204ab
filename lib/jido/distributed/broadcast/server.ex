defmodule Jido.Distributed.Broadcast.Server do
  @moduledoc """
  The node's broadcast process, registered as `Jido.Distributed.TreeBroadcast`
  (`Jido.Distributed.Broadcast.Wire.name/0`): it takes broadcasts started
  here (in batches, see `Jido.Distributed.Broadcast.Batch`), relays
  broadcasts from parents, delivers to local subscribers, and carries out
  what `Jido.Distributed.Broadcast.Protocol` decides: sends to children,
  acks to parents (through `Jido.Distributed.Broadcast.Outbox`), replies to
  callers. Every message from another node is checked by
  `Jido.Distributed.Broadcast.Wire` first. The behaviour is described in
  `Jido.Distributed.TreeBroadcast`.
  """
  use GenServer

  import Bitwise, only: [<<<: 2]

  require Logger

  require Jido.Distributed.Broadcast.Stats, as: Stats

  alias Jido.Distributed.{Frame, Malformed, Message, Options, Telemetry, TreePlanner}
  alias Jido.Distributed.Routing.Pattern
  alias Jido.Distributed.Broadcast.{Actions, Atoms, Batch, Outbox, PlanCache, Protocol, Recent}
  alias Jido.Distributed.Broadcast.{Session, Subscriptions, Wire}

  import Jido.Distributed.Broadcast.Actions,
    only: [deliver: 2, now_ms: 0, put_session: 2, schedule_sweep: 1, settle: 2]

  @doc "Starts the node's broadcast process; `:subscriptions` names the subscriptions table."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: Wire.name())

  @impl true
  def init(opts) do
    settings = Options.get(:broadcast)
    max_frame_size = Options.get(:max_frame_size)
    :ok = :net_kernel.monitor_nodes(true)
    instance = :rand.uniform(1 <<< 47)

    :ok =
      PlanCache.put_context(instance, {settings[:fanout], settings[:timeout_ms], max_frame_size})

    {:ok,
     %{
       counters: Stats.new(),
       subscriptions: Subscriptions.load(Keyword.fetch!(opts, :subscriptions)),
       sessions: %{},
       # broadcast id => the id of the batch it went in, while in flight,
       # for the broadcasts that are not first in their batch
       batch_of: %{},
       recent: Recent.new(settings[:dedup_size], settings[:dedup_ttl_ms]),
       sends: %{},
       atoms: Atoms.new(),
       outbox: Outbox.new(),
       sweep: nil,
       prune: schedule_prune(settings[:dedup_ttl_ms]),
       # reasons of malformed messages already logged (each is logged once)
       logged: MapSet.new(),
       sweep_ms: settings[:ack_timeout_ms] |> div(4) |> max(10) |> min(250),
       ack_timeout_ms: settings[:ack_timeout_ms],
       ttl_ms: settings[:dedup_ttl_ms],
       max_frame_size: max_frame_size
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
        noreply(put_session(state, Session.add_parent(session, {:caller, from})))

      _ ->
        case Recent.get(state.recent, id) do
          {:done, delivered, missing} -> reply({:ok, Protocol.result(delivered, missing)}, state)
          {:error, _} = error -> reply(error, state)
          nil -> reply({:error, :unknown_broadcast}, state)
        end
    end
  end

  def handle_call({:subscribe, pid, pattern, format} = request, _from, state) do
    if is_pid(pid) and node(pid) == node() and is_binary(pattern) and Message.valid?(format) and
         match?({:ok, %{source: ^pattern}}, Pattern.compile(pattern)) do
      subscriptions = Subscriptions.subscribe(state.subscriptions, pid, pattern, format)
      reply(:ok, %{state | subscriptions: subscriptions})
    else
      reply({:error, :malformed}, malformed(state, :bad_subscription, request))
    end
  end

  def handle_call({:unsubscribe, pid, pattern}, _from, state)
      when is_pid(pid) and is_binary(pattern) do
    subscriptions = Subscriptions.unsubscribe(state.subscriptions, pid, pattern)
    reply(:ok, %{state | subscriptions: subscriptions})
  end

  def handle_call(:stats, _from, state) do
    reply(
      %{
        counters: Stats.read(state.counters),
        sends: state.sends,
        sessions: map_size(state.sessions),
        subscribers: Subscriptions.size(state.subscriptions),
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

  def handle_info(:timeout, state), do: noreply(Actions.flush_acks(state))

  def handle_info({:timeout, ref, :sweep}, %{sweep: ref} = state),
    do: noreply(sweep(%{state | sweep: nil}))

  def handle_info({:timeout, ref, :prune}, %{prune: ref} = state) do
    state = %{state | prune: schedule_prune(state.ttl_ms)}
    noreply(%{state | recent: Recent.prune(state.recent, now_ms())})
  end

  def handle_info({:nodedown, node}, state) when is_atom(node) do
    PlanCache.new_generation()
    state = %{state | atoms: Atoms.forget(state.atoms, node)}

    state.sessions
    |> Enum.reduce(state, fn {_id, session}, state ->
      if Map.has_key?(session.pending, node),
        do: give_up_all(state, session, [node]),
        else: state
    end)
    |> noreply()
  end

  def handle_info({:nodeup, node}, state) when is_atom(node) do
    PlanCache.new_generation()
    noreply(%{state | atoms: Atoms.forget(state.atoms, node)})
  end

  def handle_info({:DOWN, ref, :process, pid, _reason}, state) do
    case Subscriptions.down(state.subscriptions, ref, pid) do
      {:ok, subscriptions} -> noreply(%{state | subscriptions: subscriptions})
      :error -> noreply(state)
    end
  end

  def handle_info(other, state), do: noreply(malformed(state, :unknown_message, other))

  # --- broadcasts ---------------------------------------------------------------

  # The root. Starts the broadcast `start` (with `waiter`, the caller of an
  # awaited broadcast, or nil) together with the starts queued behind it,
  # as one batch (`Batch.collect/2`); then any start that could not join,
  # the same way, so broadcasts leave in the order they were started. A
  # start of the wrong shape (from another node) is refused.
  defp start_batches(state, start, waiter) do
    case Wire.check_start(start, node()) do
      :ok ->
        {entries, next} = Batch.collect(start, waiter)
        {:start, _id, _signal, _size, tree, timeout, fanout} = start
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
        Stats.count(state.counters, :started, length(ids))
        Stats.count(state.counters, :batches)
        now = now_ms()
        data = %{frame: frame, atoms: atoms, deadline: now + timeout, ids: ids}
        data = if Telemetry.available?(), do: emit_start(data, tree, fanout), else: data
        waiters = for {_id, _signal, from} <- entries, from != nil, do: from
        session = Protocol.root_session(batch, node(), waiters, data)
        batch_of = Enum.reduce(tl(ids), state.batch_of, &Map.put(&2, &1, batch))

        {session, state} =
          Actions.send_children(%{state | batch_of: batch_of}, session, children, now)

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

  # One start event per broadcast; `started` (for the stop events'
  # duration) is kept only when there is telemetry.
  defp emit_start(data, tree, fanout) do
    measurements = %{system_time: System.system_time(), nodes: length(TreePlanner.nodes(tree))}
    metadata = %{fanout: fanout, depth: TreePlanner.depth(tree)}

    Enum.each(
      data.ids,
      &Telemetry.emit([:broadcast, :start], measurements, Map.put(metadata, :id, &1))
    )

    Map.put(data, :started, System.monotonic_time())
  end

  # A broadcast message that passed `Wire.check/2`.
  defp received(state, {:jido_bcast, id, parent, frame, atoms, {_me, children}, budget}) do
    Stats.count(state.counters, :received)
    {atoms, atom_lists} = Atoms.from_parent(state.atoms, parent, atoms)
    state = %{state | atoms: atom_lists}

    case Protocol.arrival(state.sessions, state.recent, id, parent) do
      :new -> relay(state, id, parent, frame, atoms, children, budget)
      {:joined, session, effects} -> state |> put_session(session) |> Actions.run(effects)
      {:repeat, effects} -> Actions.run(state, effects)
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

    if children == [] do
      state = if signals, do: deliver(state, signals), else: state
      {outcome, effects} = Protocol.leaf(id, node(), parent, signals != nil)
      state = %{state | recent: Recent.put(state.recent, id, outcome, now)}
      Actions.run(state, effects)
    else
      atoms = relay_atoms(state, frame, atoms, signals)
      data = %{frame: frame, atoms: atoms, deadline: now + budget}
      session = Protocol.relay_session(id, node(), parent, signals != nil, data, now)
      {session, state} = Actions.send_children(state, session, children, now)
      state = if signals, do: deliver(state, signals), else: state
      settle(state, session)
    end
  end

  # `:same` (nil here) from a parent this process has no list of (it
  # restarted): the frame decoded, so its atoms exist here.
  defp relay_atoms(_state, _frame, atoms, _signals) when is_list(atoms), do: atoms
  defp relay_atoms(_state, _frame, nil, nil), do: []

  defp relay_atoms(state, frame, nil, _signals) do
    case Frame.atoms(frame, max_decoded_size: state.max_frame_size) do
      {:ok, atoms} -> atoms
      _ -> []
    end
  end

  defp give_up_all(state, session, children) do
    {session, state} = Actions.give_up(state, session, children)
    settle(state, session)
  end

  # Acks passed `Wire.check/2`.
  defp handle_acks([], _child, state), do: state

  defp handle_acks([ack | rest], child, state),
    do: handle_acks(rest, child, handle_ack(ack, child, state))

  defp handle_ack(ack, child, state) do
    id = elem(ack, 1)

    with %{^id => session} <- state.sessions,
         {:ok, session, effects} <- Protocol.ack(session, child, ack, now_ms()) do
      # Receipts and reports (the usual acks) have no effect to carry out.
      {session, state} =
        if effects == [], do: {session, state}, else: Actions.run(state, session, effects)

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
        {session, receipts, verdict} = Protocol.sweep(session, now, late, owed)
        state = Actions.run(state, receipts)

        case verdict do
          :expired -> settle(state, session)
          {:overdue, children} -> give_up_all(state, session, children)
          :waiting -> put_session(state, session)
        end
      end)

    schedule_sweep(state)
  end

  # Counts a message refused by `Wire` (or a frame that does not decode),
  # emits one event and logs it, the first of each reason only.
  defp malformed(state, reason, message) do
    Stats.count(state.counters, :malformed)
    logged = Malformed.report(state.logged, :broadcast, reason, message, inspect(Wire.name()))
    %{state | logged: logged}
  end

  # Every callback ends here: queued acks go out when the mailbox is empty
  # (a zero timeout) or when the oldest has waited long enough.
  defp noreply(state) do
    state = maybe_flush(state)
    if Outbox.empty?(state.outbox), do: {:noreply, state}, else: {:noreply, state, 0}
  end

  defp reply(reply, state) do
    state = maybe_flush(state)
    if Outbox.empty?(state.outbox), do: {:reply, reply, state}, else: {:reply, reply, state, 0}
  end

  defp maybe_flush(%{outbox: %Outbox{since: nil}} = state), do: state

  defp maybe_flush(state),
    do: if(Outbox.due?(state.outbox, now_ms()), do: Actions.flush_acks(state), else: state)

  # --- timers -----------------------------------------------------------------------

  # Matched by its reference, as the sweep timer is.
  defp schedule_prune(ttl_ms), do: :erlang.start_timer(max(div(ttl_ms, 2), 1_000), self(), :prune)
end

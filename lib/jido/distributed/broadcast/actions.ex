defmodule Jido.Distributed.Broadcast.Actions do
  @moduledoc """
  Carries out, on the state of `Jido.Distributed.Broadcast.Server`, what
  `Jido.Distributed.Broadcast.Protocol` decides: sends frames to children
  (giving up at once on one that is not connected), queues and flushes
  acks to parents (`Jido.Distributed.Broadcast.Outbox`), replies to
  callers, delivers to local subscribers, and settles and finishes
  sessions. Runs in the server process; every function takes and returns
  its state (the map built by the server's `init/1`).
  """

  require Jido.Distributed.Broadcast.Stats, as: Stats

  alias Jido.Distributed.Telemetry
  alias Jido.Distributed.Broadcast.{Atoms, Outbox, Protocol, Recent, Session}
  alias Jido.Distributed.Broadcast.{Subscriptions, Wire}

  @typedoc "The server's state."
  @type state :: map()

  @doc """
  Sends the session's frame to each subtree's top node, with its subtree,
  at `now`; a node that is not connected is given up at once (its children
  adopted). Returns the session and the state.
  """
  @spec send_children(state(), Session.t(), [tuple()], integer()) :: {Session.t(), state()}
  def send_children(state, session, subtrees, now) do
    %{id: id, data: %{frame: frame, atoms: atoms, deadline: deadline}} = session
    budget = Protocol.child_budget(deadline - now)
    session = Session.sent_all(session, subtrees, now)

    {sends, atom_lists, sent, unreachable} =
      send_frames(subtrees, {id, frame, atoms, budget}, {state.sends, state.atoms, 0, []})

    Stats.count(state.counters, :forwarded, sent)
    give_up(%{state | sends: sends, atoms: atom_lists}, session, unreachable)
  end

  # Returns the updated per-node send counts and atom lists, how many
  # frames were sent, and the children that are not connected.
  defp send_frames([], _message, acc), do: acc

  defp send_frames([{child, _} = subtree | rest], {id, frame, atoms, budget} = m, acc) do
    {sends, atom_lists, sent, unreachable} = acc
    {wire_atoms, atom_lists} = Atoms.to_child(atom_lists, child, atoms)

    case Wire.send_to(child, Wire.bcast(id, node(), frame, wire_atoms, subtree, budget)) do
      :ok ->
        sends =
          case sends do
            %{^child => n} -> %{sends | child => n + 1}
            _ -> Map.put(sends, child, 1)
          end

        send_frames(rest, m, {sends, atom_lists, sent + 1, unreachable})

      :noconnect ->
        atom_lists = Atoms.unsent(atom_lists, child)
        send_frames(rest, m, {sends, atom_lists, sent, [child | unreachable]})
    end
  end

  @doc "Gives up on each child (`Protocol.give_up/2`), carrying out the effects."
  @spec give_up(state(), Session.t(), [node()]) :: {Session.t(), state()}
  def give_up(state, session, children) do
    Enum.reduce(children, {session, state}, fn child, {session, state} ->
      {session, effects} = Protocol.give_up(session, child)
      run(state, session, effects)
    end)
  end

  @doc "Carries out the protocol's `effects` for `session`; returns both."
  @spec run(state(), Session.t(), [Protocol.effect()]) :: {Session.t(), state()}
  def run(state, session, effects) do
    Enum.reduce(effects, {session, state}, fn
      {:send, subtrees}, {session, state} -> send_children(state, session, subtrees, now_ms())
      effect, {session, state} -> {session, run(state, effect)}
    end)
  end

  @doc "Carries out effects that involve no session (acks, replies, counts)."
  @spec run(state(), Protocol.effect() | [Protocol.effect()]) :: state()
  def run(state, effects) when is_list(effects), do: Enum.reduce(effects, state, &run(&2, &1))
  def run(state, {:ack, parent, ack}), do: ack(state, parent, ack)

  def run(state, {:reply, from, reply}) do
    GenServer.reply(from, reply)
    state
  end

  def run(state, {:count, name, n}) do
    Stats.add(state.counters, name, n)
    state
  end

  @doc "Keeps a session in flight, or finishes it if it is complete."
  @spec settle(state(), Session.t()) :: state()
  def settle(state, session) do
    case Protocol.settle(session) do
      {:in_flight, session} -> state |> put_session(session) |> schedule_sweep()
      {:finished, outcome, effects} -> state |> run(effects) |> finish(session, outcome)
    end
  end

  @doc "Stores a session in flight."
  @spec put_session(state(), Session.t()) :: state()
  def put_session(state, session),
    do: %{state | sessions: Map.put(state.sessions, session.id, session)}

  # On the root, the batch's broadcasts; elsewhere, the batch. One stop
  # event per broadcast, when there is telemetry (`started` is set).
  defp finish(state, session, {delivered, missing}) do
    ids = Map.get(session.data, :ids, [session.id])

    with %{started: started} <- session.data do
      duration = :erlang.monotonic_time() - started
      measurements = %{duration: duration, delivered: delivered, missing: length(missing)}

      Enum.each(
        ids,
        &Telemetry.emit([:broadcast, :stop], measurements, %{id: &1, missing: missing})
      )
    end

    %{
      state
      | sessions: Map.delete(state.sessions, session.id),
        batch_of: Map.drop(state.batch_of, tl(ids)),
        recent: Recent.put_all(state.recent, ids, {:done, delivered, missing}, now_ms())
    }
  end

  @doc "Delivers `signals`, in order, to the local subscribers."
  @spec deliver(state(), [term()]) :: state()
  def deliver(state, signals) do
    {subscriptions, sent} = Subscriptions.deliver(state.subscriptions, signals)
    if sent > 0, do: Stats.count(state.counters, :delivered, sent)
    %{state | subscriptions: subscriptions}
  end

  @doc "Queues `ack` for `parent`; a full queue goes at once."
  @spec ack(state(), node(), Wire.ack()) :: state()
  def ack(state, parent, ack) do
    Stats.count(state.counters, :acks_sent)
    {outbox, full?} = Outbox.put(state.outbox, parent, ack, now_ms())
    state = %{state | outbox: outbox}
    if full?, do: flush_acks(state, parent), else: state
  end

  @doc "Sends every queued ack, one message per parent."
  @spec flush_acks(state()) :: state()
  def flush_acks(state),
    do: Enum.reduce(Outbox.parents(state.outbox), state, &flush_acks(&2, &1))

  defp flush_acks(state, parent) do
    case Outbox.take(state.outbox, parent) do
      {nil, _} ->
        state

      {acks, outbox} ->
        message = Wire.acks(node(), acks)
        if parent == node(), do: send(self(), message), else: Wire.send_to(parent, message)
        Stats.count(state.counters, :ack_messages)
        %{state | outbox: outbox}
    end
  end

  @doc """
  Starts the sweep timer while sessions are in flight. Timers are matched
  by their reference, so a `:sweep` from elsewhere is not taken for one.
  """
  @spec schedule_sweep(state()) :: state()
  def schedule_sweep(%{sweep: nil, sessions: sessions} = state) when map_size(sessions) > 0,
    do: %{state | sweep: :erlang.start_timer(state.sweep_ms, self(), :sweep)}

  def schedule_sweep(state), do: state

  @doc "The clock of sessions and acks, in milliseconds."
  @spec now_ms() :: integer()
  def now_ms, do: :erlang.monotonic_time(:millisecond)
end

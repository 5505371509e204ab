defmodule Jido.Distributed.Broadcast.Protocol do
  @moduledoc """
  The decisions of the broadcast relay protocol, as pure functions: what a
  node does when a broadcast arrives, when a child fails (adopt its
  children, hand it up), when a child reports or asks its parent to retry
  a node, when a session settles, and what a periodic sweep finds. The
  rules are described in `Jido.Distributed.TreeBroadcast` ("Completion",
  "Failures, adoption and retries", "Duplicates"); the bookkeeping of one
  broadcast is `Jido.Distributed.Broadcast.Session`.

  Each function returns the new session with a list of effects for
  `Jido.Distributed.Broadcast.Server` to carry out, in order:

    * `{:send, subtrees}` - send the session's frame to the top node of
      each subtree, with its subtree (adoption and retries);
    * `{:ack, parent, ack}` - queue `ack` for the parent node;
    * `{:reply, from, reply}` - answer a caller awaiting the broadcast;
    * `{:count, counter, n}` - bump a counter of `stats/0`.

  A session's `data` holds what the protocol needs of the owner's state:
  `:deadline` (milliseconds) and, on a node that owes its parents a
  receipt, `:receipt_due` (when the receipt became owed).

      iex> alias Jido.Distributed.Broadcast.{Protocol, Session}
      iex> s = Protocol.relay_session({:r@h, 1, 1}, :b@h, :a@h, true, %{deadline: 100}, 0)
      iex> s = Session.sent(s, {:c@h, [{:d@h, []}]})
      iex> {s, effects} = Protocol.give_up(s, :c@h)
      iex> effects
      [{:count, :failed_children, 1}, {:count, :adopted, 1}, {:count, :handed_up, 1},
       {:ack, :a@h, {:retry, {:r@h, 1, 1}, :c@h}}, {:send, [{:d@h, []}]}]
      iex> s = Session.sent_all(s, [{:d@h, []}])
      iex> s |> Session.done(:d@h, 1, []) |> Protocol.settle()
      {:finished, {2, []}, [{:ack, :a@h, {:done, {:r@h, 1, 1}, 2, []}}]}
  """

  alias Jido.Distributed.Broadcast.{Recent, Session, Wire}
  alias Jido.Distributed.TreePlanner

  @typedoc "Something the server does for the protocol (see the module doc)."
  @type effect ::
          {:send, [TreePlanner.tree()]}
          | {:ack, node(), Wire.ack()}
          | {:reply, GenServer.from(), {:ok, result()}}
          | {:count, atom(), pos_integer()}

  @typedoc "A broadcast's outcome as callers get it."
  @type result :: %{delivered: non_neg_integer(), missing: [node()]}

  @doc """
  A broadcast `id` arrives from `parent`, given the sessions in flight and
  the recent outcomes: `:new` for one never seen here; `{:joined, session,
  effects}` for one in flight (the parent is added, and gets a receipt
  unless one is owed to every parent anyway); `{:repeat, effects}` for one
  already done here (the parent gets its report again).

      iex> alias Jido.Distributed.Broadcast.{Protocol, Recent}
      iex> recent = Recent.put(Recent.new(10, 1_000), :b, {:done, 2, []}, 0)
      iex> Protocol.arrival(%{}, recent, :b, :p@h)
      {:repeat, [{:count, :duplicates, 1}, {:ack, :p@h, {:done, :b, 2, []}}]}
      iex> Protocol.arrival(%{}, recent, :c, :p@h)
      :new
  """
  @spec arrival(%{term() => Session.t()}, Recent.t(), Wire.id() | term(), node()) ::
          :new | {:joined, Session.t(), [effect()]} | {:repeat, [effect()]}
  def arrival(sessions, recent, id, parent) do
    case sessions do
      %{^id => session} ->
        session = Session.add_parent(session, parent)

        receipt =
          if Map.has_key?(session.data, :receipt_due),
            do: [],
            else: [{:ack, parent, Wire.got(id)}]

        {:joined, session, [{:count, :duplicates, 1} | receipt]}

      _ ->
        case Recent.get(recent, id) do
          {:done, delivered, missing} ->
            {:repeat,
             [{:count, :duplicates, 1}, {:ack, parent, Wire.done(id, delivered, missing)}]}

          _ ->
            :new
        end
    end
  end

  @doc """
  A leaf `me` got the broadcast `id` from `parent` and delivered it
  (`decoded? = true`) or could not decode it: its outcome, to remember,
  and its report.

      iex> Jido.Distributed.Broadcast.Protocol.leaf(:b, :me@h, :p@h, false)
      {{:done, 0, [:me@h]}, [{:ack, :p@h, {:done, :b, 0, [:me@h]}}]}
  """
  @spec leaf(term(), node(), node(), boolean()) ::
          {{:done, non_neg_integer(), [node()]}, [effect()]}
  def leaf(id, me, parent, decoded?) do
    {delivered, missing} = if decoded?, do: {1, []}, else: {0, [me]}
    {{:done, delivered, missing}, [{:ack, parent, Wire.done(id, delivered, missing)}]}
  end

  @doc """
  The session of an interior node `me` that got the broadcast `id` from
  `parent` at `now`, with the owner's `data` (`:deadline` at least). Its
  receipt is owed from `now`: the sweep sends it if the subtree is slow to
  report (`sweep/4`).
  """
  @spec relay_session(term(), node(), node(), boolean(), map(), integer()) :: Session.t()
  def relay_session(id, me, parent, decoded?, data, now) do
    %{Session.new(id, me, decoded?, parent) | data: Map.put(data, :receipt_due, now)}
  end

  @doc """
  The session of a batch rooted at `me`, known by its first id, reporting
  to `waiters` (callers of awaited broadcasts).
  """
  @spec root_session(term(), node(), [GenServer.from()], map()) :: Session.t()
  def root_session(batch, me, waiters, data) do
    Enum.reduce(waiters, %{Session.new(batch, me, true) | data: data}, fn from, session ->
      Session.add_parent(session, {:caller, from})
    end)
  end

  @doc """
  Gives up on the pending `child`: its subtrees are sent to by this node
  (adopted); a child that had not confirmed receipt, on a node that is not
  the root, is handed up: every parent gets `{:retry, id, child}`. No
  effect for a child that is not pending.
  """
  @spec give_up(Session.t(), node()) :: {Session.t(), [effect()]}
  def give_up(%Session{} = session, child) do
    case Session.fail(session, child) do
      {^session, []} ->
        {session, []}

      {session, adopted} ->
        adopted_count = if adopted == [], do: [], else: [{:count, :adopted, length(adopted)}]

        hand_up =
          if Session.handed_up?(session, child),
            do: [{:count, :handed_up, 1} | to_parents(session, Wire.retry(session.id, child))],
            else: []

        send = if adopted == [], do: [], else: [{:send, adopted}]
        {session, [{:count, :failed_children, 1}] ++ adopted_count ++ hand_up ++ send}
    end
  end

  @doc """
  An ack from `child` (checked by `Jido.Distributed.Broadcast.Wire`) at
  `now`: a receipt, a report, or a node the child could not reach, which
  this node tries itself when it may (`Session.retry/4`). `:error` for a
  retry this node must not take.

      iex> alias Jido.Distributed.Broadcast.{Protocol, Session}
      iex> s = Session.new(:b, :a@h, true) |> Session.sent({:c@h, [{:d@h, []}]})
      iex> {:ok, _s, effects} = Protocol.ack(s, :c@h, {:retry, :b, :d@h}, 5)
      iex> effects
      [{:count, :retried, 1}, {:send, [{:d@h, []}]}]
  """
  @spec ack(Session.t(), node(), Wire.ack(), integer()) ::
          {:ok, Session.t(), [effect()]} | :error
  def ack(session, child, {:got, _id}, _now), do: {:ok, Session.received(session, child), []}

  def ack(session, child, {:done, _id, delivered, missing}, _now),
    do: {:ok, Session.done(session, child, delivered, missing), []}

  def ack(session, child, {:retry, _id, node}, now) do
    case Session.retry(session, child, node, now) do
      {:ok, session} -> {:ok, session, [{:count, :retried, 1}, {:send, [{node, []}]}]}
      :error -> :error
    end
  end

  @doc """
  `{:in_flight, session}` while a child is pending; once none is,
  `{:finished, {delivered, missing}, effects}`: every parent gets the
  report, every waiting caller the result.

      iex> alias Jido.Distributed.Broadcast.{Protocol, Session}
      iex> s = Session.new(:b, :a@h, true, :p@h) |> Session.add_parent({:caller, :from})
      iex> Protocol.settle(s)
      {:finished, {1, []},
       [{:ack, :p@h, {:done, :b, 1, []}}, {:reply, :from, {:ok, %{delivered: 1, missing: []}}}]}
  """
  @spec settle(Session.t()) ::
          {:in_flight, Session.t()} | {:finished, {non_neg_integer(), [node()]}, [effect()]}
  def settle(session) do
    if Session.complete?(session) do
      {delivered, missing} = Session.result(session)

      effects =
        Enum.map(session.parents, fn
          {:caller, from} -> {:reply, from, {:ok, result(delivered, missing)}}
          parent -> {:ack, parent, Wire.done(session.id, delivered, missing)}
        end)

      {:finished, {delivered, missing}, effects}
    else
      {:in_flight, session}
    end
  end

  @doc """
  A sweep at `now` over one session: a receipt owed since at or before
  `owed_by` goes to every parent; then the verdict: `:expired` (the
  deadline passed; the session returned has counted every unreported
  subtree missing), `{:overdue, children}` (sent at or before `late_by`
  without confirming receipt: give each up), or `:waiting`.

      iex> alias Jido.Distributed.Broadcast.{Protocol, Session}
      iex> s = Protocol.relay_session(:b, :me@h, :p@h, true, %{deadline: 100}, 0)
      iex> s = Session.sent(s, {:c@h, []}, 0)
      iex> {_s, effects, verdict} = Protocol.sweep(s, 50, 10, 20)
      iex> {effects, verdict}
      {[{:ack, :p@h, {:got, :b}}], {:overdue, [:c@h]}}
  """
  @spec sweep(Session.t(), integer(), integer(), integer()) ::
          {Session.t(), [effect()], :expired | {:overdue, [node()]} | :waiting}
  def sweep(session, now, late_by, owed_by) do
    {session, receipts} = receipt(session, owed_by)

    cond do
      now >= session.data.deadline ->
        {Session.expire(session), receipts, :expired}

      (overdue = Session.overdue(session, late_by)) != [] ->
        {session, receipts, {:overdue, overdue}}

      true ->
        {session, receipts, :waiting}
    end
  end

  defp receipt(%{data: %{receipt_due: at} = data} = session, owed_by) when at <= owed_by,
    do:
      {%{session | data: Map.delete(data, :receipt_due)},
       to_parents(session, Wire.got(session.id))}

  defp receipt(session, _owed_by), do: {session, []}

  @doc """
  What a child gets of the time left: a tenth is kept for its report to
  come back and be counted.

      iex> Jido.Distributed.Broadcast.Protocol.child_budget(5_000)
      4500
  """
  @spec child_budget(integer()) :: pos_integer()
  def child_budget(remaining), do: max(remaining - max(div(remaining, 10), 1), 1)

  @doc "A broadcast's result, as callers get it."
  @spec result(non_neg_integer(), [node()]) :: result()
  def result(delivered, missing), do: %{delivered: delivered, missing: missing}

  defp to_parents(session, ack) do
    for parent <- session.parents, not match?({:caller, _}, parent), do: {:ack, parent, ack}
  end
end

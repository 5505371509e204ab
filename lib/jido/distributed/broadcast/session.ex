defmodule Jido.Distributed.Broadcast.Session do
  @moduledoc """
  What one node knows about one broadcast while its subtree is in flight:
  the children it sent to, what they reported, and who to report to. Pure
  data; `Jido.Distributed.Broadcast.Protocol` decides what follows from it and
  `Jido.Distributed.Broadcast.Server` performs the sends and timers.

  A child is *pending* from the moment it is sent the frame (at a time the
  caller passes, for `overdue/2`), first `:sent`, then `:received` once it
  confirms receipt (which it does after delivering
  to its own subscribers). A pending child leaves by:

    * `done/4` - it reports its subtree: `delivered` nodes and `missing`
      ones, added to this node's totals;
    * `fail/2` - it is unreachable (not connected, node down, or no receipt
      in time). A `:received` child is counted delivered (it confirmed
      delivery before failing). A `:sent` one is counted missing on the
      root; on any other node it is *handed up*: counted neither here nor
      missing, for the caller to pass to its parents (`{:retry, id, child}`),
      so that an ancestor that can reach it tries it (see `retry/4`); only
      the root, the last resort, counts a child missing. Either way the
      child's children, with their subtrees, are returned for this node to
      send to itself (adoption);
    * `expire/1` - the deadline passed: every node of its subtree that has
      not reported is counted missing.

  A report from a child after it failed (it was slow, not dead) counts that
  child alone, as delivered, and removes it from `missing`: its subtree now
  reports through this node, so counting it again would count it twice. A
  child handed up is counted by the ancestor that took it: its later report
  is ignored here.

  A child taken from a child's `{:retry, ...}` (`retry/4`) is sent the frame
  alone, without children (its children were adopted below), and is counted
  alone whatever it reports: it may report a whole subtree it got from its
  first parent, which reports through that parent.

      iex> alias Jido.Distributed.Broadcast.Session
      iex> s = Session.new(:id, :a@h, true)
      iex> s = s |> Session.sent({:b@h, [{:d@h, []}]}) |> Session.sent({:c@h, []})
      iex> {s, adopted} = Session.fail(s, :b@h)
      iex> adopted
      [{:d@h, []}]
      iex> s = s |> Session.sent({:d@h, []}) |> Session.done(:d@h, 1, [])
      iex> s = Session.done(s, :c@h, 1, [])
      iex> {Session.complete?(s), Session.result(s)}
      {true, {3, [:b@h]}}
  """

  alias Jido.Distributed.TreePlanner

  @enforce_keys [:id, :me]
  defstruct [
    :id,
    :me,
    parents: [],
    pending: %{},
    failed: %{},
    retried: %{},
    hand_up: false,
    delivered: 0,
    missing: [],
    data: nil
  ]

  @typedoc "A broadcast id."
  @type id :: term()

  @typedoc "Where a child is: sent the frame, or confirmed receipt."
  @type status :: :sent | :received

  @typedoc """
  A session:

    * `:id` - the broadcast id; `:me` - this node;
    * `:parents` - whom to report to when done (several after adoption);
    * `:pending` - `child => {subtree, status, sent_at}`;
    * `:failed` - children given up on, and how they were counted;
    * `:retried` - the children taken from a child's retry, counted alone;
    * `:hand_up` - true on a node that got the broadcast from a parent
      (see `new/4`): a child it cannot reach is handed up, not missing;
    * `:delivered`, `:missing` - the totals so far;
    * `:data` - anything the owner keeps with it (frame, timers, ...).
  """
  @type t :: %__MODULE__{
          id: id(),
          me: node(),
          parents: [term()],
          pending: %{node() => {TreePlanner.tree(), status(), integer()}},
          failed: %{node() => :delivered | :missing | :handed_up},
          retried: %{node() => true},
          hand_up: boolean(),
          delivered: non_neg_integer(),
          missing: [node()],
          data: term()
        }

  @doc """
  A session on the root `me`, which delivered to its own subscribers
  (`true`) or could not (`false`, then it counts itself missing).
  """
  @spec new(id(), node(), boolean()) :: t()
  def new(id, me, delivered_here?) do
    if delivered_here?,
      do: %__MODULE__{id: id, me: me, delivered: 1},
      else: %__MODULE__{id: id, me: me, missing: [me]}
  end

  @doc """
  A session on `me`, which got the broadcast from the node `parent` and
  reports to it; a child it cannot reach is handed up (see the module doc).
  """
  @spec new(id(), node(), boolean(), node()) :: t()
  def new(id, me, delivered_here?, parent) when is_atom(parent),
    do: %{new(id, me, delivered_here?) | hand_up: true, parents: [parent]}

  @doc "Adds a party to report to (a parent node or a waiting caller), once."
  @spec add_parent(t(), term()) :: t()
  def add_parent(%__MODULE__{parents: parents} = s, parent) do
    if parent in parents, do: s, else: %{s | parents: parents ++ [parent]}
  end

  @doc """
  Records that the child at the top of `subtree` was sent the frame at
  `now` (milliseconds, any monotonic clock; default 0).
  """
  @spec sent(t(), TreePlanner.tree(), integer()) :: t()
  def sent(%__MODULE__{} = s, {child, _} = subtree, now \\ 0),
    do: %{s | pending: Map.put(s.pending, child, {subtree, :sent, now})}

  @doc """
  Records that the children at the top of `subtrees` were sent the frame
  at `now`, as `sent/3` does for each.

      iex> alias Jido.Distributed.Broadcast.Session
      iex> s = Session.new(:id, :a@h, true)
      iex> Session.sent_all(s, [{:b@h, []}, {:c@h, []}], 5) ==
      ...>   s |> Session.sent({:b@h, []}, 5) |> Session.sent({:c@h, []}, 5)
      true
  """
  @spec sent_all(t(), [TreePlanner.tree()], integer()) :: t()
  def sent_all(%__MODULE__{pending: pending} = s, subtrees, now \\ 0) do
    sent =
      :maps.from_list(for {child, _} = subtree <- subtrees, do: {child, {subtree, :sent, now}})

    %{s | pending: if(pending == %{}, do: sent, else: Map.merge(pending, sent))}
  end

  @doc "Records that `child` confirmed receipt; ignored unless it is pending."
  @spec received(t(), node()) :: t()
  def received(%__MODULE__{} = s, child) do
    case s.pending do
      %{^child => {subtree, :sent, at}} ->
        %{s | pending: Map.put(s.pending, child, {subtree, :received, at})}

      _ ->
        s
    end
  end

  @doc """
  Adds `child`'s report: `delivered` nodes and the `missing` ones of its
  subtree. A report from a child taken from a retry, or one that already
  failed, counts the child alone (see the module doc); a report from a
  child handed up, and any other report, is ignored.

      iex> alias Jido.Distributed.Broadcast.Session
      iex> s = Session.new(:id, :a@h, true) |> Session.sent({:b@h, [{:c@h, []}]})
      iex> {s, [{:c@h, []}]} = Session.fail(s, :b@h)
      iex> s = Session.sent(s, {:c@h, []})
      iex> s = s |> Session.done(:c@h, 1, []) |> Session.done(:b@h, 2, [])
      iex> Session.result(s)
      {3, []}
  """
  @spec done(t(), node(), non_neg_integer(), [node()]) :: t()
  def done(%__MODULE__{} = s, child, delivered, missing) do
    cond do
      Map.has_key?(s.retried, child) and Map.has_key?(s.pending, child) ->
        s = %{s | pending: Map.delete(s.pending, child)}

        if child in missing,
          do: %{s | missing: [child | s.missing]},
          else: %{s | delivered: s.delivered + 1}

      Map.has_key?(s.pending, child) ->
        %{
          s
          | pending: Map.delete(s.pending, child),
            delivered: s.delivered + delivered,
            missing: missing ++ s.missing
        }

      Map.get(s.failed, child) == :missing and child not in missing ->
        %{
          s
          | failed: Map.put(s.failed, child, :delivered),
            delivered: s.delivered + 1,
            missing: List.delete(s.missing, child)
        }

      true ->
        s
    end
  end

  @doc """
  Gives up on `child`: returns the session and the child's subtrees, which
  the caller now sends to itself. A child that had not confirmed receipt is
  counted missing on the root and handed up elsewhere (`handed_up?/2`).
  `{s, []}` if `child` is not pending.

      iex> alias Jido.Distributed.Broadcast.Session
      iex> s = Session.new(:id, :b@h, true, :a@h) |> Session.sent({:c@h, [{:d@h, []}]})
      iex> {s, [{:d@h, []}]} = Session.fail(s, :c@h)
      iex> {Session.handed_up?(s, :c@h), Session.result(s)}
      {true, {1, []}}
  """
  @spec fail(t(), node()) :: {t(), [TreePlanner.tree()]}
  def fail(%__MODULE__{} = s, child) do
    case Map.pop(s.pending, child) do
      {nil, _} ->
        {s, []}

      {{{^child, grandchildren}, :received, _}, pending} ->
        {%{
           s
           | pending: pending,
             failed: Map.put(s.failed, child, :delivered),
             delivered: s.delivered + 1
         }, grandchildren}

      {{{^child, grandchildren}, :sent, _}, pending} when s.hand_up ->
        {%{s | pending: pending, failed: Map.put(s.failed, child, :handed_up)}, grandchildren}

      {{{^child, grandchildren}, :sent, _}, pending} ->
        {%{
           s
           | pending: pending,
             failed: Map.put(s.failed, child, :missing),
             missing: [child | s.missing]
         }, grandchildren}
    end
  end

  @doc "True if `child` was handed up by `fail/2`, for an ancestor to try."
  @spec handed_up?(t(), node()) :: boolean()
  def handed_up?(%__MODULE__{failed: failed}, child), do: Map.get(failed, child) == :handed_up

  @doc """
  Takes `node`, which the pending child `from` could not reach (its
  `{:retry, id, node}`), for this node to send the frame to at `now`:
  `{:ok, session}` with `node` pending, alone. `:error` when this node must
  not take it: `from` is not pending here (so its subtree is counted here
  another way: `from` failed, and its children were adopted), or `from` was
  itself taken from a retry (it is counted alone), or `node` is this node
  or already pending or failed here.

      iex> alias Jido.Distributed.Broadcast.Session
      iex> s = Session.new(:id, :a@h, true) |> Session.sent({:b@h, [{:c@h, []}]})
      iex> {:ok, s} = Session.retry(s, :b@h, :c@h, 0)
      iex> Session.retry(s, :c@h, :d@h, 0)
      :error
      iex> s |> Session.done(:b@h, 1, []) |> Session.done(:c@h, 5, []) |> Session.result()
      {3, []}
  """
  @spec retry(t(), node(), node(), integer()) :: {:ok, t()} | :error
  def retry(%__MODULE__{} = s, from, node, now) do
    if Map.has_key?(s.pending, from) and not Map.has_key?(s.retried, from) and node != s.me and
         not Map.has_key?(s.pending, node) and not Map.has_key?(s.failed, node) do
      {:ok,
       %{
         s
         | pending: Map.put(s.pending, node, {{node, []}, :sent, now}),
           retried: Map.put(s.retried, node, true)
       }}
    else
      :error
    end
  end

  @doc """
  The pending children that have not confirmed receipt and were sent the
  frame at or before `sent_by`.

      iex> alias Jido.Distributed.Broadcast.Session
      iex> s = Session.new(:id, :a@h, true)
      iex> s = s |> Session.sent({:b@h, []}, 10) |> Session.sent({:c@h, []}, 20) |> Session.sent({:d@h, []}, 10)
      iex> s |> Session.received(:d@h) |> Session.overdue(15)
      [:b@h]
  """
  @spec overdue(t(), integer()) :: [node()]
  def overdue(%__MODULE__{pending: pending}, sent_by) do
    for {child, {_, :sent, at}} <- pending, at <= sent_by, do: child
  end

  @doc """
  Ends the wait: every pending child's whole subtree is counted missing,
  except a child that confirmed receipt, which is counted delivered.

      iex> alias Jido.Distributed.Broadcast.Session
      iex> s = Session.new(:id, :a@h, true)
      iex> s = s |> Session.sent({:b@h, [{:c@h, []}]}) |> Session.sent({:d@h, []}) |> Session.received(:b@h)
      iex> Session.result(Session.expire(s))
      {2, [:c@h, :d@h]}
  """
  @spec expire(t()) :: t()
  def expire(%__MODULE__{} = s) do
    Enum.reduce(s.pending, %{s | pending: %{}}, fn
      {_child, {{_, subtrees}, :received, _}}, s ->
        %{
          s
          | delivered: s.delivered + 1,
            missing: Enum.flat_map(subtrees, &TreePlanner.nodes/1) ++ s.missing
        }

      {_child, {subtree, :sent, _}}, s ->
        %{s | missing: TreePlanner.nodes(subtree) ++ s.missing}
    end)
  end

  @doc "True when no child is pending."
  @spec complete?(t()) :: boolean()
  def complete?(%__MODULE__{pending: pending}), do: map_size(pending) == 0

  @doc "The totals: `{delivered, missing}`, missing sorted and without duplicates."
  @spec result(t()) :: {non_neg_integer(), [node()]}
  def result(%__MODULE__{delivered: delivered, missing: []}), do: {delivered, []}

  def result(%__MODULE__{delivered: delivered, missing: missing}),
    do: {delivered, missing |> Enum.uniq() |> Enum.sort()}
end

defmodule Jido.Distributed.Broadcast.SessionTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Broadcast.Session

  alias Jido.Distributed.Broadcast.Session

  # root a; b has children d, e; c is a leaf; d has child f.
  @tree {:a@h, [{:b@h, [{:d@h, [{:f@h, []}]}, {:e@h, []}]}, {:c@h, []}]}

  defp started do
    {:a@h, children} = @tree
    Enum.reduce(children, Session.new(:id, :a@h, true), &Session.sent(&2, &1))
  end

  test "reports of children are summed" do
    s = started() |> Session.done(:b@h, 4, []) |> Session.done(:c@h, 1, [])
    assert Session.complete?(s)
    assert Session.result(s) == {6, []}
  end

  test "a node that could not deliver counts itself missing" do
    s = Session.new(:id, :a@h, false)
    assert Session.result(s) == {0, [:a@h]}
  end

  test "missing nodes from below are passed up, sorted and once" do
    s = started() |> Session.done(:b@h, 2, [:f@h, :d@h]) |> Session.done(:c@h, 0, [:c@h])
    assert Session.result(s) == {3, [:c@h, :d@h, :f@h]}
  end

  test "a failed unconfirmed child is missing and its children are adopted" do
    {s, adopted} = Session.fail(started(), :b@h)
    assert adopted == [{:d@h, [{:f@h, []}]}, {:e@h, []}]
    refute Session.complete?(s)
    s = Enum.reduce(adopted, s, &Session.sent(&2, &1))
    s = s |> Session.done(:d@h, 2, []) |> Session.done(:e@h, 1, []) |> Session.done(:c@h, 1, [])
    assert Session.complete?(s)
    assert Session.result(s) == {5, [:b@h]}
  end

  test "a failed child that had confirmed receipt counts as delivered" do
    s = Session.received(started(), :b@h)
    {s, adopted} = Session.fail(s, :b@h)
    assert length(adopted) == 2
    s = Enum.reduce(adopted, s, &Session.sent(&2, &1))
    s = s |> Session.done(:d@h, 2, []) |> Session.done(:e@h, 1, []) |> Session.done(:c@h, 1, [])
    assert Session.result(s) == {6, []}
  end

  test "a late report of a failed child counts the child alone, once" do
    {s, adopted} = Session.fail(started(), :b@h)
    s = Enum.reduce(adopted, s, &Session.sent(&2, &1))
    # b was slow, not dead: its report covers d, e, f too, which report here.
    s = s |> Session.done(:b@h, 4, []) |> Session.done(:b@h, 4, [])
    s = s |> Session.done(:d@h, 2, []) |> Session.done(:e@h, 1, []) |> Session.done(:c@h, 1, [])
    assert Session.result(s) == {6, []}
  end

  test "a late report saying the child itself failed changes nothing" do
    {s, _} = Session.fail(started(), :c@h)
    s = Session.done(s, :c@h, 0, [:c@h])
    assert Session.result(s) == {1, [:c@h]}
  end

  test "reports from nodes that are not children are ignored" do
    s = started() |> Session.done(:z@h, 9, [:y@h])
    assert Session.result(s) == {1, []}
    assert Session.fail(s, :z@h) == {s, []}
  end

  test "overdue lists unconfirmed children sent at or before a time" do
    {:a@h, [b, c]} = @tree
    s = Session.new(:id, :a@h, true) |> Session.sent(b, 100) |> Session.sent(c, 200)
    assert Enum.sort(Session.overdue(s, 200)) == [:b@h, :c@h]
    assert Session.overdue(s, 150) == [:b@h]
    assert Session.overdue(s, 99) == []
    s = Session.received(s, :b@h)
    assert Session.overdue(s, 200) == [:c@h]
    s = Session.done(s, :c@h, 1, [])
    assert Session.overdue(s, 200) == []
  end

  test "expire counts every unreported node of pending subtrees missing" do
    s = started() |> Session.done(:c@h, 1, []) |> Session.expire()
    assert Session.complete?(s)
    assert Session.result(s) == {2, [:b@h, :d@h, :e@h, :f@h]}
  end

  test "parents are kept once, in order" do
    s = Session.new(:id, :a@h, true)
    s = s |> Session.add_parent(:p@h) |> Session.add_parent(:q@h) |> Session.add_parent(:p@h)
    assert s.parents == [:p@h, :q@h]
  end

  describe "hand-up and retry" do
    # b got the broadcast from a; its child d has child f.
    defp relayed do
      Session.new(:id, :b@h, true, :a@h)
      |> Session.sent({:d@h, [{:f@h, []}]})
      |> Session.sent({:e@h, []})
    end

    test "a relaying node hands up an unconfirmed child instead of counting it missing" do
      s = relayed()
      assert s.parents == [:a@h]
      {s, adopted} = Session.fail(s, :d@h)
      assert adopted == [{:f@h, []}]
      assert Session.handed_up?(s, :d@h)
      s = s |> Session.sent({:f@h, []}) |> Session.done(:f@h, 1, [])
      # d's late report is counted by the ancestor that took it, not here.
      s = s |> Session.done(:d@h, 2, []) |> Session.done(:e@h, 1, [])
      assert Session.complete?(s)
      assert Session.result(s) == {3, []}
    end

    test "a confirmed child that fails is delivered, not handed up" do
      {s, _} = relayed() |> Session.received(:e@h) |> Session.fail(:e@h)
      refute Session.handed_up?(s, :e@h)
      assert s.delivered == 2
    end

    test "the root counts an unreachable child missing" do
      {s, _} = Session.new(:id, :a@h, true) |> Session.sent({:b@h, []}) |> Session.fail(:b@h)
      refute Session.handed_up?(s, :b@h)
      assert Session.result(s) == {1, [:b@h]}
    end

    test "a retried node is counted alone, whatever it reports" do
      root = Session.new(:id, :a@h, true) |> Session.sent({:b@h, [{:d@h, [{:f@h, []}]}]})
      {:ok, root} = Session.retry(root, :b@h, :d@h, 5)
      assert root.pending[:d@h] == {{:d@h, []}, :sent, 5}
      assert Session.overdue(root, 5) |> Enum.sort() == [:b@h, :d@h]

      # d was slow: it reports the subtree it got from b (d and f); f was
      # adopted by b, so b's report counts f.
      root = root |> Session.done(:d@h, 2, []) |> Session.done(:b@h, 2, [])
      assert Session.result(root) == {4, []}

      # A retried node that could not deliver is missing.
      root = Session.new(:id, :a@h, true) |> Session.sent({:b@h, []})
      {:ok, root} = Session.retry(root, :b@h, :d@h, 0)
      root = root |> Session.done(:d@h, 0, [:d@h]) |> Session.done(:b@h, 1, [])
      assert Session.result(root) == {2, [:d@h]}
    end

    test "a retried node that fails is missing on the root and handed up elsewhere" do
      root = Session.new(:id, :a@h, true) |> Session.sent({:b@h, []})
      {:ok, root} = Session.retry(root, :b@h, :d@h, 0)
      {root, []} = Session.fail(root, :d@h)
      assert Session.result(Session.done(root, :b@h, 1, [])) == {2, [:d@h]}

      {:ok, mid} = Session.retry(relayed(), :e@h, :x@h, 0)
      {mid, []} = Session.fail(mid, :x@h)
      assert Session.handed_up?(mid, :x@h)

      # Expired while pending: missing, alone.
      {:ok, late} = Session.retry(relayed(), :e@h, :x@h, 0)

      assert late |> Session.done(:d@h, 2, []) |> Session.expire() |> Session.result() ==
               {3, [:e@h, :x@h]}
    end

    test "a retry is taken only from a pending child that is not itself a retry" do
      s = relayed()
      # From a node that is not pending here (e.g. failed, its children adopted).
      {failed, _} = Session.fail(s, :d@h)
      assert Session.retry(failed, :d@h, :f@h, 0) == :error
      assert Session.retry(s, :z@h, :f@h, 0) == :error
      # Of this node itself, or of a node pending or failed here.
      assert Session.retry(s, :d@h, :b@h, 0) == :error
      assert Session.retry(s, :d@h, :e@h, 0) == :error
      assert Session.retry(failed, :e@h, :d@h, 0) == :error
      # From a retried node: its subtree is counted by its first parent.
      {:ok, s} = Session.retry(s, :d@h, :f@h, 0)
      assert Session.retry(s, :f@h, :g@h, 0) == :error
    end
  end
end

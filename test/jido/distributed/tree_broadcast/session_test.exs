defmodule Jido.Distributed.TreeBroadcast.SessionTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.TreeBroadcast.Session

  alias Jido.Distributed.TreeBroadcast.Session

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
end

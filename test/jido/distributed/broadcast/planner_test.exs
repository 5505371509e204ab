defmodule Jido.Distributed.TreePlannerTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.TreePlanner

  alias Jido.Distributed.TreePlanner

  defp node_name(i), do: :"n#{i}@host"

  defp nodes(n), do: Enum.map(1..n, &node_name/1)

  # Every {parent, child} edge of a tree.
  defp edges({node, subtrees}),
    do: Enum.flat_map(subtrees, fn {child, _} = sub -> [{node, child} | edges(sub)] end)

  defp max_children({_, subtrees}),
    do: Enum.max([length(subtrees) | Enum.map(subtrees, &max_children/1)])

  # Nodes with children (the root included).
  defp interior({_node, []}, acc), do: acc
  defp interior({node, subtrees}, acc), do: Enum.reduce(subtrees, [node | acc], &interior/2)

  defp interior(tree), do: interior(tree, [])

  test "1,000 unlabelled nodes: each once, fanout kept, depth ⌈log_4 1000⌉ = 5" do
    members = nodes(1000)
    assert {:ok, tree} = TreePlanner.plan(members, node_name(500))
    assert elem(tree, 0) == node_name(500)
    assert Enum.sort(TreePlanner.nodes(tree)) == Enum.sort(members)
    assert max_children(tree) <= 4
    assert TreePlanner.depth(tree) == 5
  end

  test "depth is the minimum for each fanout" do
    members = nodes(100)

    for {fanout, depth} <- [{1, 99}, {2, 6}, {3, 4}, {10, 2}, {99, 1}, {1_000_000, 1}] do
      assert {:ok, tree} = TreePlanner.plan(members, node_name(1), fanout: fanout)
      assert TreePlanner.depth(tree) == depth, "fanout #{fanout}"
      assert max_children(tree) <= fanout
    end
  end

  test "the plan does not depend on member order" do
    members =
      for i <- 1..200 do
        {node_name(i), region: rem(i, 3), zone: rem(i, 2), healthy: rem(i, 7) != 0}
      end

    {:ok, tree} = TreePlanner.plan(members, node_name(5), fanout: 3)

    for seed <- 1..5 do
      :rand.seed(:exsss, {seed, seed, seed})
      assert {:ok, ^tree} = TreePlanner.plan(Enum.shuffle(members), node_name(5), fanout: 3)
    end
  end

  test "unhealthy members are leaves when healthy capacity allows" do
    members = for i <- 1..100, do: {node_name(i), healthy: i <= 25}

    {:ok, tree} = TreePlanner.plan(members, node_name(1))
    healthy = MapSet.new(1..25, &node_name/1)
    assert Enum.all?(interior(tree), &MapSet.member?(healthy, &1))
    assert TreePlanner.depth(tree) == 4
  end

  test "when healthy capacity is short, the fewest unhealthy members are promoted" do
    # Only the root is healthy; 20 nodes at fanout 4 need ⌈19/4⌉ = 5 interior.
    members = for i <- 1..20, do: {node_name(i), healthy: i == 1}
    {:ok, tree} = TreePlanner.plan(members, node_name(1))
    assert length(interior(tree)) == 5
    assert max_children(tree) <= 4
  end

  test "each region is entered by exactly one edge, from the root's region" do
    region = fn i -> Enum.at(["eu", "us", "ap", nil], rem(i, 4)) end
    members = for i <- 1..400, do: {node_name(i), region: region.(i)}
    region_of = Map.new(members, fn {n, loc} -> {n, loc[:region]} end)
    root = node_name(3)

    {:ok, tree} = TreePlanner.plan(members, root, fanout: 4)

    crossing = Enum.filter(edges(tree), fn {p, c} -> region_of[p] != region_of[c] end)
    entered = crossing |> Enum.map(fn {_, c} -> region_of[c] end) |> Enum.sort()
    assert entered == Enum.sort(["eu", "us", "ap"])
    assert Enum.all?(crossing, fn {p, _} -> region_of[p] == region_of[root] end)
    assert max_children(tree) <= 4
    assert length(TreePlanner.nodes(tree)) == 400
  end

  test "labels are compared exactly: 1 and 1.0, :eu and \"eu\" differ" do
    members = [{:a@h, region: 1}, {:b@h, region: 1.0}, {:c@h, region: 1.0}, {:d@h, region: 1}]
    assert {:ok, {:a@h, [{:b@h, [{:c@h, []}]}, {:d@h, []}]}} = TreePlanner.plan(members, :a@h)

    members = [{:a@h, region: :eu}, {:b@h, region: "eu"}, {:c@h, region: "eu"}]
    assert {:ok, {:a@h, [{:b@h, [{:c@h, []}]}]}} = TreePlanner.plan(members, :a@h)
  end

  test "zones are entered once within their region" do
    members = for i <- 1..120, do: {node_name(i), region: rem(i, 2), zone: rem(div(i, 2), 3)}

    loc = Map.new(members, fn {n, l} -> {n, {l[:region], l[:zone]}} end)
    {:ok, tree} = TreePlanner.plan(members, node_name(1), fanout: 2)

    entered =
      tree
      |> edges()
      |> Enum.filter(fn {p, c} -> loc[p] != loc[c] end)
      |> Enum.map(fn {_, c} -> loc[c] end)

    assert length(entered) == length(Enum.uniq(entered))
    assert length(entered) == 5
  end

  test "children/2 hands a forwarder its own subtree" do
    {:ok, tree} = TreePlanner.plan(nodes(50), node_name(1), fanout: 3)

    for {_, child} <- edges(tree) do
      subtrees = TreePlanner.children(tree, child)
      assert is_list(subtrees)
      assert length(subtrees) <= 3
    end

    # The union of the root's children's subtrees is everyone else.
    below = tree |> TreePlanner.children(node_name(1)) |> Enum.flat_map(&TreePlanner.nodes/1)
    assert Enum.sort(below) == Enum.sort(nodes(50) -- [node_name(1)])
  end

  test "adopt/2 splices a dead node's children into its parent" do
    {:ok, tree} = TreePlanner.plan(nodes(30), node_name(1), fanout: 2)
    {_, [{dead, orphans} | _]} = tree
    repaired = TreePlanner.adopt(tree, [dead, :not_a_member@host])
    assert Enum.sort(TreePlanner.nodes(repaired)) == Enum.sort(nodes(30) -- [dead])
    root_children = Enum.map(TreePlanner.children(repaired, node_name(1)), &elem(&1, 0))
    assert Enum.all?(orphans, fn {o, _} -> o in root_children end)

    assert_raise ArgumentError, ~r/cannot remove the root/, fn ->
      TreePlanner.adopt(tree, [node_name(1)])
    end
  end

  test "errors" do
    assert TreePlanner.plan([:a@h, :b@h], :c@h) == {:error, :root_not_member}
    assert TreePlanner.plan([], :a@h) == {:error, :root_not_member}
    assert TreePlanner.plan([:a@h, {:a@h, region: 1}], :a@h) == {:error, :duplicate_member}
    assert TreePlanner.plan([:a@h], :a@h) == {:ok, {:a@h, []}}
  end

  test "bad options and members raise ArgumentError" do
    for bad <- [0, -1, 1.5, nil, :four] do
      message = "the :fanout option must be a positive integer, got: #{inspect(bad)}"
      assert_raise ArgumentError, message, fn -> TreePlanner.plan([:a@h], :a@h, fanout: bad) end
    end

    assert_raise ArgumentError, fn -> TreePlanner.plan([:a@h], :a@h, fanuot: 2) end
    assert_raise ArgumentError, ~r/invalid member/, fn -> TreePlanner.plan(["a"], :a@h) end

    assert_raise ArgumentError, ~r/unknown key :rack/, fn ->
      TreePlanner.plan([{:a@h, rack: 1}], :a@h)
    end

    assert_raise ArgumentError, ~r/:healthy must be a boolean/, fn ->
      TreePlanner.plan([{:a@h, healthy: :yes}], :a@h)
    end
  end

  test "large member lists plan on a dirty scheduler" do
    members = nodes(5_000)
    assert {:ok, tree} = TreePlanner.plan(members, node_name(1), fanout: 8)
    assert length(TreePlanner.nodes(tree)) == 5_000
    assert TreePlanner.depth(tree) == 5
  end
end

defmodule Jido.Distributed.OptimizerTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Optimizer

  alias Jido.Distributed.Optimizer

  test "local pids, local names and {name, node()} stay local and are never grouped remotely" do
    me = node()
    entries = [{self(), 1}, {{:x, me}, 2}, {{:y, :other@h}, 3}, {self(), 4}]

    assert Optimizer.optimize_routing(entries) == [
             {:local, [{self(), 1}, {{:x, me}, 2}, {self(), 4}]},
             {:remote, :other@h, [{{:y, :other@h}, 3}]}
           ]
  end

  test "groups keep the order of their entries" do
    entries = for i <- 1..1_000, do: {{:t, :"n#{rem(i, 3)}@h"}, i}
    groups = Optimizer.optimize_routing(entries)
    assert length(groups) == 3

    for {:remote, _node, list} <- groups do
      seqs = Enum.map(list, &elem(&1, 1))
      assert seqs == Enum.sort(seqs)
    end

    assert groups |> Enum.flat_map(&elem(&1, 2)) |> length() == 1_000
  end

  test "batch_by_network_cost chunks by class, nearest first" do
    groups = [
      {:remote, :r@h, Enum.map(1..5, &{{:t, :r@h}, &1})},
      {:remote, :z@h, Enum.map(1..5, &{{:t, :z@h}, &1})},
      {:remote, :g@h, Enum.map(1..5, &{{:t, :g@h}, &1})}
    ]

    classes = %{r@h: :remote, z@h: :same_zone, g@h: :same_region}

    result =
      Optimizer.batch_by_network_cost(groups,
        class_of: &Map.fetch!(classes, &1),
        batch_sizes: [same_zone: 2, same_region: 3, remote: 5]
      )

    assert [{:same_zone, :z@h, z}, {:same_region, :g@h, g}, {:remote, :r@h, r}] = result
    assert Enum.map(z, &length/1) == [2, 2, 1]
    assert Enum.map(g, &length/1) == [3, 2]
    assert Enum.map(r, &length/1) == [5]
  end
end

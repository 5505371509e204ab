defmodule Jido.Distributed.Routing.RankTest do
  use ExUnit.Case, async: true

  alias Jido.Distributed.Routing.Rank

  doctest Rank

  test "keys order local, then weight, class, load and tie" do
    class = fn node -> %{z: :same_zone, r: :same_region, f: :remote}[node] end

    keys = [
      local: Rank.key(true, 0, :me, class, 9, 9),
      zone: Rank.key(false, 0, :z, class, 5, 0),
      zone_idle: Rank.key(false, 0, :z, class, 1, 0),
      region: Rank.key(false, 0, :r, class, 0, 0),
      far: Rank.key(false, 0, :f, class, 0, 0),
      penalised: Rank.key(false, 5, :z, class, 0, 0),
      unreachable: Rank.key(false, :infinity, :z, fn _ -> flunk("class_of called") end, 0, 0)
    ]

    assert keys |> Enum.sort_by(&elem(&1, 1)) |> Keyword.keys() ==
             [:local, :zone_idle, :zone, :region, :far, :penalised, :unreachable]
  end

  test "the tie-break is a 32-bit function, stable, and spreads signals over equal agents" do
    assert Rank.tie(1, 2) == Rank.tie(1, 2)
    assert Enum.all?(1..1000, &(Rank.tie(&1, 7) in 0..0xFFFFFFFF))

    winners =
      for signal <- 1..3000 do
        Enum.min_by(1..3, &Rank.tie(signal, :erlang.phash2(&1)))
      end

    for agent <- 1..3, do: assert(Enum.count(winners, &(&1 == agent)) in 800..1200)
  end

  test "best_local and best_remote pick the least loaded row, remote by node rank first" do
    table = :ets.new(:rank_test, [:duplicate_bag])
    loads = :atomics.new(4, signed: false)
    pid = self()
    :ets.insert(table, [{"t", "a", pid, 1, 10}, {"t", "b", pid, 2, 20}, {"w.*", "c", pid, 3, 30}])
    for {slot, load} <- [{1, 5}, {2, 3}, {3, 4}], do: :atomics.put(loads, slot, load)

    assert {"t", "b", ^pid, 2, 20} = Rank.best_local(["t", "w.*"], table, loads, 1)
    assert Rank.best_local(["none"], table, loads, 1) == nil

    # This node's pid, ranked as a remote node of weight 0 and class :same_zone.
    ctx = {%{}, [node()], %{node() => :same_zone}}
    assert {"t", "b", ^pid, 2, 20} = Rank.best_remote(["t", "w.*"], table, loads, 1, ctx)
    assert Rank.best_remote([], table, loads, 1, ctx) == nil
  end
end

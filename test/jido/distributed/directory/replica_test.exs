defmodule Jido.Distributed.Directory.ReplicaTest do
  use ExUnit.Case, async: true

  alias Jido.Distributed.Directory.Replica

  doctest Replica

  # Applies `ops` to `known` the way the server does, slots from a counter;
  # returns the final replica and every effect, in order.
  defp run(known, ops) do
    next = known |> Map.values() |> Enum.map(&elem(&1, 2)) |> Enum.max(fn -> 0 end)

    {known, _next, effects} =
      Enum.reduce(ops, {known, next + 1, []}, fn op, acc ->
        Enum.reduce(Replica.effects(elem(acc, 0), op), acc, fn
          {:insert, _, _, _, _} = effect, {known, next, effects} ->
            {Replica.update(known, effect, next), next + 1, [effect | effects]}

          effect, {known, next, effects} ->
            {Replica.update(known, effect, nil), next, [effect | effects]}
        end)
      end)

    {known, Enum.reverse(effects)}
  end

  defp strip(known),
    do: Map.new(known, fn {id, {pid, sources, _slot}} -> {id, {pid, sources}} end)

  test "a put of a known agent with other patterns replaces it in its slot" do
    pid = self()
    known = %{"a" => {pid, ["x"], 4}}

    assert Replica.effects(known, {:put, "a", pid, ["y"], 1}) ==
             [{:replace, "a", {pid, ["x"]}, {pid, ["y"]}, 4}, {:set_load, 4, 1}]

    assert Replica.effects(known, {:put, "b", pid, ["y"], 1}) == [{:insert, "b", pid, ["y"], 1}]
    assert Replica.effects(%{}, {:del, "a"}) == []
  end

  test "any snapshot, against any replica, leaves exactly the snapshot's agents" do
    pids = for _ <- 1..3, do: spawn(fn -> :ok end)
    patterns = [["a"], ["a", "b.*"], ["c.**"], []]

    for _ <- 1..300 do
      known =
        for id <- Enum.take_random(1..8, :rand.uniform(8) - 1), into: %{} do
          {id, {Enum.random(pids), Enum.random(patterns), id}}
        end

      entries =
        for id <- Enum.take_random(1..8, :rand.uniform(8) - 1) do
          {id, Enum.random(pids), Enum.random(patterns), :rand.uniform(5)}
        end

      {after_sync, effects} = run(known, Replica.snapshot_ops(known, entries))

      assert strip(after_sync) == Map.new(entries, fn {id, pid, s, _} -> {id, {pid, s}} end)

      # Slots: kept for agents that stay, freed once for those that go.
      for {id, {_pid, _s, slot}} <- known, Map.has_key?(after_sync, id) do
        assert elem(after_sync[id], 2) == slot
      end

      removed = for {:remove, id, _, _, _} <- effects, do: id
      assert Enum.sort(removed) == Enum.sort(Map.keys(known) -- Map.keys(after_sync))

      # Unchanged agents cost a load write only.
      for {id, {pid, s, _slot}} <- known, match?(%{^id => {^pid, ^s, _}}, after_sync) do
        refute Enum.any?(effects, &(elem(&1, 0) in [:insert, :replace] and elem(&1, 1) == id))
      end

      # A second identical snapshot changes nothing but loads.
      {again, effects} = run(after_sync, Replica.snapshot_ops(after_sync, entries))
      assert again == after_sync
      assert Enum.all?(effects, &match?({:set_load, _, _}, &1))
    end
  end
end

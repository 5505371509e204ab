defmodule Jido.Distributed.Routing.CapabilityIndexTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Routing.CapabilityIndex

  alias Jido.Distributed.Routing.{CapabilityIndex, Pattern}

  describe "put/3 and lookup/2" do
    test "finds values by exact, `*` and `**` patterns" do
      index =
        CapabilityIndex.new()
        |> CapabilityIndex.put("order.item.added", "exact")
        |> CapabilityIndex.put("order.*.added", "star")
        |> CapabilityIndex.put("order.**", "tail")
        |> CapabilityIndex.put("**.added", "head")
        |> CapabilityIndex.put("order.**.added", "middle")
        |> CapabilityIndex.put("user.**", "other")

      assert CapabilityIndex.lookup(index, "order.item.added") ==
               ["exact", "star", "tail", "head", "middle"]

      assert CapabilityIndex.lookup(index, "order.added") == ["tail", "head", "middle"]
      assert CapabilityIndex.lookup(index, "order") == ["tail"]
      assert CapabilityIndex.lookup(index, "added") == ["head"]
      assert CapabilityIndex.lookup(index, "Order.item.added") == ["head"]
      assert CapabilityIndex.lookup(index, "payment.failed") == []
    end

    test "deduplicates a value held by several matching patterns" do
      index = CapabilityIndex.new([{"a.*", :z}, {"a.**", :z}, {"**", :a}, {"a.b", :m}])
      assert CapabilityIndex.lookup(index, "a.b") == [:z, :a, :m]
    end

    test "orders results by when each value entered the index" do
      index =
        Enum.reduce([{"**", 3}, {"a.b", 1}, {"a.*", 2}, {"a.**", 1}], CapabilityIndex.new(), fn
          {p, v}, acc -> CapabilityIndex.put(acc, p, v)
        end)

      assert CapabilityIndex.lookup(index, "a.b") == [3, 1, 2]

      # A value keeps its place while it holds any pattern ...
      index = CapabilityIndex.delete(index, "a.b", 1)
      assert CapabilityIndex.lookup(index, "a.b") == [3, 1, 2]

      # ... and goes to the back when it leaves and comes back.
      index = index |> CapabilityIndex.delete_value(3) |> CapabilityIndex.put("a.b", 3)
      assert CapabilityIndex.lookup(index, "a.b") == [1, 2, 3]
    end

    test "tells values apart with ===" do
      index = CapabilityIndex.new([{"a", 1}, {"a", 1.0}])
      assert CapabilityIndex.size(index) == 2
      assert CapabilityIndex.lookup(index, "a") == [1, 1.0]
      assert index |> CapabilityIndex.delete("a", 1.0) |> CapabilityIndex.lookup("a") == [1]
    end

    test "an invalid type matches nothing" do
      index = CapabilityIndex.new([{"**", 1}])
      assert CapabilityIndex.lookup(index, "a") == [1]

      for type <- ["", "a..b", ".a", "a.", "a.*", "**", nil, :a],
          do: assert(CapabilityIndex.lookup(index, type) == [])
    end

    test "accepts compiled patterns and rejects invalid ones" do
      index = CapabilityIndex.put(CapabilityIndex.new(), Pattern.compile!("a.*"), 1)
      assert CapabilityIndex.lookup(index, "a.b") == [1]

      assert_raise ArgumentError, ~r/invalid signal pattern "a\.\.b"/, fn ->
        CapabilityIndex.put(index, "a..b", 1)
      end

      assert_raise ArgumentError, fn -> CapabilityIndex.new([{"a*", 1}]) end
    end

    test "keeps equivalent spellings apart" do
      index = CapabilityIndex.new([{"**.a", 1}, {"**.**.a", 1}])
      assert CapabilityIndex.size(index) == 2
      index = CapabilityIndex.delete(index, "**.a", 1)
      assert CapabilityIndex.lookup(index, "x.a") == [1]
    end

    test "stays fast when `**` nodes can be entered at many positions" do
      patterns =
        for n <- 1..12 do
          Enum.join(List.duplicate("**", n), ".") <> ".a"
        end ++ for(n <- 1..12, do: Enum.join(List.duplicate("*.**", n), ".") <> ".b")

      index = CapabilityIndex.new(Enum.with_index(patterns))
      type = Enum.join(List.duplicate("x", 200), ".")

      {micros, result} = :timer.tc(fn -> CapabilityIndex.lookup(index, type <> ".a") end)
      assert result == Enum.to_list(0..11)
      assert micros < 2_000_000

      assert CapabilityIndex.lookup(index, type <> ".c") == []
      assert CapabilityIndex.lookup(index, type <> ".b") == Enum.to_list(12..23)
    end
  end

  describe "delete/3, delete_value/2 and size/1" do
    test "delete/3 removes one pair and ignores absent ones" do
      index = CapabilityIndex.new([{"a.*", 1}, {"a.*", 2}, {"b", 1}])
      assert CapabilityIndex.size(index) == 3

      index = CapabilityIndex.delete(index, "a.*", 1)
      assert CapabilityIndex.size(index) == 2
      assert CapabilityIndex.lookup(index, "a.x") == [2]
      assert CapabilityIndex.lookup(index, "b") == [1]

      assert CapabilityIndex.delete(index, "a.*", 1) == index
      assert CapabilityIndex.delete(index, "c.**", 1) == index
      assert CapabilityIndex.delete(index, "a.*", 99) == index
    end

    test "delete_value/2 removes a value from all its patterns" do
      index = CapabilityIndex.new([{"a.*", 1}, {"**", 1}, {"a.b", 1}, {"a.b", 2}])
      index = CapabilityIndex.delete_value(index, 1)
      assert CapabilityIndex.size(index) == 1
      assert CapabilityIndex.lookup(index, "a.b") == [2]
      assert CapabilityIndex.lookup(index, "a.c") == []
      assert CapabilityIndex.delete_value(index, 1) == index
    end

    test "deleting everything prunes the trie back to an empty root" do
      entries = [{"a.b.c", 1}, {"a.*.c", 2}, {"**.c", 3}, {"a.**.*.d", 4}, {"*", 5}]
      index = CapabilityIndex.new(entries)

      emptied =
        Enum.reduce(entries, index, fn {p, v}, acc -> CapabilityIndex.delete(acc, p, v) end)

      assert CapabilityIndex.size(emptied) == 0
      assert emptied.root == CapabilityIndex.new().root
      assert emptied.values == %{}

      emptied = Enum.reduce(1..5, index, &CapabilityIndex.delete_value(&2, &1))
      assert emptied.root == CapabilityIndex.new().root
    end

    test "re-adding a present pair does not change the index" do
      index = CapabilityIndex.new([{"a.*", 1}])
      assert CapabilityIndex.put(index, "a.*", 1) == index
    end

    test "new/1 builds the same index as repeated put/3" do
      entries =
        for i <- 1..200, do: {Enum.at(["a.*", "**", "a.b", "*.b.**"], rem(i, 4)), rem(i, 37)}

      built = CapabilityIndex.new(entries)

      putted =
        Enum.reduce(entries, CapabilityIndex.new(), fn {p, v}, acc ->
          CapabilityIndex.put(acc, p, v)
        end)

      assert CapabilityIndex.size(built) == CapabilityIndex.size(putted)

      for type <- ["a.b", "a.c", "x.b.y", "b"] do
        assert CapabilityIndex.lookup(built, type) == CapabilityIndex.lookup(putted, type)
      end
    end

    test "inspects compactly" do
      assert inspect(CapabilityIndex.new([{"a", 1}])) ==
               "#Jido.Distributed.Routing.CapabilityIndex<size: 1>"
    end
  end

  describe "randomized against a naive scan" do
    @segments ["a", "b", "c", "d"]

    test "lookup/2 equals filtering every pair with Pattern.match?/2" do
      :rand.seed(:exsss, {2024, 5, 17})

      Enum.reduce(1..40, {CapabilityIndex.new(), new_model()}, fn round, {index, model} ->
        {index, model} = mutate(index, model, 60)
        assert CapabilityIndex.size(index) == MapSet.size(model.pairs), "round #{round}"

        for _ <- 1..100 do
          type = random_type()
          assert CapabilityIndex.lookup(index, type) == naive_lookup(model, type), "type #{type}"
        end

        {index, model}
      end)
    end

    # Random puts, deletes of present and absent pairs, and delete_value.
    defp mutate(index, model, steps) do
      Enum.reduce(1..steps, {index, model}, fn _, {index, model} ->
        case {:rand.uniform(10), MapSet.size(model.pairs)} do
          {n, _} when n <= 6 ->
            {pattern, value} = {random_pattern(), :rand.uniform(30)}
            {CapabilityIndex.put(index, pattern, value), model_put(model, pattern, value)}

          {n, size} when n <= 8 and size > 0 ->
            {pattern, value} = Enum.random(model.pairs)

            {CapabilityIndex.delete(index, pattern, value),
             model_delete(model, [{pattern, value}])}

          {9, _} ->
            {pattern, value} = {random_pattern(), :rand.uniform(30)}

            {CapabilityIndex.delete(index, pattern, value),
             model_delete(model, [{pattern, value}])}

          _ ->
            value = :rand.uniform(30)
            pairs = Enum.filter(model.pairs, fn {_p, v} -> v == value end)
            {CapabilityIndex.delete_value(index, value), model_delete(model, pairs)}
        end
      end)
    end

    # The model: the set of pairs, and for each value present the time it
    # entered (when it got its first pattern since it last had none).
    defp new_model, do: %{pairs: MapSet.new(), entered: %{}, clock: 0}

    defp model_put(model, pattern, value) do
      entered = Map.put_new(model.entered, value, model.clock)

      %{
        model
        | pairs: MapSet.put(model.pairs, {pattern, value}),
          entered: entered,
          clock: model.clock + 1
      }
    end

    defp model_delete(model, pairs) do
      pairs = MapSet.difference(model.pairs, MapSet.new(pairs))
      present = MapSet.new(pairs, fn {_p, v} -> v end)
      %{model | pairs: pairs, entered: Map.take(model.entered, MapSet.to_list(present))}
    end

    defp naive_lookup(model, type) do
      for({pattern, value} <- model.pairs, Pattern.match?(pattern, type), do: value)
      |> Enum.uniq()
      |> Enum.sort_by(&Map.fetch!(model.entered, &1))
    end

    defp random_pattern do
      Enum.map_join(1..:rand.uniform(5), ".", fn _ ->
        case :rand.uniform(8) do
          1 -> "*"
          2 -> "**"
          _ -> Enum.random(@segments)
        end
      end)
    end

    defp random_type do
      Enum.map_join(1..:rand.uniform(6), ".", fn _ -> Enum.random(@segments) end)
    end
  end
end

defmodule Jido.Distributed.Broadcast.WireTest do
  # Node-free. Random cases use ExUnit's seed (`mix test --seed N` repeats them).
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Broadcast.Wire

  alias Jido.Distributed.Broadcast.Wire

  @me :me@h
  @id {:r@h, 3, 7}
  @tree {@me, [{:b@h, [{:d@h, []}]}, {:c@h, []}]}

  defp bcast(fields \\ []) do
    f =
      Map.merge(
        %{
          id: @id,
          parent: :p@h,
          frame: "bytes",
          atoms: [:id, :type],
          subtree: @tree,
          budget: 900
        },
        Map.new(fields)
      )

    Wire.bcast(f.id, f.parent, f.frame, f.atoms, f.subtree, f.budget)
  end

  describe "check/2 of a broadcast" do
    test "accepts the shape TreeBroadcast sends" do
      assert Wire.check(bcast(), @me) == :ok
      assert Wire.check(bcast(atoms: :same), @me) == :ok
      assert Wire.check(bcast(atoms: []), @me) == :ok
      assert Wire.check(bcast(subtree: {@me, []}), @me) == :ok
      assert Wire.check(bcast(id: {:r@h, 0, 1}), @me) == :ok
    end

    test "names the first part that is wrong" do
      for {fields, reason} <- [
            {[id: {:r@h, 3}], :bad_id},
            {[id: {"r@h", 3, 7}], :bad_id},
            {[id: {:r@h, -1, 7}], :bad_id},
            {[id: {:r@h, 3, 0}], :bad_id},
            {[parent: "p@h"], :bad_parent},
            {[parent: ~c"p@h"], :bad_parent},
            {[frame: ~c"bytes"], :bad_frame},
            {[frame: <<1::3>>], :bad_frame},
            {[atoms: [:a, "b"]], :bad_atoms},
            {[atoms: [:a | :b]], :bad_atoms},
            {[atoms: :other], :bad_atoms},
            {[subtree: {@me, [:not_a_subtree]}], :bad_subtree},
            {[subtree: {@me, [{"c@h", []}]}], :bad_subtree},
            {[subtree: {@me, [{:gone@nohost, [{1, 2}, "x"]}]}], :bad_subtree},
            {[subtree: {@me, [{:b@h, []} | {:c@h, []}]}], :bad_subtree},
            {[subtree: {@me, :children}], :bad_subtree},
            {[subtree: {@me, [], :extra}], :bad_subtree},
            {[subtree: @me], :bad_subtree},
            {[subtree: {:other@h, []}], :not_for_this_node},
            {[budget: 0], :bad_budget},
            {[budget: 1.5], :bad_budget},
            {[budget: :soon], :bad_budget},
            {[id: :x, parent: "p", budget: 0], :bad_id}
          ] do
        assert {fields, Wire.check(bcast(fields), @me)} == {fields, {:error, reason}}
      end

      assert Wire.check(Tuple.delete_at(bcast(), 6), @me) == {:error, :unknown_message}
    end

    test "trees are bounded in depth and size" do
      # chain(n) is n + 1 deep.
      assert Wire.tree?(chain(4_095))
      refute Wire.tree?(chain(4_096))
      refute Wire.tree?(chain(20_000))

      leaves = for i <- 1..65_535, do: {:"n#{rem(i, 100)}@h", []}
      assert Wire.tree?({@me, leaves})
      refute Wire.tree?({@me, [{:x@h, []} | leaves]})
      # The bound is on nodes in all, not per level.
      refute Wire.tree?(
               {@me, [{:x@h, Enum.take(leaves, 40_000)}, {:y@h, Enum.take(leaves, 30_000)}]}
             )
    end

    test "atom lists are bounded" do
      assert Wire.check(bcast(atoms: List.duplicate(:a, 65_536)), @me) == :ok
      assert Wire.check(bcast(atoms: List.duplicate(:a, 65_537)), @me) == {:error, :bad_atoms}
    end
  end

  describe "check/2 of acks" do
    test "accepts receipts, reports and retries" do
      acks = [
        Wire.got(@id),
        Wire.done(@id, 0, []),
        Wire.done(@id, 3, [:x@h]),
        Wire.retry(@id, :y@h)
      ]

      assert Wire.check(Wire.acks(:c@h, acks), @me) == :ok
      assert Wire.check(Wire.acks(:c@h, []), @me) == :ok
    end

    test "refuses a wrong sender, list or ack" do
      for {message, reason} <- [
            {Wire.acks("c@h", []), :bad_sender},
            {Wire.acks(:c@h, :acks), :bad_acks},
            {Wire.acks(:c@h, [Wire.got(@id) | :tail]), :bad_acks},
            {Wire.acks(:c@h, List.duplicate(Wire.got(@id), 4_097)), :bad_acks},
            {Wire.acks(:c@h, [Wire.got(@id), {:what, @id}]), :bad_ack},
            {Wire.acks(:c@h, [{:got, :no_id}]), :bad_ack},
            {Wire.acks(:c@h, [{:done, @id, -1, []}]), :bad_ack},
            {Wire.acks(:c@h, [{:done, @id, 65_537, []}]), :bad_ack},
            {Wire.acks(:c@h, [{:done, @id, 1, [:x@h | :y@h]}]), :bad_ack},
            {Wire.acks(:c@h, [{:done, @id, 1, ["x@h"]}]), :bad_ack},
            {Wire.acks(:c@h, [{:retry, @id, "x@h"}]), :bad_ack},
            {Wire.acks(:c@h, [{:retry, @id, {:x@h, []}}]), :bad_ack},
            {{:jido_bcast_acks, :c@h}, :unknown_message}
          ] do
        assert {message, Wire.check(message, @me)} == {message, {:error, reason}}
      end

      assert Wire.check(Wire.acks(:c@h, List.duplicate(Wire.got(@id), 4_096)), @me) == :ok
    end
  end

  test "check_start/2 checks every part of a start" do
    start = fn fields ->
      f =
        Map.merge(
          %{
            id: @id,
            signal: %{id: "1", type: "t"},
            size: 10,
            tree: @tree,
            timeout: 100,
            fanout: 4
          },
          Map.new(fields)
        )

      {:start, f.id, f.signal, f.size, f.tree, f.timeout, f.fanout}
    end

    assert Wire.check_start(start.([]), @me) == :ok

    for {fields, reason} <- [
          {[id: nil], :bad_id},
          {[signal: %{id: "1"}], :bad_signal},
          {[size: -1], :bad_size},
          {[tree: {:other@h, []}], :bad_tree},
          {[tree: {@me, [:x]}], :bad_tree},
          {[timeout: 0], :bad_timeout},
          {[fanout: :four], :bad_fanout}
        ] do
      assert {fields, Wire.check_start(start.(fields), @me)} == {fields, {:error, reason}}
    end

    assert Wire.check_start({:start, 1}, @me) == {:error, :unknown_message}
  end

  test "send_to/2 never raises, whatever the destination" do
    for dest <- ["a@b", ~c"a@b", 1, {:a, :b}, :not_a_node, :gone@nohost],
        do: assert(Wire.send_to(dest, :hello) == :noconnect)
  end

  # --- random ---------------------------------------------------------------------

  @reasons [
    :bad_id,
    :bad_parent,
    :bad_frame,
    :bad_atoms,
    :bad_subtree,
    :not_for_this_node,
    :bad_budget,
    :bad_sender,
    :bad_acks,
    :bad_ack,
    :unknown_message
  ]

  test "random terms are refused with a reason, never a crash" do
    for _ <- 1..3_000 do
      message =
        case :rand.uniform(3) do
          1 -> term(4)
          2 -> List.to_tuple([:jido_bcast | for(_ <- 1..6, do: term(3))])
          3 -> {:jido_bcast_acks, term(1), term(3)}
        end

      result = Wire.check(message, @me)
      assert result == :ok or match?({:error, r} when r in @reasons, result), inspect(message)
      assert Wire.check_start(message, @me) != :ok
    end
  end

  test "a broadcast with random parts replaced is refused for the first wrong part" do
    # In the order check/2 looks at them, each with garbage that is wrong
    # for that part.
    parts = [
      id: {@id, :bad_id},
      parent: {:p@h, :bad_parent},
      frame: {"bytes", :bad_frame},
      atoms: {[:id, :type], :bad_atoms},
      subtree: {@tree, :bad_subtree},
      budget: {900, :bad_budget}
    ]

    for _ <- 1..3_000 do
      {fields, expected} =
        Enum.reduce(parts, {[], :ok}, fn {name, {valid, reason}}, {fields, expected} ->
          if :rand.uniform(4) == 1 do
            expected = if expected == :ok, do: {:error, reason}, else: expected
            {[{name, garbage(name)} | fields], expected}
          else
            {[{name, valid} | fields], expected}
          end
        end)

      message = bcast(fields)
      assert Wire.check(message, @me) == expected, inspect(message, limit: 20)
    end
  end

  test "acks with random garbage among them are refused" do
    valid = [Wire.got(@id), Wire.done(@id, 2, [:x@h]), Wire.retry(@id, :y@h)]

    for _ <- 1..2_000 do
      acks = for _ <- 0..:rand.uniform(6), do: Enum.random(valid)

      bad =
        Enum.random([
          garbage(:ack),
          {:got, garbage(:id)},
          {:done, @id, -1, []},
          {:retry, @id, garbage(:parent)}
        ])

      acks = List.insert_at(acks, :rand.uniform(length(acks) + 1) - 1, bad)
      assert Wire.check(Wire.acks(:c@h, acks), @me) == {:error, :bad_ack}, inspect(acks)
      assert Wire.check(Wire.acks(:c@h, acks -- [bad]), @me) == :ok
    end
  end

  defp chain(0), do: {@me, []}
  defp chain(n), do: {@me, [chain(n - 1)]}

  # A random term that is wrong for `part`.
  defp garbage(part) do
    term = term(3)
    if wrong?(part, term), do: term, else: garbage(part)
  end

  defp wrong?(:id, {a, b, c})
       when is_atom(a) and is_integer(b) and b >= 0 and is_integer(c) and c > 0,
       do: false

  defp wrong?(:id, _), do: true
  defp wrong?(:parent, t), do: not is_atom(t)
  defp wrong?(:frame, t), do: not is_binary(t)
  defp wrong?(:atoms, :same), do: false
  defp wrong?(:atoms, t), do: not (is_list(t) and proper?(t) and Enum.all?(t, &is_atom/1))
  defp wrong?(:subtree, t), do: not tree?(t)
  defp wrong?(:budget, t), do: not (is_integer(t) and t > 0)
  defp wrong?(:ack, {:got, _}), do: false
  defp wrong?(:ack, {:done, _, _, _}), do: false
  defp wrong?(:ack, {:retry, _, _}), do: false
  defp wrong?(:ack, _), do: true

  defp proper?([]), do: true
  defp proper?([_ | t]), do: proper?(t)
  defp proper?(_), do: false

  defp tree?({n, children}) when is_atom(n) and is_list(children),
    do: proper?(children) and Enum.all?(children, &tree?/1)

  defp tree?(_), do: false

  # Random terms of every kind, with the atoms and shapes the protocol uses
  # more often than chance would.
  defp term(0), do: leaf()

  defp term(depth) do
    case :rand.uniform(9) do
      1 -> List.to_tuple(for _ <- 1..:rand.uniform(4), do: term(depth - 1))
      2 -> for _ <- 1..:rand.uniform(4), do: term(depth - 1)
      3 -> [term(depth - 1) | term(depth - 1)]
      4 -> %{term(0) => term(depth - 1)}
      5 -> {leaf_atom(), for(_ <- 1..:rand.uniform(3), do: term(depth - 1))}
      _ -> leaf()
    end
  end

  defp leaf do
    case :rand.uniform(9) do
      1 -> leaf_atom()
      2 -> :rand.uniform(1_000) - 500
      3 -> :rand.uniform() * 10
      4 -> :crypto.strong_rand_bytes(:rand.uniform(8))
      5 -> <<:rand.uniform(7)::3>>
      6 -> self()
      7 -> make_ref()
      8 -> []
      9 -> Integer.pow(2, 70)
    end
  end

  defp leaf_atom,
    do: Enum.random([:jido_bcast, :got, :done, :retry, :same, @me, :a@h, nil, true, :"x y"])
end

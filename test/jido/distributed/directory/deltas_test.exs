defmodule Jido.Distributed.Directory.DeltasTest do
  use ExUnit.Case, async: true

  alias Jido.Distributed.Directory.Deltas

  doctest Deltas

  test "puts and deletes keep their order; loads are coalesced and go after them" do
    d =
      Deltas.new()
      |> Deltas.op({:put, "a", :p, [], 0}, "a", 1)
      |> Deltas.load("b", 1, 2)
      |> Deltas.op({:del, "c"}, "c", 3)
      |> Deltas.load("b", 2, 4)

    assert {[[{:put, "a", :p, [], 0}, {:del, "c"}, {:load, "b", 2}]], d} = Deltas.take(d, 10)
    assert Deltas.empty?(d)
    assert Deltas.take(d, 10) == {[], d}
  end

  test "a put drops the load queued before it for the same agent" do
    d = Deltas.new() |> Deltas.load("a", 9, 0) |> Deltas.op({:put, "a", :p, [], 1}, "a", 1)
    assert {[[{:put, "a", :p, [], 1}]], _} = Deltas.take(d, 10)
  end

  test "chunks of at most max_batch" do
    d = Enum.reduce(1..5, Deltas.new(), &Deltas.op(&2, {:del, &1}, &1, 0))
    assert {[[_, _], [_, _], [_]], _} = Deltas.take(d, 2)
  end

  test "due when idle, when max_batch wait, or when the oldest waited max_delay" do
    limits = {3, 100}
    refute Deltas.due?(Deltas.new(), true, 0, limits)

    d = Deltas.op(Deltas.new(), {:del, 1}, 1, 1_000)
    assert Deltas.due?(d, true, 1_000, limits)
    refute Deltas.due?(d, false, 1_099, limits)
    assert Deltas.due?(d, false, 1_100, limits)

    d = d |> Deltas.op({:del, 2}, 2, 1_050) |> Deltas.load(3, 1, 1_060)
    assert Deltas.due?(d, false, 1_001, limits)
  end
end

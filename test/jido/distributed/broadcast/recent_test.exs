defmodule Jido.Distributed.Broadcast.RecentTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Broadcast.Recent

  alias Jido.Distributed.Broadcast.Recent

  test "keeps at most max_size ids, forgetting the oldest" do
    r = Enum.reduce(1..100, Recent.new(10, 1_000_000), &Recent.put(&2, &1, :v, &1))
    assert Recent.size(r) == 10
    assert Enum.filter(1..100, &Recent.member?(r, &1)) == Enum.to_list(91..100)
  end

  test "forgets ids older than the time-to-live" do
    r = Recent.new(100, 50)
    r = r |> Recent.put(:a, 1, 0) |> Recent.put(:b, 2, 40)
    assert Recent.member?(r, :a)
    r = Recent.put(r, :c, 3, 60)
    refute Recent.member?(r, :a)
    assert Recent.get(r, :b) == 2
    assert r |> Recent.prune(200) |> Recent.size() == 0
  end

  test "updating a value keeps the id's age" do
    r = Recent.new(100, 50) |> Recent.put(:a, 1, 0) |> Recent.put(:a, 2, 45)
    assert Recent.get(r, :a) == 2
    assert r |> Recent.prune(51) |> Recent.member?(:a) == false
  end
end

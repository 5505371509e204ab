defmodule Jido.Distributed.CountersTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Counters

  alias Jido.Distributed.Counters

  test "an unknown name is refused" do
    assert_raise ArgumentError, "unknown counter :nope, known: [:a, :b]", fn ->
      Counters.index!([:a, :b], :nope)
    end
  end
end

defmodule Jido.Distributed.Broadcast.AtomsTest do
  # Node-free.
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Broadcast.Atoms

  alias Jido.Distributed.Broadcast.Atoms

  test "a child not reached, or a node forgotten, gets the whole list again" do
    {_, a} = Atoms.to_child(Atoms.new(), :c@h, [:x])
    assert {[:x], _} = a |> Atoms.unsent(:c@h) |> Atoms.to_child(:c@h, [:x])
    assert {[:x], _} = a |> Atoms.forget(:c@h) |> Atoms.to_child(:c@h, [:x])
    assert {[:y], _} = Atoms.to_child(a, :c@h, [:y])
  end

  test ":same from a parent of which no list is remembered is nil" do
    {_, a} = Atoms.from_parent(Atoms.new(), :p@h, [:x])
    assert Atoms.from_parent(a, :q@h, :same) |> elem(0) == nil
    assert a |> Atoms.forget(:p@h) |> Atoms.from_parent(:p@h, :same) |> elem(0) == nil
  end
end

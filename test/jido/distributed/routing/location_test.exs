defmodule Jido.Distributed.Routing.LocationTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Routing.Location

  alias Jido.Distributed.Routing.Location

  test "this node is :local and an unreachable node's labels are unknown" do
    assert Location.class_of(node()) == :local
    assert Location.of(:nobody@nowhere) == %{region: nil, zone: nil, rack: nil}
  end
end

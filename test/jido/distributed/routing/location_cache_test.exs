defmodule Jido.Distributed.Routing.LocationCacheTest do
  use ExUnit.Case, async: true

  alias Jido.Distributed.Routing.{Location, LocationCache}

  test "the application's cache owner holds the Location table and forgets a node that goes down" do
    owner = Process.whereis(LocationCache)
    assert is_pid(owner)
    assert :ets.info(Location.table(), :owner) == owner

    node = :"location_cache_test_#{System.unique_integer([:positive])}@nowhere"
    :ok = Location.put(node, %{region: "r", zone: "z", rack: nil})
    assert :ets.lookup(Location.table(), node) != []

    send(owner, {:nodedown, node, []})
    # A call after the message: the owner has handled it.
    _ = :sys.get_state(owner)
    assert :ets.lookup(Location.table(), node) == []
  end
end

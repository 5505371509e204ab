defmodule Jido.Distributed.Transport.NodeCheckTest do
  # Not async: it fills the node-wide limit of connection attempts.
  use ExUnit.Case, async: false

  import Jido.Distributed.ClusterCase, only: [eventually: 1]

  alias Jido.Distributed.Transport.{LinkStore, NodeCheck}

  defp made_up(prefix, i),
    do: :"#{prefix}#{i}_#{System.unique_integer([:positive])}@nowhere.invalid"

  setup do
    eventually(fn -> NodeCheck.attempts() == 0 end)
    :ok
  end

  test "this node, connected nodes and :known_nodes are known; made-up ones are not" do
    assert Node.alive?()
    assert NodeCheck.known?(node())
    node = made_up("nc", 0)
    refute NodeCheck.known?(node)
    assert {:error, {:unknown_node, ^node}} = NodeCheck.check(node)
    assert {:error, {:invalid_node, :a@b@c}} = NodeCheck.check(:a@b@c)
    assert LinkStore.lookup(node) == nil
  end

  test "one attempt per node at a time, and a bounded number at once" do
    node = made_up("nc", 1)
    assert NodeCheck.connect(node, :bounded) == :started
    assert NodeCheck.connect(node, :bounded) == :pending
    assert NodeCheck.connect(node, :unbounded) == :pending
    assert NodeCheck.attempts() == 1

    results = for i <- 1..40, do: NodeCheck.connect(made_up("nc_many", i), :bounded)
    assert Enum.count(results, &(&1 == :started)) == 31
    assert Enum.count(results, &(&1 == :busy)) == 9
    assert NodeCheck.attempts() == 32

    # Reconnects of known nodes are not held back by the limit.
    assert NodeCheck.connect(made_up("nc_link", 0), :unbounded) == :started

    # Failed attempts end after the cool-down and free their places.
    eventually(fn -> NodeCheck.attempts() == 0 end)
    assert NodeCheck.connect(node, :bounded) == :started
  end
end

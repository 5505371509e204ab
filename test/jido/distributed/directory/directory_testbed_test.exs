defmodule Jido.Distributed.DirectoryTestbedTest do
  # The Directory through a silent partition on real packets: a node that
  # the Monitor finds unreachable keeps its agents (unrouted) after the
  # distribution connection gives up, until the Monitor calls it down.
  use Jido.Distributed.TestbedCase

  alias Jido.Distributed.{Directory, Monitor}
  alias Jido.Distributed.Test.{Cluster, Collector}
  import Cluster, only: [await: 2]

  @moduletag timeout: 120_000

  defp known?(tb, on, id), do: Testbed.call(tb, on, Directory, :whereis, [id]) != nil

  defp nodedown?(tb, on, other),
    do: Enum.any?(Testbed.node_events(tb, on), &match?({_, :nodedown, ^other}, &1))

  test "an unreachable node's agents stay through the nodedown and go when it is down" do
    env = [monitor: [down_after_ms: 12_000]]
    tb = start_testbed(hosts: [:a, :b], net_ticktime: 4, env: env)
    b = Testbed.node(tb, :b)
    pid = Testbed.call(tb, :b, Collector, :start, [])
    :ok = Testbed.call(tb, :b, Directory, :register, ["kept-1", ["kept.*"], [pid: pid]])
    assert await(fn -> known?(tb, :a, "kept-1") end, 15_000)
    assert await(fn -> Testbed.call(tb, :a, Monitor, :status, [b]) == :up end, 15_000)

    :ok = Testbed.partition(tb, [[:a], [:b]])
    assert await(fn -> Testbed.call(tb, :a, Monitor, :status, [b]) == :unreachable end, 5_000)
    # The tick gives up after 4-6 s: the connection is gone...
    assert await(fn -> nodedown?(tb, :a, b) end, 15_000)
    Process.sleep(1_500)
    # ...and the agent is still known (the Router weighs b :infinity).
    assert known?(tb, :a, "kept-1")
    assert Testbed.call(tb, :a, Jido.Router, :routing_weights, [])[b] == :infinity

    # Still cut when the Monitor calls b down: the agent goes.
    assert await(fn -> not known?(tb, :a, "kept-1") end, 20_000)
    assert Testbed.call(tb, :a, Monitor, :status, [b]) == :down

    # Healed: b connects again and its agent comes back.
    :ok = Testbed.heal(tb)
    Testbed.connect_all(tb)
    assert await(fn -> known?(tb, :a, "kept-1") end, 20_000)
  end

  test "a partition shorter than the Monitor's patience costs the agents nothing" do
    tb = start_testbed(hosts: [:a, :b], net_ticktime: 4)
    b = Testbed.node(tb, :b)
    pid = Testbed.call(tb, :b, Collector, :start, [])
    :ok = Testbed.call(tb, :b, Directory, :register, ["kept-2", ["kept.*"], [pid: pid]])
    assert await(fn -> known?(tb, :a, "kept-2") end, 15_000)
    assert await(fn -> Testbed.call(tb, :a, Monitor, :status, [b]) == :up end, 15_000)

    :ok = Testbed.partition(tb, [[:a], [:b]])
    assert await(fn -> nodedown?(tb, :a, b) end, 15_000)

    # Known at every look while cut, and after the heal.
    for _ <- 1..10 do
      assert known?(tb, :a, "kept-2")
      Process.sleep(200)
    end

    :ok = Testbed.heal(tb)
    Testbed.connect_all(tb)
    assert await(fn -> Testbed.call(tb, :a, Monitor, :status, [b]) == :up end, 15_000)
    assert known?(tb, :a, "kept-2")
  end
end

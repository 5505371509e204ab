defmodule Jido.Distributed.MonitorTestbedTest do
  # Failure detection on real packets: silent cuts, one-way cuts, paused
  # and killed VMs, and a saturated link with no fault.
  use Jido.Distributed.TestbedCase

  alias Jido.Distributed.Monitor
  alias Jido.Distributed.Test.{Cluster, TopologyLog}
  import Cluster, only: [await: 2]

  @moduletag timeout: 180_000

  defp status(tb, on, host), do: Testbed.call(tb, on, Monitor, :status, [Testbed.node(tb, host)])

  defp all_up(tb, hosts) do
    for a <- hosts, b <- hosts, a != b do
      assert await(fn -> status(tb, a, b) == :up end, 15_000), "#{b} never up on #{a}"
    end
  end

  defp start_logs(tb, hosts),
    do: for(h <- hosts, do: Testbed.call(tb, h, TopologyLog, :start, []))

  defp first(tb, on, kind, host, since),
    do: Testbed.call(tb, on, TopologyLog, :first, [kind, Testbed.node(tb, host), since])

  defp await_event(tb, on, kind, host, since, timeout \\ 5_000) do
    assert await(fn -> first(tb, on, kind, host, since) end, timeout),
           "no #{kind} of #{host} on #{on}"

    (first(tb, on, kind, host, since) - since) / 1_000
  end

  defp kinds(tb, on),
    do: for({_at, event} <- Testbed.call(tb, on, TopologyLog, :events, []), do: elem(event, 0))

  test "a silently partitioned host is unreachable within a second, with no nodedown, and recovers at once" do
    tb = start_testbed(hosts: [:a, :b, :c])
    all_up(tb, [:a, :b, :c])
    start_logs(tb, [:a, :b, :c])

    cut = TopologyLog.now_us()
    :ok = Testbed.partition(tb, [[:a, :b], [:c]])
    detect_a = await_event(tb, :a, :unreachable, :c, cut)
    detect_c = await_event(tb, :c, :unreachable, :a, cut)
    assert detect_a < 1_500 and detect_c < 1_500
    # The connection is still up: nothing but the Monitor noticed.
    assert Testbed.node(tb, :c) in Testbed.call(tb, :a, Node, :list, [])

    assert Testbed.call(tb, :a, Jido.Router, :routing_weights, [])[Testbed.node(tb, :c)] ==
             :infinity

    assert status(tb, :a, :b) == :up

    heal = TopologyLog.now_us()
    :ok = Testbed.heal(tb)
    recovered = await_event(tb, :a, :recovered, :c, heal)
    assert recovered < 1_500
    refute :unreachable in Enum.map([:b], &status(tb, :a, &1))
    # b was never accused by anyone.
    refute Enum.any?(Testbed.call(tb, :a, TopologyLog, :events, []), fn {_, e} ->
             e == {:unreachable, Testbed.node(tb, :b)}
           end)
  end

  test "a one-way cut: the side that hears nothing accuses, the other does not" do
    tb = start_testbed(hosts: [:a, :b, :c])
    all_up(tb, [:a, :b, :c])
    start_logs(tb, [:a, :c])
    cut = TopologyLog.now_us()
    # Packets from a to c vanish; c to a still pass.
    :ok = Testbed.cut_one_way(tb, :a, :c)
    await_event(tb, :c, :unreachable, :a, cut)
    Process.sleep(500)

    refute Enum.any?(Testbed.call(tb, :a, TopologyLog, :events, []), fn {_, e} ->
             e == {:unreachable, Testbed.node(tb, :c)}
           end)

    Testbed.heal(tb)
  end

  test "a paused VM is unreachable while paused beyond the threshold, a short pause accuses nobody" do
    tb = start_testbed(hosts: [:a, :b])
    all_up(tb, [:a, :b])
    start_logs(tb, [:a])

    since = TopologyLog.now_us()
    :ok = Testbed.pause(tb, :b, 60)
    Process.sleep(1_000)
    refute :unreachable in kinds(tb, :a)

    since = TopologyLog.now_us() + 0 * since
    :ok = Testbed.pause(tb, :b, 2_000)
    assert await_event(tb, :a, :unreachable, :b, since) < 1_500
    await_event(tb, :a, :recovered, :b, since, 10_000)
  end

  test "a killed VM is found down at once" do
    tb = start_testbed(hosts: [:a, :b])
    all_up(tb, [:a, :b])
    start_logs(tb, [:a])
    since = TopologyLog.now_us()
    :ok = Testbed.kill(tb, :b)

    assert await(
             fn ->
               first(tb, :a, :node_down, :b, since) || first(tb, :a, :unreachable, :b, since)
             end,
             5_000
           )
  end

  test "a saturated link with no fault raises no alarm" do
    alias Jido.Distributed.Test.Testbed.Probe
    tb = start_testbed(hosts: [:a, :b])
    all_up(tb, [:a, :b])
    start_logs(tb, [:a, :b])
    :ok = Testbed.set_bandwidth(tb, :a, 10)
    b = Testbed.node(tb, :b)
    # a floods b through a 10 Mbit/s link with 16 KiB messages, as fast
    # as distribution takes them: the link is full all along.
    counter = Testbed.call(tb, :b, Probe, :start_counter, [:jdtb_flood])
    Testbed.call(tb, :a, Probe, :start_flood, [:jdtb_flood, b, 16_384])
    Process.sleep(8_000)
    # About 1.25 MB/s: ~75 messages a second got through.
    assert Testbed.call(tb, :b, Probe, :count, [counter]) > 200
    refute :unreachable in kinds(tb, :a)
    refute :unreachable in kinds(tb, :b)
  end
end

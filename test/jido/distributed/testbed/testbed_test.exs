defmodule Jido.Distributed.Test.TestbedTest do
  # The testbed's own tests: each operation does what it says on real packets.
  use Jido.Distributed.TestbedCase

  alias Jido.Distributed.Test.Cluster
  import Cluster, only: [await: 2]
  alias Jido.Distributed.Test.Testbed.{Net, Probe}

  @moduletag timeout: 180_000

  # UDP datagrams `from` -> `to` that arrive, out of `count` sent.
  defp udp_through(tb, from, to, count \\ 20) do
    {listener, port} = Testbed.call(tb, to, Probe, :udp_listen, [Testbed.address(tb, to)])
    Testbed.call(tb, from, Probe, :udp_send, [Testbed.address(tb, to), port, count])
    # Datagrams that pass arrive within milliseconds; wait for all or a while.
    await(fn -> Testbed.call(tb, to, Probe, :udp_received, [listener]) == count end, 2_000)
    received = Testbed.call(tb, to, Probe, :udp_received, [listener])
    Testbed.call(tb, to, Probe, :stop, [listener])
    received
  end

  defp counters(tb) do
    for h <- [:a, :b], side <- [:host, :bridge], into: %{} do
      {{h, side}, Testbed.interface_counters(tb, h, side)}
    end
  end

  defp dropped(tb),
    do: tb |> Testbed.drop_counters() |> Map.values() |> Enum.map(& &1.packets) |> Enum.sum()

  defp nodedowns(tb, host), do: for({_, :nodedown, n} <- Testbed.node_events(tb, host), do: n)

  test "a silent partition drops every packet both ways and raises no nodedown for 5 s" do
    tb = start_testbed(hosts: [:a, :b])
    a = Testbed.node(tb, :a)
    b = Testbed.node(tb, :b)
    # Distribution traffic a -> b all along: a message every 20 ms.
    counter = Testbed.call(tb, :b, Probe, :start_counter, [:jdtb_counter])
    chatter = Testbed.call(tb, :a, Probe, :start_chatter, [:jdtb_counter, b, 20])
    assert await(fn -> Testbed.call(tb, :b, Probe, :count, [counter]) > 10 end, 10_000)

    :ok = Testbed.partition(tb, [[:a], [:b]])
    # Counted from a moment after the cut, so that no packet already past
    # the bridge when the rule came in is counted.
    Process.sleep(200)
    before = counters(tb)
    dropped_before = dropped(tb)
    count_before = Testbed.call(tb, :b, Probe, :count, [counter])

    # The issue's bar: nobody notices for at least 5 s (default net_ticktime).
    Process.sleep(6_000)

    assert nodedowns(tb, :a) == []
    assert nodedowns(tb, :b) == []
    assert b in Testbed.call(tb, :a, Node, :list, [])
    assert a in Testbed.call(tb, :b, Node, :list, [])

    # a kept sending (TCP retransmissions left its interface and entered the
    # bridge, whose rules dropped them) and nothing reached either host.
    after_ = counters(tb)
    delta = fn key, field -> after_[key][field] - before[key][field] end
    assert delta.({:a, :host}, :tx_packets) > 0
    assert delta.({:b, :host}, :rx_packets) == 0
    assert delta.({:a, :host}, :rx_packets) == 0
    assert delta.({:a, :bridge}, :tx_packets) == 0
    assert delta.({:b, :bridge}, :tx_packets) == 0

    assert delta.({:a, :bridge}, :rx_packets) > 0
    assert dropped(tb) - dropped_before > 0

    assert Testbed.call(tb, :b, Probe, :count, [counter]) == count_before
    assert udp_through(tb, :a, :b) == 0
    assert udp_through(tb, :b, :a) == 0

    :ok = Testbed.heal(tb)
    assert Testbed.cuts(tb) == []
    assert udp_through(tb, :a, :b) == 20
    assert udp_through(tb, :b, :a) == 20
    # The same connection carries on: TCP retransmits what it held.
    assert await(
             fn -> Testbed.call(tb, :b, Probe, :count, [counter]) > count_before + 10 end,
             60_000
           )

    Testbed.call(tb, :a, Probe, :stop, [chatter])
  end

  test "a partial partition cuts a-b while both reach c; a one-way cut is one-way" do
    tb = start_testbed(hosts: [:a, :b, :c])

    :ok = Testbed.partition(tb, [[:a], [:b]])
    assert Testbed.cuts(tb) == [{:a, :b}, {:b, :a}]
    assert udp_through(tb, :a, :b) == 0
    assert udp_through(tb, :b, :a) == 0

    for {x, y} <- [{:a, :c}, {:c, :a}, {:b, :c}, {:c, :b}] do
      assert udp_through(tb, x, y) == 20, "#{x} -> #{y} should pass"
    end

    :ok = Testbed.heal(tb)
    :ok = Testbed.cut_one_way(tb, :a, :b)
    assert Testbed.cuts(tb) == [{:a, :b}]
    assert udp_through(tb, :a, :b) == 0
    assert udp_through(tb, :b, :a) == 20
    assert udp_through(tb, :a, :c) == 20
    assert Map.keys(Testbed.drop_counters(tb)) == [{:a, :b}]
    assert Testbed.drop_counters(tb)[{:a, :b}].packets > 0

    :ok = Testbed.heal(tb)
    assert udp_through(tb, :a, :b) == 20
  end

  test "a 10 Mbit/s limit caps measured throughput within 15%, both ways" do
    tb = start_testbed(hosts: [:a, :b], start_app: false)
    :ok = Testbed.set_bandwidth(tb, :a, 10)

    for {from, to} <- [{:a, :b}, {:b, :a}] do
      {sink, port} = Testbed.call(tb, to, Probe, :tcp_sink, [Testbed.address(tb, to)])
      Testbed.call(tb, from, Probe, :tcp_blast, [Testbed.address(tb, to), port, 5_000], 30_000)
      mbit = Testbed.call(tb, to, Probe, :tcp_rate, [sink, 1_000])
      assert mbit >= 8.5 and mbit <= 11.5, "#{from} -> #{to}: #{mbit} Mbit/s"
    end

    :ok = Testbed.set_bandwidth(tb, :a, nil)
    {sink, port} = Testbed.call(tb, :b, Probe, :tcp_sink, [Testbed.address(tb, :b)])
    Testbed.call(tb, :a, Probe, :tcp_blast, [Testbed.address(tb, :b), port, 2_000], 30_000)
    assert Testbed.call(tb, :b, Probe, :tcp_rate, [sink, 500]) > 20
  end

  test "latency goes through proxies inside the hosts and comes off again" do
    tb = start_testbed(hosts: [:a, :b], start_app: false)
    b = Testbed.node(tb, :b)
    :ok = Testbed.set_latency(tb, :a, :b, 100)
    assert Testbed.call(tb, :a, Cluster, :measure_rtt_us, [b, 5], 30_000) >= 90_000
    :ok = Testbed.set_latency(tb, :a, :b, 0)
    assert Testbed.call(tb, :a, Cluster, :measure_rtt_us, [b, 5], 30_000) < 50_000
  end

  test "pause stops the VM for the time given; kill and restart bring back the same node" do
    tb = start_testbed(hosts: [:a, :b], start_app: false)
    a = Testbed.node(tb, :a)

    # A pause: a process on a that wakes every 10 ms sees one gap as long as the pause.
    clock = Testbed.call(tb, :a, Probe, :start_clock, [10])
    Process.sleep(200)
    :ok = Testbed.pause(tb, :a, 1_000)
    assert Testbed.paused?(tb, :a)
    assert await(fn -> not Testbed.paused?(tb, :a) end, 10_000)
    assert Testbed.call(tb, :a, Probe, :max_gap_ms, [clock]) >= 950
    assert Testbed.call(tb, :a, :erlang, :node, []) == a

    os_pid = Testbed.os_pid(tb, :a)
    :ok = Testbed.kill(tb, :a)
    refute Net.alive?(os_pid)
    assert await(fn -> a in nodedowns(tb, :b) end, 10_000)

    :ok = Testbed.restart(tb, :a)
    assert Testbed.os_pid(tb, :a) != os_pid
    assert Testbed.call(tb, :b, :erpc, :call, [a, :erlang, :node, []]) == a
  end

  test "teardown leaves no namespace, interface, rule or process; the sweep removes a dead run's leftovers" do
    root_links = System.cmd("ip", ["-o", "link", "show"]) |> elem(0) |> link_names()
    {:ok, tb} = Testbed.start_link(hosts: [:a, :b, :c], start_app: false)
    Testbed.partition(tb, [[:a], [:b]])
    Testbed.set_bandwidth(tb, :c, 50)
    Testbed.set_latency(tb, :a, :c, 10)
    Testbed.pause(tb, :b, 60_000)

    namespaces = Testbed.namespaces(tb)
    pids = Testbed.os_pids(tb)
    assert length(namespaces) == 4
    # A VM, an epmd and more per host.
    assert length(pids) >= 6

    :ok = Testbed.stop(tb)
    assert Enum.filter(Net.namespaces(), &(&1 in namespaces)) == []
    assert Net.await_gone(pids, 100)
    assert System.cmd("ip", ["-o", "link", "show"]) |> elem(0) |> link_names() == root_links

    # A run whose VM died: its namespace and the process inside stay until a sweep.
    {dead, 0} = System.cmd("sh", ["-c", "echo $$"])
    leftover = "jdtb#{String.trim(dead)}_1_h1"
    {_, 0} = System.cmd("ip", ["netns", "add", leftover])

    port =
      Port.open({:spawn_executable, "/usr/sbin/ip"}, [
        :binary,
        args: ["netns", "exec", leftover, "sleep", "600"]
      ])

    {:os_pid, sleeper} = Port.info(port, :os_pid)
    assert leftover in Net.namespaces()
    assert (String.trim(dead) <> "_1_") in Enum.map(Net.sweep(), &String.trim_leading(&1, "jdtb"))
    refute leftover in Net.namespaces()
    assert Net.await_gone([sleeper], 100)
  end

  defp link_names(text) do
    for line <- String.split(text, "\n", trim: true),
        [_, name | _] = String.split(line, ": ", parts: 3),
        do: name
  end
end

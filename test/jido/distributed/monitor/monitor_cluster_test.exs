defmodule Jido.Distributed.MonitorClusterTest do
  use Jido.Distributed.ClusterCase

  alias Jido.Distributed.Monitor

  @moduletag timeout: 120_000

  defp subscribe(node), do: Jido.Distributed.Test.TopologyRelay.start(node, self())

  defp status(on, node), do: Cluster.rpc(on, Monitor, :status, [node])

  defp os_pid(node), do: Cluster.rpc(node, :os, :getpid, []) |> List.to_string()

  defp all_up(nodes) do
    for a <- nodes, b <- nodes, a != b do
      eventually("#{b} up on #{a}", fn -> status(a, b) == :up end)
    end
  end

  test "a hung peer is unreachable within a second, routed around, and recovers when it resumes" do
    [a, b, c] = nodes = start_cluster(3)
    all_up(nodes)
    subscribe(a)

    pid = os_pid(c)
    {_, 0} = System.cmd("kill", ["-STOP", pid])
    stopped = System.monotonic_time(:millisecond)

    try do
      assert_receive {:topology, ^a, {:unreachable, ^c}}, 3_000
      detect_ms = System.monotonic_time(:millisecond) - stopped
      assert detect_ms < 2_000
      assert status(a, c) == :unreachable
      assert Cluster.rpc(a, Jido.Router, :routing_weights, [])[c] == :infinity
      # b is not accused.
      assert status(a, b) == :up
    after
      System.cmd("kill", ["-CONT", pid])
    end

    assert_receive {:topology, ^a, {:recovered, ^c}}, 5_000
    assert status(a, c) == :up
    refute Map.has_key?(Cluster.rpc(a, Jido.Router, :routing_weights, []), c)
    refute_received {:topology, ^a, {_, ^b}}
  end

  test "a short pause accuses nobody" do
    [a, _b, c] = nodes = start_cluster(3)
    all_up(nodes)
    subscribe(a)
    pid = os_pid(c)
    {_, 0} = System.cmd("kill", ["-STOP", pid])
    Process.sleep(60)
    {_, 0} = System.cmd("kill", ["-CONT", pid])
    Process.sleep(1_000)
    refute_received {:topology, ^a, {:unreachable, ^c}}
    assert status(a, c) == :up
  end

  test "a cut connection is down at once and up again after the heal" do
    [a, b] = nodes = start_cluster(2)
    all_up(nodes)
    subscribe(a)
    Cluster.partition(a, b)
    assert_receive {:topology, ^a, {:node_down, ^b}}, 5_000
    assert status(a, b) == :down
    Cluster.heal(a, b)
    assert_receive {:topology, ^a, {:node_up, ^b}}, 5_000
    eventually("#{b} up on #{a}", fn -> status(a, b) == :up end)
  end

  test "the latency matrix has every node's row with measured RTTs" do
    [a, b, c] = nodes = start_cluster(3)
    all_up(nodes)

    matrix =
      eventually("full matrix on #{a}", fn ->
        m = Cluster.rpc(a, Monitor, :latency_matrix, [])
        Enum.all?(nodes, &(map_size(get_in(m, [&1, :row]) || %{}) >= 2)) && m
      end)

    for n <- nodes do
      assert %{row: row, age_ms: age} = matrix[n]
      assert age < 5_000
      assert Enum.all?(Enum.reject(nodes, &(&1 == n)), &(is_float(row[&1]) and row[&1] > 0))
    end

    details = Cluster.rpc(a, Monitor, :stats, [])
    assert details.peers[b].udp and details.peers[c].udp
    # Classes come from 3 RTT samples (one a second).
    eventually("a measured class", fn -> Cluster.rpc(a, Monitor, :class, [b]) end, 15_000)
    assert Cluster.rpc(a, Monitor, :class, [b]) in [:same_zone, :same_region, :remote]
  end

  test "garbage over distribution and UDP changes a counter, nothing else" do
    [a, b] = nodes = start_cluster(2)
    all_up(nodes)
    server = Cluster.rpc(a, Process, :whereis, [Monitor.Server])
    before = Cluster.rpc(a, Monitor, :stats, [])

    garbage = [
      :garbage,
      {:jido_mon, :hello, "b", 1, true},
      {:jido_mon, :row, b, %{x: -1}},
      {:jido_mon, :pong, b, make_ref(), :x},
      {:jido_mon, :probe_ack, b, :ref, b, 1}
    ]

    # Well-formed but from a node not connected: dropped without a word.
    Cluster.rpc(b, :erlang, :send, [
      {Monitor.Server, a},
      {:jido_mon, :hello, :"nobody@nowhere.invalid", 4000, true}
    ])

    # Sent from b, as another node would.
    for msg <- garbage,
        do: Cluster.rpc(b, :erlang, :send, [{Monitor.Server, a}, msg])

    {:ok, sock} = :gen_udp.open(0, [:binary])

    for bin <- [<<>>, "JH", :crypto.strong_rand_bytes(64), <<"JH", 1, 0::64, 3, "a@b", 0>>],
        do: :gen_udp.send(sock, {127, 0, 0, 1}, before.port, bin)

    :gen_udp.close(sock)

    eventually("malformed counted", fn ->
      Cluster.rpc(a, Monitor, :stats, []).malformed - before.malformed == length(garbage) + 4
    end)

    assert Cluster.rpc(a, Process, :whereis, [Monitor.Server]) == server
    assert status(a, b) == :up
  end

  test "a Link holds signals while its node is unreachable and delivers them once on recovery" do
    alias Jido.Distributed.Test.{Collector, Load}
    [a, c] = nodes = start_cluster(2)
    all_up(nodes)
    subscribe(a)
    collectors = for _ <- 1..2, do: Collector.start(c)
    Load.spawn_sender(a, collectors, :s, 5_000, self(), every: 100, pause_ms: 5)
    Process.sleep(100)
    pid = os_pid(c)
    {_, 0} = System.cmd("kill", ["-STOP", pid])

    try do
      assert_receive {:topology, ^a, {:unreachable, ^c}}, 3_000
      frames = fn -> Cluster.rpc(a, Jido.Distributed, :stats, []).links[c].frames end
      before = frames.()
      Process.sleep(500)
      # Nothing is sent into the silent connection meanwhile.
      assert frames.() == before
    after
      System.cmd("kill", ["-CONT", pid])
    end

    assert_receive {:topology, ^a, {:recovered, ^c}}, 5_000
    assert_receive {:sender_done, :s, _}, 60_000
    assert {:ok, _} = Collector.await_total(collectors, 5_000, 30_000)
    Process.sleep(200)
    reports = Enum.map(collectors, &Collector.report/1)
    assert Enum.sum(Enum.map(reports, & &1.received)) == 5_000
    assert Enum.sum(Enum.map(reports, & &1.distinct)) == 5_000
    assert Enum.all?(reports, &(&1.violations == 0))
  end

  test "traffic per node: signals and bytes per second, in and out" do
    alias Jido.Distributed.Test.{Collector, Load}
    env = [monitor: [gossip_ms: 500]]
    [a, b] = nodes = start_cluster(2, env: env)
    all_up(nodes)
    collector = Collector.start(b)
    # About 2,000 signals a second for 3 s.
    Load.spawn_sender(a, [collector], :t, 6_000, self(), every: 20, pause_ms: 10)

    eventually("rates on both ends", fn ->
      out = Cluster.rpc(a, Jido.Distributed, :stats, []).traffic[b]
      inn = Cluster.rpc(b, Jido.Distributed, :stats, []).traffic[a]

      out && inn && out.signals_out_per_s > 100 && out.bytes_out_per_s > 1_000 &&
        inn.signals_in_per_s > 100 && inn.bytes_in_per_s > 1_000
    end)

    assert_receive {:sender_done, :t, _}, 30_000
  end

  test "a node whose heartbeat port is taken still runs its Monitor, over distribution" do
    {:ok, taken} = :gen_udp.open(0, [:binary])
    {:ok, port} = :inet.port(taken)

    try do
      [a] = start_cluster([[name: :noudp, env: [monitor: [udp_port: port]]]])
      [b] = start_cluster(1)
      all_up([a, b])
      assert Cluster.rpc(a, Monitor, :stats, []).port == 0
      # b learns that a has no socket: its heartbeats to a go over distribution.
      refute Cluster.rpc(b, Monitor, :stats, []).peers[a].udp
    after
      :gen_udp.close(taken)
    end
  end
end

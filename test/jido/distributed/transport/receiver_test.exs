defmodule Jido.Distributed.Transport.ReceiverTest do
  use Jido.Distributed.ClusterCase

  alias Jido.Distributed.Test.{Collector, Load}
  alias Jido.Distributed.Transport.Receiver

  @moduletag timeout: 240_000

  defp kill_receiver(node) do
    pid = Cluster.rpc(node, Process, :whereis, [Receiver])
    Cluster.rpc(node, Process, :exit, [pid, :kill])
    pid
  end

  defp await_new_receiver(node, old) do
    Enum.find_value(1..500, fn _ ->
      case Cluster.rpc(node, Process, :whereis, [Receiver]) do
        pid when is_pid(pid) and pid != old -> pid
        _ -> Process.sleep(10) && nil
      end
    end) || flunk("no new Receiver on #{node}")
  end

  defp totals(collectors) do
    reports = Enum.map(collectors, &Collector.report/1)

    %{
      received: reports |> Enum.map(& &1.received) |> Enum.sum(),
      distinct: reports |> Enum.map(& &1.distinct) |> Enum.sum(),
      violations: reports |> Enum.map(& &1.violations) |> Enum.sum()
    }
  end

  test "a Receiver killed at any instant of a 10,000-signal replay loses, repeats and reorders nothing" do
    [a, b] = start_cluster(2)
    collectors = for _ <- 1..4, do: Collector.start(b)

    # b is known to a (a link exists) before the first partition.
    warmup = %{id: "w", type: "t", data: %{sender: :warmup, seq: 1}}
    assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [hd(collectors), warmup])
    assert {:ok, _} = Collector.await_total(collectors, 1, 10_000)

    # Kill offsets into the replay, in ms. Each round lasts at least 2 s so
    # the kills stay within the supervisor's restart intensity.
    offsets = [0, 1, 3, 5, 8, 12, 18, 25]
    per_round = 10_000

    for {offset, round} <- Enum.with_index(offsets) do
      started = System.monotonic_time(:millisecond)
      Cluster.partition(a, b)
      Load.spawn_sender(a, collectors, {:round, round}, per_round, self())
      assert_receive {:sender_done, {:round, ^round}, _}, 60_000

      Cluster.heal(a, b)
      Process.sleep(offset)
      old = kill_receiver(b)
      await_new_receiver(b, old)

      expected = 1 + per_round * (round + 1)
      assert {:ok, _} = Collector.await_total(collectors, expected, 60_000)
      elapsed = System.monotonic_time(:millisecond) - started
      Process.sleep(max(2_000 - elapsed, 0))
    end

    # Stragglers (duplicates, if any) would show up within this pause.
    Process.sleep(500)
    total = 1 + per_round * length(offsets)
    assert totals(collectors) == %{received: total, distinct: total, violations: 0}
  end

  test "a Receiver killed again and again in quick succession still loses and repeats nothing" do
    [a, b] = start_cluster(2)
    collectors = for _ <- 1..4, do: Collector.start(b)
    store = Cluster.rpc(b, Process, :whereis, [Jido.Distributed.Transport.LinkStore])
    Load.spawn_sender(a, collectors, :burst, 20_000, self(), every: 500, pause_ms: 10)

    # Ten kills 100 ms apart: far beyond a default restart intensity.
    for _ <- 1..10 do
      Process.sleep(100)
      old = kill_receiver(b)
      await_new_receiver(b, old)
    end

    assert_receive {:sender_done, :burst, _}, 60_000
    assert {:ok, _} = Collector.await_total(collectors, 20_000, 60_000)
    Process.sleep(500)
    assert totals(collectors) == %{received: 20_000, distinct: 20_000, violations: 0}
    # The state the Receiver keeps outside itself was never restarted with it.
    assert Cluster.rpc(b, Process, :whereis, [Jido.Distributed.Transport.LinkStore]) == store
  end

  test "counters and sessions survive a Receiver restart" do
    [a, b] = start_cluster(2)
    collector = Collector.start(b)

    for seq <- 1..50 do
      signal = %{id: "#{seq}", type: "t", data: %{sender: :a, seq: seq}}
      assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [collector, signal])
    end

    assert {:ok, _} = Collector.await_total([collector], 50, 10_000)
    before = Cluster.rpc(b, Receiver, :stats, [])
    assert before.counters.signals == 50
    assert before.counters.frames > 0
    assert %{^a => %{delivered: delivered}} = before.origins
    assert delivered > 0

    old = kill_receiver(b)
    await_new_receiver(b, old)

    after_ = Cluster.rpc(b, Receiver, :stats, [])
    assert after_.counters.signals == 50
    assert after_.counters.frames == before.counters.frames
    assert after_.origins == before.origins

    # And it goes on counting from there.
    signal = %{id: "51", type: "t", data: %{sender: :a, seq: 51}}
    assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [collector, signal])
    assert {:ok, _} = Collector.await_total([collector], 51, 10_000)
    assert Cluster.rpc(b, Receiver, :stats, []).counters.signals == 51
  end

  test "the session of an origin that stays down is forgotten, one that comes back is kept" do
    env = [receiver: [session_grace_ms: 200, session_ttl_ms: 1_500]]
    [a, b, c] = start_cluster(3, env: env)
    collector = Collector.start(c)

    for {node, seq} <- [{a, 1}, {b, 1}] do
      signal = %{id: "#{node}", type: "t", data: %{sender: node, seq: seq}}
      assert :ok = Cluster.rpc(node, Jido.Distributed, :send, [collector, signal])
    end

    assert {:ok, _} = Collector.await_total([collector], 2, 10_000)
    origins = Cluster.rpc(c, Receiver, :stats, []).origins
    assert Map.has_key?(origins, a) and Map.has_key?(origins, b)

    # a goes away for good; b is cut and healed within the ttl.
    Cluster.stop_nodes([a])
    Cluster.partition(b, c)
    Process.sleep(600)
    Cluster.heal(b, c)

    forgotten =
      Enum.find_value(1..100, fn _ ->
        origins = Cluster.rpc(c, Receiver, :stats, []).origins
        if not Map.has_key?(origins, a), do: origins, else: Process.sleep(100) && nil
      end)

    assert forgotten, "the session of #{a} was never forgotten"
    assert Map.has_key?(forgotten, b)

    # b's stream goes on exactly once.
    signal = %{id: "b2", type: "t", data: %{sender: b, seq: 2}}
    assert :ok = Cluster.rpc(b, Jido.Distributed, :send, [collector, signal])
    assert {:ok, _} = Collector.await_total([collector], 3, 10_000)
    Process.sleep(200)
    assert %{received: 3, distinct: 3, violations: 0} = Collector.report(collector)
  end
end

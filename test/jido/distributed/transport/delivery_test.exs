defmodule Jido.Distributed.Transport.DeliveryTest do
  use Jido.Distributed.ClusterCase

  alias Jido.Distributed.Test.{Collector, Load}
  alias Jido.Distributed.Transport.{Receiver, Wire}

  @moduletag timeout: 180_000

  defp start_collectors(nodes, per_node) do
    for node <- nodes, _ <- 1..per_node, do: Collector.start(node)
  end

  defp run_senders(sender_nodes, per_node, targets, count, opts \\ []) do
    for node <- sender_nodes, i <- 1..per_node do
      id = {node, i}
      Load.spawn_sender(node, targets, id, count, self(), opts)
      id
    end
  end

  defp await_senders(ids, timeout) do
    for id <- ids do
      assert_receive {:sender_done, ^id, _}, timeout
    end
  end

  defp assert_exactly_once_in_order(collectors, expected) do
    {status, _} = Collector.await_total(collectors, expected, 60_000)
    # Give stragglers (duplicates, if any) a moment to show up.
    Process.sleep(300)
    reports = Enum.map(collectors, &Collector.report/1)
    received = reports |> Enum.map(& &1.received) |> Enum.sum()
    distinct = reports |> Enum.map(& &1.distinct) |> Enum.sum()
    violations = reports |> Enum.map(& &1.violations) |> Enum.sum()
    assert status == :ok, "only #{received} of #{expected} delivered"
    assert received == expected
    assert distinct == expected
    assert violations == 0
  end

  test "100,000 signals from 4 senders on 2 nodes reach 50 targets on 3 nodes exactly once, in order" do
    [s1, s2, r1, r2, r3] = start_cluster(5)
    collectors = start_collectors([r1, r2, r3], 17) |> Enum.take(50)
    ids = run_senders([s1, s2], 2, collectors, 25_000)
    await_senders(ids, 120_000)
    assert_exactly_once_in_order(collectors, 100_000)

    # Batching really happened: far fewer frames than signals.
    stats = Cluster.rpc(s1, Jido.Distributed, :stats, [])
    frames = stats.links |> Map.values() |> Enum.map(& &1.frames) |> Enum.sum()
    signals = stats.links |> Map.values() |> Enum.map(& &1.signals) |> Enum.sum()
    assert signals == 50_000
    assert frames < signals / 5
  end

  test "exactly once and in order while one destination link is cut and healed twice" do
    [s1, s2, r1, r2, r3] = start_cluster(5)
    collectors = start_collectors([r1, r2, r3], 17) |> Enum.take(50)
    # Paced so that the partitions land in the middle of the stream.
    ids = run_senders([s1, s2], 2, collectors, 25_000, every: 500, pause_ms: 20)

    for _ <- 1..2 do
      Process.sleep(400)
      Cluster.partition(s1, r1)
      Process.sleep(400)
      Cluster.heal(s1, r1)
    end

    await_senders(ids, 120_000)
    assert_exactly_once_in_order(collectors, 100_000)

    link = Cluster.rpc(s1, Jido.Distributed, :stats, []).links[r1]
    assert link.retransmits > 0 or link.buffer.next_seq > 1
    assert link.dropped == 0 and link.rejected == 0
  end

  test "under :reject a full buffer refuses signals and loses none it accepted" do
    [a, b] = start_cluster(2, env: [link: [max_buffer_entries: 1_000, overflow: :reject]])
    collector = Collector.start(b)
    Cluster.partition(a, b)

    results =
      for seq <- 1..1_500 do
        signal = %{id: "#{seq}", type: "t", data: %{sender: :a, seq: seq}}
        Cluster.rpc(a, Jido.Distributed, :send, [collector, signal])
      end

    assert Enum.count(results, &(&1 == :ok)) == 1_000
    assert Enum.count(results, &(&1 == {:error, :buffer_full})) == 500
    assert Enum.take(results, 1_000) |> Enum.all?(&(&1 == :ok))

    link = Cluster.rpc(a, Jido.Distributed, :stats, []).links[b]
    assert link.rejected == 500
    assert link.buffer.pending_entries + link.buffer.unacked_entries == 1_000

    Cluster.heal(a, b)
    assert_exactly_once_in_order([collector], 1_000)
  end

  test "under :drop_oldest a full buffer drops the oldest signals and reports them" do
    [a, b] = start_cluster(2, env: [link: [max_buffer_entries: 100, overflow: :drop_oldest]])
    collector = Collector.start(b)
    Cluster.partition(a, b)

    for seq <- 1..150 do
      signal = %{id: "#{seq}", type: "t", data: %{sender: :a, seq: seq}}
      assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [collector, signal])
    end

    assert Cluster.rpc(a, Jido.Distributed, :stats, []).links[b].dropped == 50
    Cluster.heal(a, b)
    {:ok, _} = Collector.await_total([collector], 100, 30_000)
    Process.sleep(200)
    report = Collector.report(collector)
    assert report.received == 100 and report.distinct == 100 and report.violations == 0
  end

  test "garbage sent straight to a Receiver changes nothing but a counter" do
    [a, b] = start_cluster(2)
    collector = Collector.start(b)
    signal = %{id: "1", type: "t", data: %{sender: :a, seq: 1}}
    assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [collector, signal])
    {:ok, _} = Collector.await_total([collector], 1, 10_000)

    receiver = Cluster.rpc(b, Process, :whereis, [Receiver])
    before = Cluster.rpc(b, Receiver, :stats, [])
    {:ok, valid_frame} = Jido.Distributed.Frame.encode([{collector, {:signal, :x}}])

    # Frames claim to come from a process on `a` (the origin is the node
    # of the sending Link's pid).
    link = Cluster.rpc(a, :erlang, :self, [])
    %{epoch: epoch, delivered: delivered} = before.origins[a]

    garbage = [
      :garbage,
      Wire.frame(link, 1, 1, 1, "not a frame", []),
      Wire.frame(link, epoch, delivered + 1, 1, binary_part(valid_frame, 0, 20), []),
      {:jido_frame, "a", :x, -1, 0, 42, []},
      {:jido_frame, a, 1, 1, 1, "origin instead of the Link's pid", []},
      {:jido_frame, link, 1, 1, 1, "old shape"},
      {:jido_ack, 1, 2, 3, 4},
      Wire.ack(1, 2, false)
    ]

    for msg <- garbage, do: send({Receiver, b}, msg)
    Process.sleep(300)

    after_ = Cluster.rpc(b, Receiver, :stats, [])
    assert Cluster.rpc(b, Process, :whereis, [Receiver]) == receiver
    assert after_.counters.malformed - before.counters.malformed == length(garbage)
    assert after_.origins == before.origins

    assert Map.delete(after_.counters, :malformed) ==
             Map.delete(before.counters, :malformed)
             |> Map.put(:acks_sent, after_.counters.acks_sent)

    assert Collector.report(collector).received == 1

    # It still delivers afterwards.
    signal2 = %{id: "2", type: "t", data: %{sender: :a, seq: 2}}
    assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [collector, signal2])
    assert {:ok, _} = Collector.await_total([collector], 2, 10_000)
  end

  test "acks go straight to the sending Link, not through its node's Receiver" do
    [a, b] = start_cluster(2)
    collector = Collector.start(b)
    # With the sender's own Receiver suspended, acks still release the frames.
    receiver_a = Cluster.rpc(a, Process, :whereis, [Receiver])
    :ok = Cluster.rpc(a, :sys, :suspend, [receiver_a])

    try do
      for seq <- 1..20 do
        signal = %{id: "#{seq}", type: "t", data: %{sender: :a, seq: seq}}
        assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [collector, signal])
      end

      assert {:ok, _} = Collector.await_total([collector], 20, 10_000)

      assert wait_until(fn ->
               link = Cluster.rpc(a, Jido.Distributed, :stats, []).links[b]
               link.acks > 0 and link.buffer.unacked_frames == 0
             end)
    after
      Cluster.rpc(a, :sys, :resume, [receiver_a])
    end
  end

  defp wait_until(fun, deadline_ms \\ 15_000) do
    cond do
      fun.() ->
        true

      deadline_ms <= 0 ->
        false

      true ->
        Process.sleep(50)
        wait_until(fun, deadline_ms - 50)
    end
  end

  test "a lone signal on an idle link goes out at once, without waiting for the linger time" do
    [a, b] = start_cluster(2, env: [link: [linger_ms: 60_000]])
    collector = Collector.start(b)
    # A started link whose flushes had nothing to send is still idle.
    Cluster.rpc(a, Jido.Distributed.Transport.Link, :ensure_started, [b])
    :ok = Cluster.rpc(a, Jido.Distributed, :flush, [b])
    signal = %{id: "1", type: "t", data: %{sender: :a, seq: 1}}
    assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [collector, signal])
    # It arrives long before the 60 s linger could expire.
    assert {:ok, _} = Collector.await_total([collector], 1, 10_000)
  end

  test "a Link that crashes mid-stream loses and duplicates nothing" do
    [a, b] = start_cluster(2)
    collectors = start_collectors([b], 5)
    [id] = run_senders([a], 1, collectors, 20_000, every: 200, pause_ms: 5)

    for _ <- 1..3 do
      Process.sleep(150)
      # The Link restarted by the last kill may not have registered yet.
      pid =
        Enum.find_value(1..200, fn _ ->
          Cluster.rpc(a, Jido.Distributed.Transport.LinkStore, :link_pid, [b]) ||
            (Process.sleep(5) && nil)
        end)

      Cluster.rpc(a, Process, :exit, [pid, :kill])
    end

    await_senders([id], 120_000)
    assert_exactly_once_in_order(collectors, 20_000)
  end

  test "signals carrying atoms the receiving node has never seen are delivered" do
    [a, b] = start_cluster(2)
    collector = Collector.start(b)
    fresh = "jido_fresh_atom_#{System.unique_integer([:positive])}"

    # Create the atom on `a` only, then send a signal with it from there.
    key = Cluster.rpc(a, String, :to_atom, [fresh])
    signal = %{id: "1", type: "t", data: %{sender: :a, seq: 1, extra: key}}
    assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [collector, signal])
    assert {:ok, [%{received: 1}]} = Collector.await_total([collector], 1, 10_000)
    assert Cluster.rpc(b, Jido.Distributed, :stats, []).receiver.counters.malformed == 0
  end
end

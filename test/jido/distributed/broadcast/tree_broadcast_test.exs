defmodule Jido.Distributed.TreeBroadcastTest do
  # 16 peers labelled with 3 regions and 5 zones; nothing here stops a node.
  use Jido.Distributed.ClusterCase

  import Jido.Distributed.Test.BroadcastHelpers

  alias Jido.Distributed.Routing.Location
  alias Jido.Distributed.TreeBroadcast
  alias Jido.Distributed.Test.Traffic

  @layout [
    {"eu", "a", 4},
    {"eu", "b", 3},
    {"us", "a", 3},
    {"us", "b", 3},
    {"ap", "a", 3}
  ]
  setup_all do
    specs =
      for {{region, zone, count}, g} <- Enum.with_index(@layout), i <- 1..count do
        [name: :"bc#{g}_#{i}", location: [region: region, zone: zone]]
      end

    nodes = start_cluster(specs)
    # Warm each root's label cache, so later broadcasts make no look-ups.
    for root <- nodes, do: {:ok, _} = broadcast(root, signal("warm.up", 0), nodes: nodes)
    %{nodes: nodes}
  end

  test "every subscriber on every node gets each broadcast exactly once", %{nodes: nodes} do
    all = collectors(nodes, "order.**")
    added = collectors(nodes, "order.*.added")

    results =
      for seq <- 1..12 do
        root = Enum.at(nodes, rem(seq * 5, length(nodes)))
        type = if rem(seq, 2) == 0, do: "order.item.added", else: "order.placed"
        broadcast(root, signal(type, seq), nodes: nodes)
      end

    assert Enum.all?(results, &(&1 == {:ok, %{delivered: 16, missing: []}}))

    for {collectors, count} <- [{all, 12}, {added, 6}] do
      reports = await_each(collectors, count)
      Process.sleep(100)

      for {node, pid} <- collectors do
        report = Jido.Distributed.Test.Collector.report(pid)
        assert {node, report.received, report.distinct} == {node, count, count}
        assert reports[node].received == count
      end
    end

    stop(all)
    stop(added)
  end

  test "broadcasts queued together travel as one frame per child, in order, once each",
       %{nodes: nodes} do
    [root | _] = nodes
    subs = collectors(nodes, "batch.**")
    before = snapshot(nodes)

    # Queued while the root's broadcast process is suspended: one batch.
    :ok = Cluster.rpc(root, :sys, :suspend, [TreeBroadcast])

    ids =
      for seq <- 1..20 do
        {:ok, id} =
          Cluster.rpc(root, TreeBroadcast, :broadcast, [
            signal("batch.item", seq),
            [nodes: nodes, await: false]
          ])

        id
      end

    :ok = Cluster.rpc(root, :sys, :resume, [TreeBroadcast])

    for id <- ids,
        do:
          assert(
            {:ok, %{delivered: 16, missing: []}} =
              Cluster.rpc(root, TreeBroadcast, :await, [id, 10_000])
          )

    reports = await_each(subs, 20)
    after_ = snapshot(nodes)

    for {node, report} <- reports do
      assert {node, report.received, report.distinct, report.violations} == {node, 20, 20, 0}
    end

    forwarded =
      Map.new(nodes, &{&1, after_[&1].counters.forwarded - before[&1].counters.forwarded})

    # One frame per child for all 20 broadcasts, everywhere in the tree.
    assert forwarded[root] == 4
    assert Enum.sum(Map.values(forwarded)) == 15
    assert after_[root].counters.batches - before[root].counters.batches == 1
    assert after_[root].counters.started - before[root].counters.started == 20
    stop(subs)
  end

  test "the root sends at most fanout frames; so does every node", %{nodes: nodes} do
    [root | _] = nodes
    others = nodes -- [root]
    subs = collectors(nodes, "count.**")
    before = snapshot(nodes)
    dist_before = Cluster.rpc(root, Traffic, :dist_sent, [others])

    assert {:ok, %{delivered: 16, missing: []}} =
             broadcast(root, signal("count.me", 1), nodes: nodes)

    dist_after = Cluster.rpc(root, Traffic, :dist_sent, [others])
    after_ = snapshot(nodes)
    await_each(subs, 1)

    forwarded =
      Map.new(nodes, &{&1, after_[&1].counters.forwarded - before[&1].counters.forwarded})

    assert forwarded[root] == 4
    assert Enum.all?(forwarded, fn {_, n} -> n <= 4 end)
    # Every other node got exactly one frame.
    assert Enum.sum(Map.values(forwarded)) == 15
    assert after_[root].counters.started - before[root].counters.started == 1

    # The root's distribution sockets: its 4 frames, nothing per member.
    # Other traffic (ticks) may add a packet or two.
    packets = dist_after.packets - dist_before.packets
    assert packets >= 4 and packets <= 6, "root sent #{packets} packets"

    # Naive broadcast from the same root for comparison: one send per node.
    naive_before = Cluster.rpc(root, Traffic, :dist_sent, [others])

    for {_, pid} <- Map.drop(subs, [root]),
        do: Cluster.rpc(root, :erlang, :send, [pid, {:signal, signal("count.naive", 2)}])

    naive_after = Cluster.rpc(root, Traffic, :dist_sent, [others])
    assert naive_after.packets - naive_before.packets >= 15
    stop(subs)
  end

  test "a broadcast crosses into each region and each zone once", %{nodes: nodes} do
    labels = Map.new(nodes, &{&1, Location.of(&1)})
    regions = labels |> Map.values() |> Enum.map(& &1.region) |> Enum.uniq()
    zones = labels |> Map.values() |> Enum.map(&{&1.region, &1.zone}) |> Enum.uniq()
    assert {length(regions), length(zones)} == {3, 5}

    for root <- [hd(nodes), List.last(nodes)] do
      before = snapshot(nodes)

      assert {:ok, %{delivered: 16, missing: []}} =
               broadcast(root, signal("region.check", 1), nodes: nodes)

      edges = send_edges(before, snapshot(nodes))
      assert Enum.sum(for {_, _, n} <- edges, do: n) == 15

      cross_region = for {a, b, n} <- edges, labels[a].region != labels[b].region, do: n

      cross_zone =
        for {a, b, n} <- edges,
            {labels[a].region, labels[a].zone} != {labels[b].region, labels[b].zone},
            do: n

      assert Enum.sum(cross_region) == length(regions) - 1
      assert Enum.sum(cross_zone) == length(zones) - 1
    end
  end

  test "a hung interior node is routed around; it delivers once when it resumes",
       %{nodes: nodes} do
    root = Enum.at(nodes, 3)
    tree = plan(root, nodes)
    [hung | _] = interior(tree)
    {^hung, below} = find_subtree(tree, hung)
    subs = collectors(nodes, "hang.**")
    Cluster.rpc(hung, :sys, :suspend, [Jido.Distributed.TreeBroadcast])

    try do
      started = System.monotonic_time(:millisecond)
      assert {:ok, result} = broadcast(root, signal("hang.on", 1), tree: tree, timeout: 20_000)
      elapsed = System.monotonic_time(:millisecond) - started
      assert result == %{delivered: 15, missing: [hung]}
      # Given up after the ack timeout (1 s), not the broadcast timeout.
      assert elapsed < 10_000, "took #{elapsed} ms"

      # Everyone else, the hung node's children included, has it.
      reports = await_each(Map.delete(subs, hung), 1)
      assert Enum.all?(reports, fn {_, r} -> r.received == 1 end)
      assert below != []
    after
      Cluster.rpc(hung, :sys, :resume, [Jido.Distributed.TreeBroadcast])
    end

    # Resumed, the hung node delivers once; its children drop the repeat.
    reports = await_each(subs, 1)
    Process.sleep(200)

    for {node, pid} <- subs do
      report = Jido.Distributed.Test.Collector.report(pid)
      assert {node, report.received, report.distinct} == {node, 1, 1}
      assert reports[node].received == 1
    end

    dup = Enum.sum(for {child, _} <- below, do: stats(child).counters.duplicates)
    assert dup >= length(below)
    stop(subs)
  end

  defp find_subtree({node, _} = tree, node), do: tree

  defp find_subtree({_, subtrees}, node),
    do: Enum.find_value(subtrees, &find_subtree(&1, node))
end

defmodule Jido.Distributed.TreeBroadcastFailureTest do
  # 16 unlabelled peers; tests stop nodes, so each works on the live ones.
  use Jido.Distributed.ClusterCase

  import Jido.Distributed.Test.BroadcastHelpers

  setup_all do
    # A long ack timeout: only a node going down (or not being connected)
    # can make a parent give up on a child quickly.
    %{nodes: start_cluster(16, env: [broadcast: [ack_timeout_ms: 10_000]])}
  end

  defp live(nodes), do: Enum.filter(nodes, &(&1 in Node.list()))

  test "with 3 interior nodes stopped, every live node receives; missing names them",
       %{nodes: nodes} do
    [root | _] = members = live(nodes)
    tree = plan(root, members)
    dead = tree |> interior() |> Enum.take(3)
    assert length(dead) == 3
    alive = members -- dead
    subs = collectors(alive, "fail.**")
    Cluster.stop_nodes(dead)
    await_disconnected(alive, dead)

    # Along the tree planned while they were up: their parents find them
    # unconnected and send to their children themselves.
    started = System.monotonic_time(:millisecond)

    assert {:ok, %{delivered: delivered, missing: missing}} =
             broadcast(root, signal("fail.one", 1), tree: tree)

    assert missing == Enum.sort(dead)
    assert delivered == length(alive)
    assert System.monotonic_time(:millisecond) - started < 5_000

    # Planned now: the dead are known unconnected, so they are leaves.
    assert {:ok, %{delivered: ^delivered, missing: ^missing}} =
             broadcast(root, signal("fail.two", 2), nodes: members)

    reports = await_each(subs, 2)
    Process.sleep(100)

    for {node, pid} <- subs do
      report = Jido.Distributed.Test.Collector.report(pid)
      assert {node, report.received, report.distinct} == {node, 2, 2}
      assert reports[node].received == 2
    end

    adopted = Enum.sum(for n <- alive, do: stats(n).counters.adopted)
    assert adopted >= 3
    stop(subs)
  end

  test "a child whose node goes down mid-broadcast is given up at once", %{nodes: nodes} do
    [root | _] = members = live(nodes)
    tree = plan(root, members)
    [victim | _] = interior(tree)
    alive = members -- [victim]
    subs = collectors(alive, "down.**")
    Cluster.rpc(victim, :sys, :suspend, [Jido.Distributed.TreeBroadcast])

    {:ok, id} = broadcast(root, signal("down.now", 1), tree: tree, await: false)
    Process.sleep(100)
    started = System.monotonic_time(:millisecond)
    Cluster.stop_nodes([victim])

    assert {:ok, %{delivered: delivered, missing: [^victim]}} =
             Cluster.rpc(root, Jido.Distributed.TreeBroadcast, :await, [id, 8_000], 10_000)

    assert delivered == length(alive)
    # Well before the 10 s ack timeout.
    assert System.monotonic_time(:millisecond) - started < 5_000

    reports = await_each(subs, 1)
    assert Enum.all?(reports, fn {_, r} -> r.received == 1 and r.distinct == 1 end)
    stop(subs)
  end
end

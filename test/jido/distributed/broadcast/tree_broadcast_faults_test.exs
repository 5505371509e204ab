defmodule Jido.Distributed.TreeBroadcastFaultsTest do
  # Hostile messages and cut parent-child links, on real peers. Each test
  # starts and stops its own nodes.
  use Jido.Distributed.ClusterCase

  alias Jido.Distributed.{Frame, TreeBroadcast}
  alias Jido.Distributed.Test.Collector
  import Jido.Distributed.Test.BroadcastHelpers

  # Waits until every collector got `count` signals (or `timeout` passed),
  # then a little more so a duplicate would show; returns the reports.
  defp reports(collectors, count, timeout \\ 15_000) do
    await_each(collectors, count, timeout)
    Process.sleep(200)
    Map.new(collectors, fn {node, pid} -> {node, Collector.report(pid)} end)
  end

  defp received(reports), do: Map.new(reports, fn {n, r} -> {n, {r.received, r.distinct}} end)

  describe "hostile messages" do
    test "garbage sent to a relaying node is counted; the node keeps its state and the broadcast completes" do
      # A long ack timeout: the target is suspended while garbage queues up.
      [r, a, b, c, s] = nodes = start_cluster(5, env: [broadcast: [ack_timeout_ms: 20_000]])
      tree = {r, [{a, [{b, []}, {c, []}]}, {s, []}]}
      subs = collectors(nodes, "hostile.**")
      pid = Cluster.rpc(a, Process, :whereis, [TreeBroadcast])
      before = stats(a).counters
      :ok = Cluster.rpc(a, :sys, :suspend, [TreeBroadcast])

      {:ok, id} =
        broadcast(r, signal("hostile.one", 1), tree: tree, await: false, timeout: 30_000)

      {:ok, frame, atoms} = Frame.encode_with_atoms([signal("hostile.garbage", 0)])
      gid = fn -> {s, 7, System.unique_integer([:positive])} end

      bcast = fn parent, atoms, subtree, budget ->
        {:jido_bcast, gid.(), parent, frame, atoms, subtree, budget}
      end

      garbage = [
        # The three of the issue: a non-node entry in the subtree, a child
        # given as a string, an unreachable child with malformed grandchildren.
        bcast.(s, atoms, {a, [:not_a_subtree]}, 5_000),
        bcast.(s, atoms, {a, [{"c@somewhere", []}]}, 5_000),
        bcast.(s, atoms, {a, [{:gone@nohost, [{1, 2}, "x"]}]}, 5_000),
        # The same with the id of the broadcast in flight.
        {:jido_bcast, id, s, frame, atoms, {a, [{:gone@nohost, [:bad]}]}, 5_000},
        bcast.(~c"parent", atoms, {a, []}, 5_000),
        bcast.(s, [1, 2], {a, []}, 5_000),
        bcast.(s, [:a | :b], {a, []}, 5_000),
        bcast.(s, atoms, {a, []}, -1),
        bcast.(s, atoms, {a, []}, :soon),
        bcast.(s, atoms, {a, [{b, :tail}]}, 5_000),
        bcast.(s, atoms, chain(a, 10_000), 5_000),
        {:jido_bcast, {:no, :id}, s, frame, atoms, {a, []}, 5_000},
        {:jido_bcast, gid.(), s, :not_a_binary, atoms, {a, []}, 5_000},
        {:jido_bcast, gid.(), s, frame, atoms, {a, []}},
        {:jido_bcast_acks, s, [{:got, id} | :tail]},
        {:jido_bcast_acks, "s", []},
        {:jido_bcast_acks, s, [{:done, id, -5, [1]}]},
        {:jido_bcast_acks, s, [{:done, id, 1, [:x | :y]}]},
        {:jido_bcast_acks, s, [{:what, id}]},
        {:"$gen_cast", {:start, gid.(), %{id: 1, type: "x"}, 10, {a, [:bad]}, 1_000, 4}},
        {:"$gen_cast", :nonsense},
        {:"$gen_call", {self(), make_ref()}, :nonsense},
        {:"$gen_call", :not_a_caller, :stats},
        {:"$gen_call", :not_a_caller,
         {:start, gid.(), %{id: 1, type: "x"}, 10, {a, []}, 1_000, 4}},
        {:"$gen_call", {self(), make_ref()}, {:subscribe, self(), "x.*", :signal}},
        {:nodedown, "b"},
        :sweep,
        :prune,
        {:something, :else}
      ]

      for message <- garbage, do: Cluster.rpc(s, :erlang, :send, [{TreeBroadcast, a}, message])

      :ok = Cluster.rpc(a, :sys, :resume, [TreeBroadcast])

      assert {:ok, %{delivered: 5, missing: []}} =
               Cluster.rpc(r, TreeBroadcast, :await, [id, 30_000], 35_000)

      # Two calls were answered with an error, not a crash.
      assert_receive {_ref, {:error, :malformed}}
      assert_receive {_ref, {:error, :malformed}}

      assert Cluster.rpc(a, Process, :whereis, [TreeBroadcast]) == pid
      after_ = stats(a).counters
      assert after_.malformed - before.malformed == length(garbage)
      assert after_.received - before.received == 1

      # Every node delivered the one real broadcast once, and nothing else.
      assert received(reports(subs, 1)) == Map.new(nodes, &{&1, {1, 1}})

      # And the node still relays.
      assert {:ok, %{delivered: 5, missing: []}} =
               broadcast(r, signal("hostile.two", 2), tree: tree)

      assert Cluster.rpc(a, Process, :whereis, [TreeBroadcast]) == pid
    end
  end

  # A chain `depth` deep below `top`, of nodes that do not exist.
  defp chain(top, 0), do: {top, []}
  defp chain(top, depth), do: {top, [chain(:"d#{depth}@nohost", depth - 1)]}

  describe "a cut between a parent and a live child" do
    test "the child is reached through an ancestor that can reach it" do
      [r, q, p, c, d] = nodes = start_cluster(5)
      # c's parent p and grandparent q cannot reach it; the root can.
      tree = {r, [{q, [{p, [{c, [{d, []}]}]}]}]}
      subs = collectors(nodes, "cut.**")
      :ok = Cluster.partition(p, c)
      :ok = Cluster.partition(q, c)
      before = stats(r).counters

      assert {:ok, %{delivered: 5, missing: []}} =
               broadcast(r, signal("cut.one", 1), tree: tree, timeout: 10_000)

      # c's child d was sent to by p itself.
      assert received(reports(subs, 1)) == Map.new(nodes, &{&1, {1, 1}})
      assert stats(r).counters.retried - before.retried == 1
      assert stats(p).counters.handed_up >= 1
      assert stats(q).counters.handed_up >= 1
    end

    test "a slow child given up by its parent is retried by the root and counted once" do
      # p gives up on c after 500 ms; the root waits for c much longer.
      slow = [broadcast: [ack_timeout_ms: 500]]
      patient = [broadcast: [ack_timeout_ms: 30_000]]

      [r, p, c, d] =
        nodes =
        start_cluster([
          [name: :r, env: patient],
          [name: :p, env: slow],
          [name: :c, env: slow],
          [name: :d, env: slow]
        ])

      tree = {r, [{p, [{c, [{d, []}]}]}]}
      subs = collectors(nodes, "slow.**")
      :ok = Cluster.rpc(c, :sys, :suspend, [TreeBroadcast])

      {:ok, id} = broadcast(r, signal("slow.one", 1), tree: tree, await: false, timeout: 60_000)

      try do
        # p hands c up (and sends to d itself); the root tries c.
        eventually(fn -> stats(r).counters.retried == 1 end)
        assert stats(p).counters.handed_up == 1
      after
        Cluster.rpc(c, :sys, :resume, [TreeBroadcast])
      end

      # c then gets the frame from p (with d below it) and from the root
      # (alone), delivers once, and reports to both: the root counts c
      # once, p leaves it to the root, d is counted through p.
      assert {:ok, %{delivered: 4, missing: []}} =
               Cluster.rpc(r, TreeBroadcast, :await, [id, 60_000], 65_000)

      assert received(reports(subs, 1)) == Map.new(nodes, &{&1, {1, 1}})
    end

    test "a child cut from every node is missing; its children still receive" do
      [r, q, p, c, d] = nodes = start_cluster(5)
      tree = {r, [{q, [{p, [{c, [{d, []}]}]}]}]}
      subs = collectors(nodes, "cut.**")
      for other <- [r, q, p, d], do: :ok = Cluster.partition(other, c)

      assert {:ok, %{delivered: 4, missing: [^c]}} =
               broadcast(r, signal("cut.two", 1), tree: tree, timeout: 10_000)

      reports = reports(Map.delete(subs, c), 1)
      assert received(reports) == Map.new(nodes -- [c], &{&1, {1, 1}})
      assert Collector.report(subs[c]).received == 0
    end
  end
end

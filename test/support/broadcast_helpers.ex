defmodule Jido.Distributed.Test.BroadcastHelpers do
  @moduledoc """
  Helpers for tree broadcast tests on peer nodes: collectors subscribed on
  every node, waiting for their reports, broadcasting from a root.
  """

  alias Jido.Distributed.Test.{Cluster, Collector}
  alias Jido.Distributed.{TreeBroadcast, TreePlanner}

  @doc "Starts a collector on each node subscribed to `pattern`; returns `%{node => pid}`."
  def collectors(nodes, pattern) do
    Map.new(nodes, fn node ->
      pid = Collector.start(node)
      :ok = Cluster.rpc(node, TreeBroadcast, :subscribe, [pattern, [pid: pid]])
      {node, pid}
    end)
  end

  @doc "Stops collectors (their subscriptions go with them)."
  def stop(collectors), do: Enum.each(collectors, fn {_, pid} -> Collector.stop(pid) end)

  @doc "Waits until each collector got `count` signals; returns `%{node => report}` either way."
  def await_each(collectors, count, timeout \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    Stream.repeatedly(fn ->
      reports = Map.new(collectors, fn {node, pid} -> {node, Collector.report(pid)} end)

      if Enum.all?(reports, fn {_, r} -> r.received >= count end) or
           System.monotonic_time(:millisecond) > deadline do
        reports
      else
        Process.sleep(20)
        nil
      end
    end)
    |> Enum.find(& &1)
  end

  def signal(type, seq),
    do: %{id: "#{type}-#{seq}", type: type, data: %{sender: :bcast, seq: seq}}

  @doc "Broadcast from `root` (runs there)."
  def broadcast(root, signal, opts),
    do: Cluster.rpc(root, TreeBroadcast, :broadcast, [signal, opts], 30_000)

  def stats(node), do: Cluster.rpc(node, TreeBroadcast, :stats, [])

  @doc "The tree `root` would plan for `members` (same labels and health)."
  def plan(root, members, fanout \\ 4) do
    located = Cluster.rpc(root, TreeBroadcast, :located_members, [Enum.uniq([root | members])])
    {:ok, tree} = TreePlanner.plan(located, root, fanout: fanout)
    tree
  end

  @doc "Nodes with children, the root excepted."
  def interior({_root, subtrees}), do: Enum.flat_map(subtrees, &interior_nodes/1)

  defp interior_nodes({_node, []}), do: []
  defp interior_nodes({node, subtrees}), do: [node | Enum.flat_map(subtrees, &interior_nodes/1)]

  @doc "Per-node frame sends between two stats snapshots: `[{from, to, count}]`."
  def send_edges(before, after_) do
    for {node, stats} <- after_,
        {to, n} <- stats.sends,
        delta = n - Map.get(before[node].sends, to, 0),
        delta > 0,
        do: {node, to, delta}
  end

  @doc "Waits until no node of `nodes` lists any of `gone` as connected."
  def await_disconnected(nodes, gone) do
    Enum.each(nodes, fn node ->
      Enum.find(1..250, fn _ ->
        connected = Cluster.rpc(node, Node, :list, [])
        Enum.all?(gone, &(&1 not in connected)) or (Process.sleep(20) && false)
      end) || raise "#{node} still connected to one of #{inspect(gone)}"
    end)
  end

  def snapshot(nodes), do: Map.new(nodes, &{&1, stats(&1)})
end

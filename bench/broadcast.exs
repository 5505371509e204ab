# Tree broadcast against naive broadcast (the root sends to every node
# itself), in the same run, on real :peer nodes.
#
#     MIX_ENV=dev mix run bench/broadcast.exs [--quick] [--sizes 8,16,32]
#
# For each cluster size n (default 8 and 16; 8, 16 and 32 without --quick):
# n peers, the first one the root, one collector per peer subscribed to the
# broadcast type (the bench node is not a member). Phases:
#
#   * sends: one tree broadcast; the frames each node sent (TreeBroadcast
#     stats) and the root's distribution packets (`:inet.getstat/2`). Naive
#     is one message per other node, by construction; its packets are read
#     the same way;
#   * time to last: broadcasts 10 ms apart, each stamped with the OS clock
#     (shared by all peers on one host) just before it leaves the root; per
#     broadcast, the latest delivery over all nodes; median and p99. Tree
#     broadcasts are awaited (`broadcast/2` returns after every node
#     reported). Naive sends `{:signal, signal}` straight to every
#     collector, without acks, which favours naive;
#   * root CPU: broadcasts back to back, measured on the root as the CPU
#     time of all its VM's OS threads (from /proc/self/task/*/schedstat, in
#     nanoseconds; `:erlang.statistics(:runtime)`, in milliseconds, where
#     that is missing; peers run with scheduler busy-wait off, `+sbwt
#     none`, so idle spinning is not counted) from the first broadcast
#     until every collector received every signal, divided by the number
#     of broadcasts. The same end point for every mode, so distribution
#     output a send left queued and reports still on their way are counted
#     too. Three modes:
#       - tree (`root_cpu_us_tree`): `broadcast(await: false)` in windows of
#         256 (then `await/2` of the window's last), and at the end until
#         every broadcast completed on the root. Broadcasts queued behind
#         one another leave as batches (see TreeBroadcast's "Batches"); the
#         JSON has `root_mean_batch` and `root_batches`;
#       - tree awaited (`root_cpu_us_tree_awaited`): `broadcast/2` awaited
#         one by one, so every batch holds one broadcast; the root idles
#         during each round trip, so this adds the cost of sleeping and
#         waking per broadcast;
#       - naive (`root_cpu_us_naive`): one `send/2` per node (the root's own
#         collector included), back to back.
#     The least of the rounds is kept (load from elsewhere only adds). Also
#     reported: reductions, and scheduler active time
#     (`:scheduler_wall_time_all` busy share times wall time), which counts
#     time the OS took the CPU away from a busy scheduler and so grows with
#     load on a shared machine;
#   * failures: a quarter of the interior nodes (rounded up) stopped, then a
#     broadcast along the tree planned while they were up: the share of
#     live nodes reached, and the reported missing nodes;
#   * planning: `TreePlanner.plan/3` of 1,000 members, on this node, with
#     the bench runner.
#
# Prints a table and writes bench/results/broadcast.json.
Code.require_file("support/load.exs", __DIR__)

alias Jido.Distributed.Bench.{Result, Runner, Signals, Stats}
alias Jido.Distributed.Test.{Cluster, Collector, Traffic}
alias Jido.Distributed.{TreeBroadcast, TreePlanner}

{:module, bench_mod, bench_bin, _} =
  defmodule BroadcastBench do
    @moduledoc false
    # Runs on the root peer (its object code is loaded there).

    def tree(signal, nodes, count, gap_ms) do
      for seq <- 1..count do
        {:ok, %{missing: []}} = TreeBroadcast.broadcast(stamp(signal, seq), nodes: nodes)
        if gap_ms > 0, do: Process.sleep(gap_ms)
      end

      :ok
    end

    # Without waiting (`await: false`), in windows of `window` broadcasts:
    # after each window, wait for its last one; at the end, until every
    # broadcast completed here. The window bounds what is in flight, as
    # `TreeBroadcast` asks of callers that do not await (a flooded tree on
    # one shared host misses ack timeouts).
    def tree_stream(signal, nodes, count, window) do
      1..count
      |> Enum.chunk_every(window)
      |> Enum.each(fn seqs ->
        ids =
          for seq <- seqs do
            {:ok, id} = TreeBroadcast.broadcast(stamp(signal, seq), nodes: nodes, await: false)
            id
          end

        {:ok, _} = TreeBroadcast.await(List.last(ids), 60_000)
      end)

      drain()
    end

    defp drain do
      if TreeBroadcast.stats().sessions > 0 do
        Process.sleep(1)
        drain()
      else
        :ok
      end
    end

    def naive(signal, pids, count, gap_ms) do
      for seq <- 1..count do
        message = {:signal, stamp(signal, seq)}
        Enum.each(pids, &send(&1, message))
        if gap_ms > 0, do: Process.sleep(gap_ms)
      end

      :ok
    end

    # CPU spent by this VM from just before `apply(m, f, a)` until every
    # collector in `collectors` received `count` signals: the same end
    # point for every mode, so work a send leaves behind (distribution
    # output still queued when `apply` returns, reports still to come) is
    # counted too. The wait costs this VM one message per collector.
    def measure(m, f, a, collectors, count) do
      :erlang.system_flag(:scheduler_wall_time, true)
      Enum.each(collectors, &Collector.notify_at(&1, count))
      :erlang.garbage_collect()
      cpu0 = cpu_ns()
      {runtime0, _} = :erlang.statistics(:runtime)
      sched0 = :erlang.statistics(:scheduler_wall_time_all)
      {reds0, _} = :erlang.statistics(:reductions)
      t0 = System.monotonic_time(:microsecond)
      apply(m, f, a)
      Enum.each(collectors, fn pid -> receive do: ({:collected, ^pid} -> :ok) end)
      t1 = System.monotonic_time(:microsecond)
      cpu1 = cpu_ns()
      {runtime1, _} = :erlang.statistics(:runtime)
      sched1 = :erlang.statistics(:scheduler_wall_time_all)
      {reds1, _} = :erlang.statistics(:reductions)

      # Scheduler times are in an unspecified unit: the busy share of each
      # scheduler times the wall time.
      busy_share =
        Enum.zip(Enum.sort(sched0), Enum.sort(sched1))
        |> Enum.map(fn {{_, active0, total0}, {_, active1, total1}} ->
          if total1 > total0, do: (active1 - active0) / (total1 - total0), else: 0.0
        end)
        |> Enum.sum()

      active_us = busy_share * (t1 - t0)
      runtime_us = (runtime1 - runtime0) * 1000

      %{
        # Nanosecond thread CPU times where Linux gives them, else the
        # millisecond `:runtime`.
        cpu_us: if(cpu0 && cpu1, do: (cpu1 - cpu0) / 1000, else: runtime_us),
        runtime_us: runtime_us,
        sched_active_us: active_us,
        reductions: reds1 - reds0,
        wall_us: t1 - t0
      }
    end

    # The CPU time of all this VM's OS threads, in nanoseconds, from
    # /proc/self/task/*/schedstat (its first field); nil elsewhere.
    defp cpu_ns do
      with {:ok, tids} <- File.ls("/proc/self/task") do
        Enum.reduce_while(tids, 0, fn tid, acc ->
          case File.read("/proc/self/task/#{tid}/schedstat") do
            {:ok, line} ->
              {ns, _} = Integer.parse(line)
              {:cont, acc + ns}

            {:error, _} ->
              {:halt, nil}
          end
        end)
      else
        _ -> nil
      end
    end

    defp stamp(signal, seq) do
      data = %{signal.data | sender: :root, seq: seq, sent_at: :os.system_time(:microsecond)}
      %{signal | data: data}
    end
  end

opts = Runner.parse_args!(System.argv(), sizes: :string)
quick = Keyword.get(opts, :quick, false)

sizes =
  case Keyword.get(opts, :sizes) do
    nil -> if quick, do: [8, 16], else: [8, 16, 32]
    list -> list |> String.split(",") |> Enum.map(&String.to_integer/1)
  end

latency_count = if quick, do: 50, else: 200
cpu_count = if quick, do: 1_000, else: 4_000
cpu_rounds = if quick, do: 2, else: 3
window = 256
fanout = 4

IO.puts("broadcast: #{if quick, do: "quick", else: "full"} run, sizes #{inspect(sizes)}")
Cluster.ensure_distributed()
{:ok, _} = Application.ensure_all_started(:jido_distributed)

base = Signals.standard(1)

signal = %{
  base
  | type: "bench.broadcast",
    data: Map.merge(base.data, %{sender: :root, seq: 0, sent_at: 0})
}

IO.puts("signal: #{Signals.external_size(signal)} bytes in external term format")

collectors = fn nodes ->
  Map.new(nodes, fn node ->
    pid = Collector.start(node)
    :ok = Cluster.rpc(node, TreeBroadcast, :subscribe, ["bench.**", [pid: pid]])
    {node, pid}
  end)
end

stop_collectors = fn map -> Enum.each(map, fn {_, pid} -> Collector.stop(pid) end) end

# Per broadcast, the latest delivery over all collectors (each got them all, in order).
time_to_last = fn map, count ->
  {status, reports} = Collector.await_total(Map.values(map), count * map_size(map), 60_000)

  if status != :ok,
    do: raise("only some deliveries arrived: #{inspect(Enum.map(reports, & &1.received))}")

  Process.sleep(100)
  reports = Enum.map(Map.values(map), &Collector.report/1)

  unless Enum.all?(
           reports,
           &(&1.received == count and &1.distinct == count and &1.violations == 0)
         ),
         do:
           raise(
             "not exactly once: #{inspect(Enum.map(reports, &Map.delete(&1, :latencies_us)))}"
           )

  reports
  |> Enum.map(&Enum.reverse(&1.latencies_us))
  |> Enum.zip()
  |> Enum.map(&(&1 |> Tuple.to_list() |> Enum.max()))
end

interior = fn {_root, subtrees} ->
  walk = fn
    {_n, []}, _walk -> []
    {n, subs}, walk -> [n | Enum.flat_map(subs, &walk.(&1, walk))]
  end

  Enum.flat_map(subtrees, &walk.(&1, walk))
end

run_size = fn n ->
  IO.puts("\n== n = #{n}: starting peers")

  {boot_us, nodes} =
    :timer.tc(fn ->
      Cluster.start_nodes(Enum.map(1..n, &[name: :"bc#{&1}"]),
        args: ["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"]
      )
    end)

  IO.puts("   #{n} peers up in #{div(boot_us, 1000)} ms")
  [root | others] = nodes

  for node <- nodes,
      do:
        {:module, _} =
          Cluster.rpc(node, :code, :load_binary, [bench_mod, ~c"broadcast_bench", bench_bin])

  rpc = fn m, f, a -> Cluster.rpc(root, m, f, a, 600_000) end

  # Warm-up: label and plan caches, connections.
  subs = collectors.(nodes)
  :ok = rpc.(bench_mod, :tree, [signal, nodes, 20, 0])
  :ok = rpc.(bench_mod, :naive, [signal, Map.values(subs), 20, 0])
  stop_collectors.(subs)

  # --- sends ------------------------------------------------------------------
  subs = collectors.(nodes)
  before = Map.new(nodes, &{&1, Cluster.rpc(&1, TreeBroadcast, :stats, []).counters.forwarded})
  dist0 = rpc.(Traffic, :dist_sent, [others])
  :ok = rpc.(bench_mod, :tree, [signal, nodes, 1, 0])
  dist1 = rpc.(Traffic, :dist_sent, [others])

  sends =
    Map.new(
      nodes,
      &{&1, Cluster.rpc(&1, TreeBroadcast, :stats, []).counters.forwarded - before[&1]}
    )

  :ok = rpc.(bench_mod, :naive, [signal, Map.values(subs), 1, 0])
  dist2 = rpc.(Traffic, :dist_sent, [others])
  stop_collectors.(subs)

  tree =
    Cluster.rpc(root, TreePlanner, :plan, [
      rpc.(TreeBroadcast, :located_members, [nodes]),
      root,
      [fanout: fanout]
    ])
    |> elem(1)

  depth = TreePlanner.depth(tree)

  IO.puts(
    "   sends: tree max #{Enum.max(Map.values(sends))} per node (root #{sends[root]}), depth #{depth}; naive #{n - 1} from the root"
  )

  # --- time to last -------------------------------------------------------------
  ttl =
    for mode <- [:tree, :naive], into: %{} do
      subs = collectors.(nodes)

      case mode do
        :tree -> :ok = rpc.(bench_mod, :tree, [signal, nodes, latency_count, 10])
        :naive -> :ok = rpc.(bench_mod, :naive, [signal, Map.values(subs), latency_count, 10])
      end

      lasts = time_to_last.(subs, latency_count)
      stop_collectors.(subs)

      IO.puts(
        "   time to last #{mode}: median #{Stats.median(lasts)} us, p99 #{Stats.percentile(lasts, 99)} us"
      )

      {mode, lasts}
    end

  # --- root CPU -------------------------------------------------------------------
  failed = fn ->
    nodes
    |> Enum.map(&Cluster.rpc(&1, TreeBroadcast, :stats, []).counters.failed_children)
    |> Enum.sum()
  end

  failed_before = failed.()

  cpu =
    for _round <- 1..cpu_rounds,
        mode <- [:stream, :naive, :tree],
        reduce: %{tree: [], stream: [], naive: []} do
      acc ->
        subs = collectors.(nodes)

        args =
          case mode do
            :tree -> [bench_mod, :tree, [signal, nodes, cpu_count, 0]]
            :stream -> [bench_mod, :tree_stream, [signal, nodes, cpu_count, window]]
            :naive -> [bench_mod, :naive, [signal, Map.values(subs), cpu_count, 0]]
          end

        batches0 = Cluster.rpc(root, TreeBroadcast, :stats, []).counters.batches
        m = rpc.(bench_mod, :measure, args ++ [Map.values(subs), cpu_count])
        batches = Cluster.rpc(root, TreeBroadcast, :stats, []).counters.batches - batches0
        m = Map.put(m, :batches, batches)
        stop_collectors.(subs)

        IO.puts(
          "   root CPU #{mode}: #{Float.round(m.cpu_us / cpu_count, 1)} us CPU " <>
            "(#{Float.round(m.runtime_us / cpu_count, 1)} us by :runtime), " <>
            "#{Float.round(m.sched_active_us / cpu_count, 1)} us scheduler-active, " <>
            "#{div(m.reductions, cpu_count)} reductions per broadcast (#{div(m.wall_us, 1000)} ms wall)" <>
            if(mode == :naive, do: "", else: ", #{batches} batches")
        )

        Map.update!(acc, mode, &[m | &1])
    end

  # Children given up on while nothing failed: ack timeouts missed under load.
  cpu_failed_children = failed.() - failed_before
  IO.puts("   children given up during the CPU phase: #{cpu_failed_children}")

  per = fn ms, key -> ms |> Enum.map(&(Map.fetch!(&1, key) / cpu_count)) |> Enum.min() end

  # --- failures ----------------------------------------------------------------------
  inner = interior.(tree)
  dead = Enum.take(inner, max(div(length(inner) + 3, 4), 1))
  alive = nodes -- dead
  subs = collectors.(alive)
  Cluster.stop_nodes(dead)
  # Wait until the live peers noticed (otherwise only the ack timeout would).

  Enum.each(alive, fn node ->
    Enum.find(1..250, fn _ ->
      connected = Cluster.rpc(node, Node, :list, [])
      Enum.all?(dead, &(&1 not in connected)) or (Process.sleep(20) && false)
    end)
  end)

  fwd0 = Map.new(alive, &{&1, Cluster.rpc(&1, TreeBroadcast, :stats, []).counters.forwarded})

  {fail_us, {:ok, fail}} =
    :timer.tc(fn -> rpc.(TreeBroadcast, :broadcast, [signal, [tree: tree]]) end)

  fail_sends =
    Enum.map(alive, &(Cluster.rpc(&1, TreeBroadcast, :stats, []).counters.forwarded - fwd0[&1]))

  {_, reports} = Collector.await_total(Map.values(subs), length(alive), 10_000)
  reached = Enum.count(reports, &(&1.received >= 1))
  stop_collectors.(subs)

  IO.puts(
    "   #{length(dead)} of #{length(inner)} interior nodes dead: reached #{reached} of #{length(alive)} live nodes " <>
      "in #{div(fail_us, 1000)} ms; missing reported: #{length(fail.missing)} (#{if Enum.sort(dead) == fail.missing, do: "exactly the dead", else: "MISMATCH"})"
  )

  Cluster.stop_nodes(nodes)

  naive_cpu = per.(cpu.naive, :cpu_us)
  tree_cpu = per.(cpu.stream, :cpu_us)
  awaited_cpu = per.(cpu.tree, :cpu_us)

  {"n#{n}",
   %{
     "nodes" => n,
     "fanout" => fanout,
     "tree_max_sends_per_node" => Enum.max(Map.values(sends)),
     "tree_root_sends" => sends[root],
     "tree_total_sends" => Enum.sum(Map.values(sends)),
     "naive_max_sends_per_node" => n - 1,
     "root_dist_packets_tree" => dist1.packets - dist0.packets,
     "root_dist_packets_naive" => dist2.packets - dist1.packets,
     "tree_depth" => depth,
     "tree_depth_target" => ceil(:math.log(n) / :math.log(fanout) - 1.0e-9),
     "tree_time_to_last_ms" => Float.round(Stats.median(ttl.tree) / 1000, 3),
     "tree_time_to_last_p99_ms" => Float.round(Stats.percentile(ttl.tree, 99) / 1000, 3),
     "naive_time_to_last_ms" => Float.round(Stats.median(ttl.naive) / 1000, 3),
     "naive_time_to_last_p99_ms" => Float.round(Stats.percentile(ttl.naive, 99) / 1000, 3),
     "root_cpu_us_tree" => Float.round(tree_cpu, 1),
     "cpu_phase_children_given_up" => cpu_failed_children,
     "root_cpu_us_tree_awaited" => Float.round(awaited_cpu, 1),
     "root_cpu_us_naive" => Float.round(naive_cpu, 1),
     "root_cpu_ratio_naive_over_tree" => Float.round(naive_cpu / tree_cpu, 2),
     # Per round (naive right after tree), the median of the rounds.
     "root_cpu_ratio_per_round_median" =>
       Enum.zip(Enum.reverse(cpu.naive), Enum.reverse(cpu.stream))
       |> Enum.map(fn {naive, tree} -> naive.cpu_us / tree.cpu_us end)
       |> Stats.median()
       |> Float.round(2),
     "root_sched_active_us_tree" => Float.round(per.(cpu.stream, :sched_active_us), 1),
     "root_sched_active_us_tree_awaited" => Float.round(per.(cpu.tree, :sched_active_us), 1),
     "root_sched_active_us_naive" => Float.round(per.(cpu.naive, :sched_active_us), 1),
     "root_reductions_tree" => round(per.(cpu.stream, :reductions)),
     "root_reductions_tree_awaited" => round(per.(cpu.tree, :reductions)),
     "root_reductions_naive" => round(per.(cpu.naive, :reductions)),
     "root_batches" => cpu.stream |> Enum.map(& &1.batches) |> Enum.min(),
     "root_mean_batch" =>
       Float.round(cpu_count / max(cpu.stream |> Enum.map(& &1.batches) |> Enum.max(), 1), 1),
     "stream_window" => window,
     "interior_nodes" => length(inner),
     "dead_interior_nodes" => length(dead),
     "live_reached_pct" => Float.round(100 * reached / length(alive), 1),
     "missing_is_exactly_dead" => Enum.sort(dead) == fail.missing,
     "failure_broadcast_ms" => div(fail_us, 1000),
     "failure_max_sends_per_node" => Enum.max(fail_sends),
     "boot_ms" => div(boot_us, 1000)
   }}
end

per_n = Map.new(sizes, run_size)

# --- planning 1,000 members (this node) ------------------------------------------------
thousand = for i <- 1..1000, do: :"n#{i}@host"
labelled = for {n, i} <- Enum.with_index(thousand), do: {n, [region: rem(i, 4), zone: rem(i, 12)]}

results =
  Runner.run(
    [
      {"plan 1000 members", fn -> {:ok, _} = TreePlanner.plan(thousand, hd(thousand)) end},
      {"plan 1000 members, 4 regions x 3 zones",
       fn -> {:ok, _} = TreePlanner.plan(labelled, hd(thousand)) end}
    ],
    opts
  )

plan_us = Result.median_us(Runner.fetch!(results, "plan 1000 members"))

summary =
  Map.merge(per_n, %{
    "sizes" => sizes,
    "signal_bytes" => Signals.external_size(signal),
    "latency_broadcasts" => latency_count,
    "cpu_broadcasts" => cpu_count,
    "plan_us_1000_nodes" => Float.round(plan_us, 1),
    "plan_us_1000_nodes_labelled" =>
      Float.round(
        Result.median_us(Runner.fetch!(results, "plan 1000 members, 4 regions x 3 zones")),
        1
      )
  })

Runner.print_table(results, title: "tree planning")

IO.puts(
  "\n" <> String.pad_trailing("", 30) <> Enum.map_join(sizes, &String.pad_leading("n=#{&1}", 12))
)

for key <- per_n |> Map.values() |> hd() |> Map.keys() |> Enum.sort() do
  IO.puts(
    String.pad_trailing(key, 34) <>
      Enum.map_join(sizes, &String.pad_leading(inspect(per_n["n#{&1}"][key]), 12))
  )
end

IO.puts("plan_us_1000_nodes #{summary["plan_us_1000_nodes"]}")
path = Runner.write_json!("broadcast", results, summary, opts)
IO.puts("wrote #{path}")

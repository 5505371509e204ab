# Local-first routing against a locality-blind router, on 4 peer nodes, in
# the same run.
#
#     MIX_ENV=dev mix run bench/locality.exs [--quick] [--seed N]
#       [--agents 1000] [--pools 100] [--signals 10000]
#       [--big-agents 10000] [--patterns 500] [--lookups 20000]
#
# Part 1 - locality (4 peers in two zones of one region, 1,000 agents):
#
#   * agents come in `--pools` pools (same capability within a pool: an exact
#     type, or a `*` / `**` pattern), 2 + about 8 agents per pool. A pool's
#     first two agents go to two different nodes, so every handled type has
#     agents on at least 2 nodes; the others go to random nodes;
#   * `--signals` standard signals, each given a random handled type and a
#     random origin peer, are routed on their origin by
#       - locality: `Jido.Router.route_with_locality/1`;
#       - blind: uniform choice among `Jido.Router.capable_agents/1`;
#     and then really sent (`Jido.Distributed.route_and_send/1`, and
#     `Jido.Distributed.send/2` to the blind choice), waiting for every
#     agent to receive its signals. Cross-node sends are counted by the
#     Links (`Jido.Distributed.stats/0`), packets and bytes on the
#     distribution sockets (`:inet.getstat/2`), both per phase.
#
# Part 2 - routing latency (`--big-agents` agents over the 4 peers, one of
# `--patterns` distinct patterns each, 60% exact, 40% with wildcards):
#
#   * each peer times `--lookups` calls of `route_with_locality/1` one by
#     one (monotonic clock, ns), for signals of random types (some handled
#     by nobody); samples of the 4 peers are pooled for p50/p99;
#   * the bench runner (bench/support) times the same calls and the blind
#     router on this node, which hosts no agent (so every route takes the
#     remote path over its replica of all agents).
#
# Prints a table and writes bench/results/locality.json.
Code.require_file("support/load.exs", __DIR__)

alias Jido.Distributed.Bench.{Runner, Signals, Stats}
alias Jido.Distributed.Directory
alias Jido.Distributed.Test.{Cluster, Collector}

opts =
  Runner.parse_args!(System.argv(),
    seed: :integer,
    agents: :integer,
    pools: :integer,
    signals: :integer,
    big_agents: :integer,
    patterns: :integer,
    lookups: :integer
  )

quick = opts[:quick]
seed = Keyword.get(opts, :seed, 1)
agent_total = Keyword.get(opts, :agents, 1_000)
pool_count = Keyword.get(opts, :pools, 100)
signal_total = Keyword.get(opts, :signals, if(quick, do: 2_000, else: 10_000))
big_agents = Keyword.get(opts, :big_agents, 10_000)
pattern_total = Keyword.get(opts, :patterns, 500)
lookups = Keyword.get(opts, :lookups, if(quick, do: 5_000, else: 20_000))

runner_opts =
  Keyword.drop(opts, [:seed, :agents, :pools, :signals, :big_agents, :patterns, :lookups])

:rand.seed(:exsss, {seed, seed, seed})

Logger.configure(level: :warning)
# Works with `mix run` and with `mix run --no-start`: this node's
# Directory must run, as it routes in part 2.
Cluster.ensure_distributed()
{:ok, _} = Application.ensure_all_started(:jido_distributed)
IO.puts("starting 4 peer nodes...")

nodes =
  Cluster.start_nodes([
    [name: :loc_a1, location: [region: "eu", zone: "a"]],
    [name: :loc_a2, location: [region: "eu", zone: "a"]],
    [name: :loc_b1, location: [region: "eu", zone: "b"]],
    [name: :loc_b2, location: [region: "eu", zone: "b"]]
  ])

await = fn what, fun, timeout_ms ->
  deadline = System.monotonic_time(:millisecond) + timeout_ms

  Stream.repeatedly(fn ->
    cond do
      fun.() -> :done
      System.monotonic_time(:millisecond) > deadline -> raise "timed out waiting for #{what}"
      true -> Process.sleep(20) && :wait
    end
  end)
  |> Enum.find(&(&1 == :done))
end

# --- part 1: locality --------------------------------------------------------------

domains = for i <- 1..10, do: "d#{i}"
entities = for i <- 1..10, do: "e#{i}"
actions = ~w(created updated deleted added removed failed started stopped approved rejected)
universe = for d <- domains, e <- entities, a <- actions, do: "#{d}.#{e}.#{a}"

pool_pattern = fn ->
  d = Enum.random(domains)
  e = Enum.random(entities)
  a = Enum.random(actions)

  case :rand.uniform(20) do
    n when n <= 8 -> "#{d}.#{e}.#{a}"
    n when n <= 12 -> "#{d}.#{e}.*"
    n when n <= 15 -> "#{d}.*.#{a}"
    n when n <= 17 -> "*.#{e}.#{a}"
    18 -> "#{d}.**"
    19 -> "**.#{e}.**"
    20 -> "#{d}.**.#{a}"
  end
end

pools = Stream.repeatedly(pool_pattern) |> Stream.uniq() |> Enum.take(pool_count)

pool_of_agent =
  Enum.flat_map(0..(pool_count - 1), &[&1, &1]) ++
    for(_ <- 1..(agent_total - 2 * pool_count)//1, do: :rand.uniform(pool_count) - 1)

placement =
  pool_of_agent
  |> Enum.group_by(& &1)
  |> Enum.flat_map(fn {pool, members} ->
    [first, second | _] = Enum.shuffle(nodes)

    members
    |> Enum.with_index()
    |> Enum.map(fn
      {_, 0} -> {pool, first}
      {_, 1} -> {pool, second}
      _ -> {pool, Enum.random(nodes)}
    end)
  end)

IO.puts("part 1: registering #{agent_total} agents in #{pool_count} pools...")

collectors =
  placement
  |> Enum.with_index()
  |> Enum.map(fn {{pool, node}, i} ->
    pid = Collector.start(node)
    :ok = Directory.register("loc-#{i}", [Enum.at(pools, pool)], pid: pid)
    pid
  end)

for node <- [node() | nodes] do
  await.(
    "#{node} to list #{agent_total} agents",
    fn ->
      Cluster.rpc(node, Jido.Distributed.Test.RoutingLoad, :agent_count, []) == agent_total
    end,
    30_000
  )
end

handled = Enum.filter(universe, &(Directory.capable(&1) != []))

signals =
  Signals.batch(signal_total, seed)
  |> Enum.map(fn s -> {Enum.random(nodes), %{s | type: Enum.random(handled)}} end)

by_origin = Enum.group_by(signals, &elem(&1, 0), &elem(&1, 1))

# Where a capable agent exists, per type (this node's replica is complete).
capable_nodes =
  Map.new(handled, fn t ->
    {t, t |> Directory.capable() |> Enum.map(& &1.node) |> MapSet.new()}
  end)

nodes_per_type = Enum.map(capable_nodes, fn {_, ns} -> MapSet.size(ns) end)

local_available =
  Enum.count(signals, fn {origin, s} -> MapSet.member?(capable_nodes[s.type], origin) end)

count_local = fn chooser ->
  Enum.reduce(by_origin, {0, 0}, fn {origin, sigs}, {local, none} ->
    chosen = chooser.(origin, sigs)
    {local + Enum.count(chosen, &(&1 == origin)), none + Enum.count(chosen, &is_nil/1)}
  end)
end

{local, unrouted} =
  count_local.(fn origin, sigs ->
    Cluster.rpc(origin, Jido.Distributed.Test.RoutingLoad, :route_nodes, [sigs])
  end)

{blind_local, _} =
  count_local.(fn origin, sigs ->
    Cluster.rpc(origin, Jido.Distributed.Test.RoutingLoad, :blind_nodes, [sigs, seed])
  end)

IO.puts("part 1: sending #{signal_total} signals each way...")

measure_sends = fn fun ->
  before_links =
    Enum.map(nodes, &Cluster.rpc(&1, Jido.Distributed.Test.RoutingLoad, :link_signals, []))

  before_dist =
    Enum.map(nodes, &Cluster.rpc(&1, Jido.Distributed.Test.RoutingLoad, :dist_counters, [nodes]))

  received_before = collectors |> Enum.map(&Collector.report(&1).received) |> Enum.sum()

  by_origin
  |> Enum.map(fn {origin, sigs} -> Task.async(fn -> fun.(origin, sigs) end) end)
  |> Enum.each(&Task.await(&1, 120_000))

  {:ok, _} = Collector.await_total(collectors, received_before + signal_total, 120_000)

  after_links =
    Enum.map(nodes, &Cluster.rpc(&1, Jido.Distributed.Test.RoutingLoad, :link_signals, []))

  after_dist =
    Enum.map(nodes, &Cluster.rpc(&1, Jido.Distributed.Test.RoutingLoad, :dist_counters, [nodes]))

  {packets, bytes} =
    Enum.zip(before_dist, after_dist)
    |> Enum.reduce({0, 0}, fn {{c0, o0}, {c1, o1}}, {c, o} -> {c + c1 - c0, o + o1 - o0} end)

  %{
    cross_node_sends: Enum.sum(after_links) - Enum.sum(before_links),
    dist_packets: packets,
    dist_bytes: bytes
  }
end

locality_sends =
  measure_sends.(fn origin, sigs ->
    Cluster.rpc(origin, Jido.Distributed.Test.RoutingLoad, :send_locality, [sigs], 120_000)
  end)

blind_sends =
  measure_sends.(fn origin, sigs ->
    Cluster.rpc(origin, Jido.Distributed.Test.RoutingLoad, :send_blind, [sigs, seed], 120_000)
  end)

Enum.each(collectors, &Collector.stop/1)

for node <- [node() | nodes] do
  await.(
    "#{node} to drop the part 1 agents",
    fn ->
      Cluster.rpc(node, Jido.Distributed.Test.RoutingLoad, :agent_count, []) == 0
    end,
    30_000
  )
end

# --- part 2: routing latency --------------------------------------------------------

big_domains = for i <- 1..25, do: "domain#{i}"
big_entities = for i <- 1..20, do: "entity#{i}"

random_type = fn ->
  Enum.join([Enum.random(big_domains), Enum.random(big_entities), Enum.random(actions)], ".")
end

patterns =
  Jido.Distributed.Bench.Patterns.distinct(
    pattern_total,
    big_domains,
    big_entities,
    actions,
    random_type
  )

IO.puts("part 2: registering #{big_agents} agents with #{pattern_total} patterns...")

big_specs =
  for i <- 0..(big_agents - 1) do
    pattern =
      if i < pattern_total,
        do: elem(patterns, i),
        else: elem(patterns, :rand.uniform(pattern_total) - 1)

    {Enum.at(nodes, rem(i, 4)), {"big-#{i}", pattern}}
  end

{register_us, big_pids} =
  :timer.tc(fn ->
    big_specs
    |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
    |> Enum.map(fn {node, specs} ->
      {node,
       Task.async(fn ->
         Cluster.rpc(node, Jido.Distributed.Test.RoutingLoad, :start_agents, [specs], 120_000)
       end)}
    end)
    |> Enum.map(fn {node, task} -> {node, Task.await(task, 120_000)} end)
  end)

{converge_us, _} =
  :timer.tc(fn ->
    for node <- [node() | nodes] do
      await.(
        "#{node} to list #{big_agents} agents",
        fn ->
          Cluster.rpc(node, Jido.Distributed.Test.RoutingLoad, :agent_count, []) == big_agents
        end,
        60_000
      )
    end
  end)

lookup_signals = fn n, salt ->
  for i <- 1..n, do: %{id: "sig-#{salt}-#{i}", type: random_type.()}
end

IO.puts("part 2: timing #{lookups} routes on each peer...")

peer_samples =
  Enum.flat_map(nodes, fn node ->
    Cluster.rpc(
      node,
      Jido.Distributed.Test.RoutingLoad,
      :time_routes,
      [lookup_signals.(lookups, node)],
      120_000
    )
  end)

blind_samples =
  Enum.flat_map(nodes, fn node ->
    Cluster.rpc(
      node,
      Jido.Distributed.Test.RoutingLoad,
      :time_blind,
      [lookup_signals.(div(lookups, 4), node)],
      120_000
    )
  end)

route_ns = Enum.map(peer_samples, &elem(&1, 0))
path_ns = fn kind -> for {ns, ^kind} <- peer_samples, do: ns end
us = fn ns -> Float.round(ns / 1000, 3) end

pct = fn
  [], _p -> nil
  samples, p -> us.(Stats.percentile(samples, p))
end

Jido.Distributed.Test.RoutingLoad.setup_cycle(lookup_signals.(5_000, :main))

results =
  Runner.run(
    [
      {"route_with_locality/1 (this node: no agents, remote path)",
       &Jido.Distributed.Test.RoutingLoad.route_next/0},
      {"blind: capable_agents/1 + random (this node)",
       &Jido.Distributed.Test.RoutingLoad.blind_next/0}
    ],
    runner_opts
  )

Enum.each(big_pids, fn {node, pids} ->
  Cluster.rpc(node, Jido.Distributed.Test.RoutingLoad, :stop_agents, [pids])
end)

Cluster.stop_nodes(nodes)

# --- report --------------------------------------------------------------------------

routed = signal_total - unrouted

summary = %{
  "agents" => agent_total,
  "pools" => pool_count,
  "signals" => signal_total,
  "seed" => seed,
  "handled_types" => length(handled),
  "min_nodes_per_type" => Enum.min(nodes_per_type),
  "mean_nodes_per_type" => Float.round(Enum.sum(nodes_per_type) / length(nodes_per_type), 2),
  "local_ratio" => Float.round(local / routed, 4),
  "blind_local_ratio" => Float.round(blind_local / routed, 4),
  "local_available_ratio" => Float.round(local_available / routed, 4),
  "unrouted" => unrouted,
  "cross_node_sends" => locality_sends.cross_node_sends,
  "blind_cross_node_sends" => blind_sends.cross_node_sends,
  "cross_node_sends_saved" => blind_sends.cross_node_sends - locality_sends.cross_node_sends,
  "dist_packets" => locality_sends.dist_packets,
  "blind_dist_packets" => blind_sends.dist_packets,
  "dist_bytes" => locality_sends.dist_bytes,
  "blind_dist_bytes" => blind_sends.dist_bytes,
  "big_agents" => big_agents,
  "patterns" => pattern_total,
  "register_ms" => div(register_us, 1000),
  "converge_ms" => div(converge_us, 1000),
  "route_samples" => length(route_ns),
  "route_p50_us" => pct.(route_ns, 50),
  "route_p99_us" => pct.(route_ns, 99),
  "route_local_path_share" => Float.round(length(path_ns.(:local)) / length(route_ns), 4),
  "route_local_path_p50_us" => pct.(path_ns.(:local), 50),
  "route_remote_path_p50_us" => pct.(path_ns.(:remote), 50),
  "route_no_agent_p50_us" => pct.(path_ns.(:error), 50),
  "blind_route_p50_us" => pct.(blind_samples, 50),
  "blind_route_p99_us" => pct.(blind_samples, 99),
  "notes" => [
    "part 1: #{agent_total} agents in #{pool_count} pools (one pattern per pool) on 4 peers (zones a, a, b, b of one region); every pool spans >= 2 nodes; signals get a random handled type and a random origin peer",
    "local_ratio / blind_local_ratio = share of routed signals delivered on their origin node; local_available_ratio = share whose origin hosts a capable agent (the most any router can keep local)",
    "cross_node_sends = signals the Links carried to another node while sending all signals (Jido.Distributed.stats); dist_packets/bytes = send_cnt/send_oct deltas of the peers' distribution sockets to each other, same phase (Links batch signals into frames, and acks, ticks and directory traffic are included)",
    "part 2: #{big_agents} agents over 4 peers with #{pattern_total} distinct patterns (60% exact, 40% wildcard); route_* = per-call times of route_with_locality/1 on the peers, signals of random types (some handled by nobody), pooled over the 4 peers",
    "runner rows: this (observer) node hosts no agent, so every route there takes the remote path; times per call"
  ]
}

IO.puts("")
Runner.print_table(results, title: "routing on this node (#{big_agents} agents, all remote)")
IO.puts("")
IO.write(Runner.format_summary(Map.delete(summary, "notes")))
path = Runner.write_json!("locality", results, summary, runner_opts)
IO.puts("\nwrote #{Path.relative_to_cwd(path)}")

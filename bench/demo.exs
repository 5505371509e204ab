# The demo: a local 4-node cluster plus the relay C-node, the same workload
# sent twice between the nodes, and what crossed the network each time.
#
#     make demo          (or: MIX_ENV=dev mix run --no-start bench/demo.exs [--signals N] [--rate R])
#
# Baseline: plain per-signal `send/2`. Then the same signals through
# jido_distributed's batched, compressed, acknowledged links. Counts come
# from the distribution sockets themselves (`:inet.getstat/2`).
Code.require_file("support/load.exs", __DIR__)

alias Jido.Distributed.Bench.{Signals, Stats}
alias Jido.Distributed.Test.{Cluster, Traffic}

{opts, _, _} = OptionParser.parse(System.argv(), strict: [signals: :integer, rate: :integer])
count = Keyword.get(opts, :signals, 20_000)
rate = Keyword.get(opts, :rate, 10_000)

IO.puts("""
jido_distributed demo
=====================
Starting 4 BEAM nodes (peer nodes on this machine) and the relay C-node...
""")

Cluster.ensure_distributed()
{:ok, _} = Application.ensure_all_started(:jido_distributed)

specs = [
  [name: :orders, location: [region: "eu", zone: "eu-1"]],
  [name: :billing, location: [region: "eu", zone: "eu-1"]],
  [name: :shipping, location: [region: "eu", zone: "eu-2"]],
  [name: :analytics, location: [region: "us", zone: "us-1"]]
]

nodes = [sender | receivers] = Cluster.start_nodes(specs)

for {node, spec} <- Enum.zip(nodes, specs) do
  IO.puts("  #{node}  #{inspect(spec[:location])}")
end

relay_name = "jido_relay_demo_#{System.unique_integer([:positive])}"
{:ok, relay} = Jido.Distributed.Relay.start_link(name: relay_name, log_level: :warning)
relay_node = Jido.Distributed.Relay.node_name(relay)
relay_os_pid = Jido.Distributed.Relay.os_pid(relay)
{:ok, rtt_us} = Jido.Distributed.Relay.ping(relay)

IO.puts(
  "\n  relay #{relay_node} (OS pid #{relay_os_pid}, hidden node): ping from here #{rtt_us} µs"
)

for node <- nodes do
  case Cluster.rpc(node, Jido.Distributed.Relay, :ping_node, [relay_node]) do
    {:ok, us} -> IO.puts("    ping from #{node}: #{us} µs")
    {:error, reason} -> IO.puts("    ping from #{node}: failed (#{inspect(reason)})")
  end
end

IO.puts(
  "\nWorkload: #{count} standard signals (CloudEvents-shaped, ~620 bytes each) from #{sender}"
)

IO.puts("to 30 agents on the 3 other nodes, at #{rate} signals/s.\n")
signals = Signals.batch(count, 1)

runs =
  for mode <- [:plain, :ours] do
    label = if mode == :plain, do: "plain send/2", else: "jido_distributed"
    IO.write("  running #{label}... ")
    run = Traffic.run_paced(sender, receivers, signals, rate, mode)
    IO.puts("done (#{run.delivered} delivered, exactly once: #{run.exactly_once})")
    {mode, run}
  end
  |> Map.new()

plain = runs.plain
ours = runs.ours
pct = fn a, b -> if b == 0, do: "-", else: "#{Float.round((1 - a / b) * 100, 1)}%" end
ms = fn run, p -> "#{Float.round(Stats.percentile(run.latencies_us, p) / 1000, 2)} ms" end

rows = [
  {"remote sends (messages)", plain.remote_sends, ours.remote_sends},
  {"distribution packets", plain.packets, ours.packets},
  {"distribution bytes", plain.bytes, ours.bytes},
  {"bytes per signal", div(plain.bytes, count), div(ours.bytes, count)}
]

IO.puts("\nWhat crossed the network (sender <-> receivers, both directions, acks included)")

IO.puts(
  String.pad_trailing("", 26) <>
    String.pad_leading("plain send/2", 14) <>
    String.pad_leading("batched", 12) <> String.pad_leading("saved", 9)
)

for {name, a, b} <- rows do
  IO.puts(
    String.pad_trailing(name, 26) <>
      String.pad_leading(to_string(a), 14) <>
      String.pad_leading(to_string(b), 12) <> String.pad_leading(pct.(b, a), 9)
  )
end

IO.puts(
  String.pad_trailing("latency p50 / p99", 26) <>
    String.pad_leading("#{ms.(plain, 50)} / #{ms.(plain, 99)}", 24) <>
    "   batched: #{ms.(ours, 50)} / #{ms.(ours, 99)}"
)

IO.puts(
  "\nExactly-once, in-order delivery: plain #{plain.exactly_once}, batched #{ours.exactly_once}"
)

# --- local-first routing ------------------------------------------------------
alias Jido.Distributed.Test.RoutingLoad

IO.puts("\nLocal-first routing: 200 agents in 40 capability pools across the 4 nodes,")
IO.puts("each pool on at least 2 nodes; 2,000 signals originating on random nodes.")
:rand.seed(:exsss, {7, 7, 7})

placements =
  for pool <- 1..40, k <- 1..5 do
    node =
      case k do
        1 -> Enum.at(nodes, rem(pool, 4))
        2 -> Enum.at(nodes, rem(pool + 1, 4))
        _ -> Enum.random(nodes)
      end

    {node, {"pool#{pool}-agent#{k}", "demo.pool#{pool}.*"}}
  end

agent_pids =
  placements
  |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
  |> Enum.flat_map(fn {node, specs} -> Cluster.rpc(node, RoutingLoad, :start_agents, [specs]) end)

deadline = System.monotonic_time(:millisecond) + 10_000

Stream.repeatedly(fn ->
  Enum.all?(nodes, &(Cluster.rpc(&1, RoutingLoad, :agent_count, []) >= 200))
end)
|> Enum.find(fn done? ->
  done? or System.monotonic_time(:millisecond) > deadline or (Process.sleep(20) && false)
end)

by_origin =
  for i <- 1..2_000 do
    {Enum.random(nodes),
     %{id: "route-#{i}", type: "demo.pool#{:rand.uniform(40)}.event", data: %{}}}
  end
  |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))

count_local = fn picks_by_origin ->
  picks_by_origin
  |> Enum.map(fn {origin, picks} -> Enum.count(picks, &(&1 == origin)) end)
  |> Enum.sum()
end

cross_node = fn fun ->
  before = nodes |> Enum.map(&Cluster.rpc(&1, RoutingLoad, :link_signals, [])) |> Enum.sum()
  Enum.each(by_origin, fn {origin, signals} -> fun.(origin, signals) end)
  (nodes |> Enum.map(&Cluster.rpc(&1, RoutingLoad, :link_signals, [])) |> Enum.sum()) - before
end

local_picks =
  Enum.map(by_origin, fn {o, sigs} -> {o, Cluster.rpc(o, RoutingLoad, :route_nodes, [sigs])} end)

blind_picks =
  Enum.map(by_origin, fn {o, sigs} ->
    {o, Cluster.rpc(o, RoutingLoad, :blind_nodes, [sigs, 1])}
  end)

local_cross = cross_node.(fn o, sigs -> Cluster.rpc(o, RoutingLoad, :send_locality, [sigs]) end)
blind_cross = cross_node.(fn o, sigs -> Cluster.rpc(o, RoutingLoad, :send_blind, [sigs, 1]) end)

IO.puts(
  "  Jido.Router.route_with_locality: #{Float.round(count_local.(local_picks) / 20, 1)}% stayed on their node, #{local_cross} cross-node sends"
)

IO.puts(
  "  locality-blind router:           #{Float.round(count_local.(blind_picks) / 20, 1)}% stayed on their node, #{blind_cross} cross-node sends"
)

Enum.each(agent_pids, &send(&1, :stop))

# --- tree broadcast -------------------------------------------------------------
alias Jido.Distributed.Test.Collector
alias Jido.Distributed.TreeBroadcast

IO.puts("\nTree broadcast from #{sender} to the 4 nodes, fanout 2 (4 nodes fit a")
IO.puts("fanout-4 tree in one level, so a smaller fanout shows the forwarding):")

subscribers =
  for node <- nodes do
    pid = Collector.start(node)
    :ok = Cluster.rpc(node, TreeBroadcast, :subscribe, ["demo.announce.*", [pid: pid]])
    pid
  end

sends_of = fn node ->
  Cluster.rpc(node, TreeBroadcast, :stats, []).sends |> Map.values() |> Enum.sum()
end

before = Map.new(nodes, &{&1, sends_of.(&1)})

announce = %{
  id: "announce-1",
  type: "demo.announce.release",
  source: "/demo",
  data: %{version: "1.2.0"}
}

{:ok, result} =
  Cluster.rpc(sender, TreeBroadcast, :broadcast, [
    announce,
    [nodes: nodes, fanout: 2, await: true]
  ])

{:ok, reports} = Collector.await_total(subscribers, 4, 10_000)
per_node = Map.new(nodes, &{&1, sends_of.(&1) - before[&1]})

IO.puts(
  "  delivered to #{result.delivered} nodes, missing #{inspect(result.missing)}; each subscriber got it #{inspect(Enum.map(reports, & &1.received))} time(s)"
)

IO.puts(
  "  copies sent per node: " <>
    Enum.map_join(nodes, ", ", fn n ->
      "#{n |> Atom.to_string() |> String.split("_") |> hd()} #{per_node[n]}"
    end) <>
    " (naive: the root sends #{length(nodes) - 1})"
)

Enum.each(subscribers, &Collector.stop/1)

IO.puts("\nStopping the relay and the nodes...")
GenServer.stop(relay)
Cluster.stop_nodes(nodes)
Process.sleep(200)

leftover_relay = File.exists?("/proc/#{relay_os_pid}")
leftover_nodes = Enum.filter(nodes, &(&1 in Node.list([:connected])))

IO.puts(
  "Left behind: relay process #{if leftover_relay, do: "STILL RUNNING", else: "none"}, peer nodes #{inspect(leftover_nodes)}"
)

unless plain.exactly_once and ours.exactly_once and not leftover_relay and leftover_nodes == [],
  do: System.halt(1)

# Batched delivery against plain per-signal send/2, in the same run.
#
#     MIX_ENV=dev mix run bench/batching.exs [--quick] [--seed N]
#
# One sender node and three receiver nodes (real :peer nodes), 10 collector
# processes per receiver. The same standard signals go round-robin to the
# same 30 targets, once by plain `send(pid, {:signal, signal})` and once by
# `Jido.Distributed.send/2`:
#
#   * paced at 10,000 signals/s: packets and bytes read from the
#     distribution sockets (`:inet.getstat/2` send_cnt/send_oct; sender to
#     receivers plus receivers to sender, so acks count), remote sends, and
#     send-to-delivery latency (OS clock, shared by all nodes on one host);
#   * at maximum rate: signals per second from the first send to the last
#     delivery;
#   * a lone signal on an idle link: round trip to an echo target, request
#     by each mode, reply by plain send; the difference is the added latency;
#   * batch formation: planning 1,000 signals into per-node, per-distance-
#     class batches (Optimizer), and separately building their frame
#     (term_to_binary each, push, lz4 frame), timed by the bench runner.
#
# Prints a table and writes bench/results/batching.json.
Code.require_file("support/load.exs", __DIR__)

alias Jido.Distributed.Bench.{Result, Runner, Signals, Stats}
alias Jido.Distributed.Test.{Cluster, Collector, Traffic}
alias Jido.Distributed.Transport.LinkBuffer

opts = Runner.parse_args!(System.argv(), seed: :integer)
quick = Keyword.get(opts, :quick, false)
seed = Keyword.get(opts, :seed, 1)
paced_count = if quick, do: 20_000, else: 50_000
burst_count = if quick, do: 50_000, else: 200_000
idle_trials = if quick, do: 30, else: 100
rate = 10_000

IO.puts("batching: #{if quick, do: "quick", else: "full"} run, seed #{seed}")
Cluster.ensure_distributed()
{:ok, _} = Application.ensure_all_started(:jido_distributed)
[sender | receivers] = nodes = Cluster.start_nodes([:sender, :recv1, :recv2, :recv3])
IO.puts("nodes up: #{inspect(nodes)}")

signals = Signals.batch(max(paced_count, burst_count), seed)
paced_signals = Enum.take(signals, paced_count)

collectors = fn -> for node <- receivers, _ <- 1..10, do: Collector.start(node) end

await = fn targets, count ->
  case Collector.await_total(targets, count, 120_000) do
    {:ok, reports} ->
      reports

    {:timeout, reports} ->
      raise "only #{Enum.sum(Enum.map(reports, & &1.received))} of #{count} delivered"
  end
end

# --- paced at 10k/s ---------------------------------------------------------
paced =
  for mode <- [:plain, :ours], into: %{} do
    run = Traffic.run_paced(sender, receivers, paced_signals, rate, mode)

    unless run.exactly_once,
      do: raise("#{mode}: delivery check failed: #{inspect(Map.delete(run, :latencies_us))}")

    IO.puts(
      "paced #{mode}: #{paced_count} signals in #{div(run.elapsed_us, 1000)} ms, #{run.packets} packets, #{run.bytes} bytes"
    )

    {mode,
     %{
       packets: run.packets,
       bytes: run.bytes,
       sends: run.remote_sends,
       achieved_rate: paced_count * 1_000_000 / run.elapsed_us,
       p50_ms: Stats.percentile(run.latencies_us, 50) / 1000,
       p99_ms: Stats.percentile(run.latencies_us, 99) / 1000
     }}
  end

# --- maximum rate ------------------------------------------------------------
burst_signals = Enum.take(signals, burst_count)

burst =
  for mode <- [:plain, :ours], into: %{} do
    targets = collectors.()
    start = System.monotonic_time(:microsecond)
    {send_us, 0} = Cluster.rpc(sender, Traffic, :burst, [targets, burst_signals, mode], 300_000)
    await.(targets, burst_count)
    elapsed = System.monotonic_time(:microsecond) - start
    Enum.each(targets, &Collector.stop/1)
    rate = burst_count * 1_000_000 / elapsed

    IO.puts(
      "burst #{mode}: #{burst_count} signals delivered in #{div(elapsed, 1000)} ms (sending took #{div(send_us, 1000)} ms): #{round(rate)}/s"
    )

    {mode, %{elapsed_us: elapsed, rate: rate}}
  end

# --- idle link -----------------------------------------------------------------
echo = Traffic.start_echo(hd(receivers))
[probe | _] = signals

idle =
  for mode <- [:plain, :ours], into: %{} do
    rtts =
      Cluster.rpc(
        sender,
        Traffic,
        :idle_round_trips,
        [echo, probe, mode, idle_trials, 20],
        60_000
      )

    {mode, %{median_us: Stats.median(rtts), p99_us: Stats.percentile(rtts, 99)}}
  end

send(echo, :stop)

# --- batch formation (this node) ----------------------------------------------
thousand = Enum.take(signals, 1000)
dest = self()
fake_nodes = [:recv1@bench, :recv2@bench, :recv3@bench]
classes = %{recv1@bench: :same_zone, recv2@bench: :same_region, recv3@bench: :remote}

entries =
  Enum.with_index(thousand, fn s, i ->
    {{:"agent#{rem(i, 10)}", Enum.at(fake_nodes, rem(i, 3))}, s}
  end)

sizes = Jido.Distributed.Options.get(:batch_sizes)

results =
  Runner.run(
    [
      {"batch formation: optimize_routing + batch_by_network_cost, 1000",
       fn ->
         entries
         |> Jido.Distributed.Optimizer.optimize_routing()
         |> Jido.Distributed.Optimizer.batch_by_network_cost(
           class_of: &Map.fetch!(classes, &1),
           batch_sizes: sizes
         )
       end},
      {"frame build: encode + push + frame 1000",
       fn ->
         buf = LinkBuffer.new(10_000, 64 * 1024 * 1024, :reject)

         Enum.each(
           thousand,
           &LinkBuffer.push(buf, [:erlang.term_to_binary({dest, {:signal, &1}})])
         )

         {:ok, _} = LinkBuffer.take(buf, 1000, 64 * 1024 * 1024, 1_000_000)
       end},
      {"baseline: term_to_binary each of 1000",
       fn -> Enum.each(thousand, &:erlang.term_to_binary({dest, {:signal, &1}})) end}
    ],
    opts
  )

Cluster.stop_nodes(nodes)

ratio = fn a, b -> if b == 0, do: 0.0, else: a / b end
round3 = &Float.round(&1 * 1.0, 3)

summary = %{
  "signals_paced" => paced_count,
  "signals_burst" => burst_count,
  "rate_signals_per_s" => rate,
  "packets_plain" => paced.plain.packets,
  "packets_ours" => paced.ours.packets,
  "bytes_plain" => paced.plain.bytes,
  "bytes_ours" => paced.ours.bytes,
  "packets_reduction" => round3.(1 - ratio.(paced.ours.packets, paced.plain.packets)),
  "bytes_reduction" => round3.(1 - ratio.(paced.ours.bytes, paced.plain.bytes)),
  "remote_sends_plain" => paced.plain.sends,
  "remote_sends_ours" => paced.ours.sends,
  "remote_sends_reduction" => round3.(1 - ratio.(paced.ours.sends, paced.plain.sends)),
  "achieved_rate_plain" => round(paced.plain.achieved_rate),
  "achieved_rate_ours" => round(paced.ours.achieved_rate),
  "p50_latency_ms" => round3.(paced.ours.p50_ms),
  "p99_latency_ms" => round3.(paced.ours.p99_ms),
  "plain_p50_latency_ms" => round3.(paced.plain.p50_ms),
  "plain_p99_latency_ms" => round3.(paced.plain.p99_ms),
  "max_rate_plain" => round(burst.plain.rate),
  "max_rate_ours" => round(burst.ours.rate),
  "throughput_ratio" => round3.(ratio.(burst.ours.rate, burst.plain.rate)),
  "idle_rtt_plain_us" => idle.plain.median_us,
  "idle_rtt_ours_us" => idle.ours.median_us,
  "idle_added_latency_ms" => round3.((idle.ours.median_us - idle.plain.median_us) / 1000),
  "batch_formation_us_per_1000" =>
    round3.(
      Result.median_us(
        Runner.fetch!(results, "batch formation: optimize_routing + batch_by_network_cost, 1000")
      )
    ),
  "frame_build_us_per_1000" =>
    round3.(Result.median_us(Runner.fetch!(results, "frame build: encode + push + frame 1000"))),
  "baseline_encode_us_per_1000" =>
    round3.(Result.median_us(Runner.fetch!(results, "baseline: term_to_binary each of 1000")))
}

Runner.print_table(results, title: "batch formation")
IO.puts(Runner.format_summary(summary))
path = Runner.write_json!("batching", results, summary, opts)
IO.puts("wrote #{path}")

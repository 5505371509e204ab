# Failure detection and latency measurement (Jido.Distributed.Monitor) on
# the network testbed (real hosts: network namespaces, as root).
#
#     MIX_ENV=dev mix run --no-start bench/monitor.exs [--quick] [--trials N]
#
# Four hosts a, b, c, d, default Monitor settings (except where said):
#
#   * detection: d is cut off silently (packets dropped in the bridge, no
#     nodedown); time from the cut until a's Monitor reports d
#     :unreachable (`detect_ms_*`), then from the heal until a reports it
#     :recovered (`recovered_ms_*`); --trials times (20, or 5 with --quick);
#   * false positives: max-rate traffic a -> b and c -> d, both schedulers
#     of every host kept busy, and a paused for 200 ms every 2 s; every
#     :unreachable reported by any host counts (none is faulty);
#   * heartbeat traffic: an idle pair's bytes on the wire per second, both
#     directions (UDP heartbeats with IP/UDP headers, plus everything on the
#     distribution connection with TCP/IP headers: RTT pings, matrix rows,
#     ticks), against the issue's 2 KB/s;
#   * RTT: the delay proxy adds 1, 5 and 20 ms to the c <-> d round trip;
#     the matrix's smoothed RTT against the path's RTT measured at the same
#     time with erpc round trips (`rtt_error_pct`), and against base + set
#     (`rtt_error_vs_set_pct`: the proxies' millisecond timers add their own
#     delay, so this one also measures the proxy); c and d ping every 250 ms
#     here so the estimate settles within the run.
#
# Prints a summary and writes bench/results/monitor.json.
Code.require_file("support/load.exs", __DIR__)

alias Jido.Distributed.Bench.{Runner, Stats}
alias Jido.Distributed.Monitor
alias Jido.Distributed.Test.{Cluster, Testbed, TopologyLog}
alias Jido.Distributed.Test.Testbed.Probe

opts = Runner.parse_args!(System.argv(), trials: :integer)
quick = Keyword.get(opts, :quick, false)
trials = Keyword.get(opts, :trials, if(quick, do: 5, else: 20))
fp_seconds = if quick, do: 15, else: 60

if reason = Testbed.unavailable_reason() do
  IO.puts(:stderr, "monitor: the testbed cannot run here: #{reason}")
  System.halt(2)
end

IO.puts("monitor: #{if quick, do: "quick", else: "full"} run, #{trials} trials")
Cluster.ensure_distributed()
{:ok, _} = Application.ensure_all_started(:jido_distributed)

fast_rtt = [env: [monitor: [rtt_probe_ms: 250]]]

{:ok, tb} = Testbed.start_link(hosts: [:a, :b, [name: :c] ++ fast_rtt, [name: :d] ++ fast_rtt])

hosts = [:a, :b, :c, :d]
node = fn h -> Testbed.node(tb, h) end
status = fn on, h -> Testbed.call(tb, on, Monitor, :status, [node.(h)]) end

await = fn what, fun, timeout ->
  Cluster.await(fun, timeout) || raise "timed out waiting for #{what}"
end

all_up = fn ->
  for x <- hosts,
      y <- hosts,
      x != y,
      do: await.("#{y} up on #{x}", fn -> status.(x, y) == :up end, 20_000)
end

first = fn on, kind, h, since ->
  Testbed.call(tb, on, TopologyLog, :first, [kind, node.(h), since])
end

all_up.()
for h <- hosts, do: Testbed.call(tb, h, TopologyLog, :start, [])

# --- detection and recovery ---------------------------------------------------
samples =
  for i <- 1..trials do
    Process.sleep(300 + :rand.uniform(300))
    cut = TopologyLog.now_us()
    :ok = Testbed.partition(tb, [[:a, :b, :c], [:d]])
    await.("d unreachable on a", fn -> first.(:a, :unreachable, :d, cut) end, 10_000)
    detect = (first.(:a, :unreachable, :d, cut) - cut) / 1_000
    Process.sleep(200)
    heal = TopologyLog.now_us()
    :ok = Testbed.heal(tb)
    await.("d recovered on a", fn -> first.(:a, :recovered, :d, heal) end, 10_000)
    recovered = (first.(:a, :recovered, :d, heal) - heal) / 1_000

    IO.puts(
      "  trial #{i}: detected #{Float.round(detect, 1)} ms, recovered #{Float.round(recovered, 1)} ms"
    )

    all_up.()
    {detect, recovered}
  end

detects = Enum.map(samples, &elem(&1, 0))
recovers = Enum.map(samples, &elem(&1, 1))

# --- heartbeat traffic of an idle pair ----------------------------------------
pair_bytes = fn ->
  for {x, y} <- [{:a, :b}, {:b, :a}], reduce: 0 do
    acc ->
      udp = Testbed.call(tb, x, Monitor, :stats, []).udp
      peers = max(length(hosts) - 1, 1)
      dist = Testbed.call(tb, x, Probe, :dist_sent, [node.(y)])
      # UDP: the share of this node's heartbeat datagrams sent to y, plus
      # 28 bytes of IP and UDP headers each; distribution: 52 bytes of TCP
      # and IP headers per packet.
      acc + (udp.send_oct + 28 * udp.send_cnt) / peers + dist.send_oct + 52 * dist.send_cnt
  end
end

idle_s = if quick, do: 5, else: 10
b0 = pair_bytes.()
Process.sleep(idle_s * 1_000)
heartbeat_bytes = (pair_bytes.() - b0) / idle_s

# --- RTT against the proxy's delay -----------------------------------------------
all_up.()

matrix_rtt_ms = fn ->
  row = Testbed.call(tb, :c, Monitor, :latency_matrix, [])[node.(:c)].row
  row[node.(:d)] / 1_000
end

# Pings every 250 ms and a 1/8 gain: 8 s settle the estimate.
Process.sleep(8_000)
base_ms = matrix_rtt_ms.()

rtt =
  for ms <- [1, 5, 20] do
    :ok = Testbed.set_latency(tb, :c, :d, ms)
    Process.sleep(8_000)
    measured = matrix_rtt_ms.()
    # What the proxied path really takes (the proxies' timers add their
    # own fraction of a millisecond or more): erpc round trips, median of 21.
    actual = Testbed.call(tb, :c, Cluster, :measure_rtt_us, [node.(:d), 21], 60_000) / 1_000
    set = base_ms + ms
    error = abs(measured - actual) / actual * 100
    error_vs_set = abs(measured - set) / set * 100

    IO.puts(
      "  rtt +#{ms} ms: matrix #{Float.round(measured, 2)} ms, path #{Float.round(actual, 2)} ms, " <>
        "base + set #{Float.round(set, 2)} ms"
    )

    {ms,
     %{
       set_ms: ms,
       base_plus_set_ms: set,
       path_ms: actual,
       matrix_ms: measured,
       error_pct: error,
       error_vs_set_pct: error_vs_set
     }}
  end

:ok = Testbed.set_latency(tb, :c, :d, 0)

# --- false positives ------------------------------------------------------------
since = TopologyLog.now_us()
c1 = Testbed.call(tb, :b, Probe, :start_counter, [:jdtb_fp1])
c2 = Testbed.call(tb, :d, Probe, :start_counter, [:jdtb_fp2])
f1 = Testbed.call(tb, :a, Probe, :start_flood, [:jdtb_fp1, node.(:b), 16_384])
f2 = Testbed.call(tb, :c, Probe, :start_flood, [:jdtb_fp2, node.(:d), 16_384])
burners = for h <- hosts, do: {h, Testbed.call(tb, h, Probe, :burn_cpu, [2])}

deadline = System.monotonic_time(:millisecond) + fp_seconds * 1_000

pauses =
  Stream.repeatedly(fn ->
    Process.sleep(1_800)
    :ok = Testbed.pause(tb, :a, 200)
    await.("a resumed", fn -> not Testbed.paused?(tb, :a) end, 5_000)
  end)
  |> Enum.take_while(fn _ -> System.monotonic_time(:millisecond) < deadline end)
  |> length()

flooded = Testbed.call(tb, :b, Probe, :count, [c1]) + Testbed.call(tb, :d, Probe, :count, [c2])
Testbed.call(tb, :a, Probe, :stop, [f1])
Testbed.call(tb, :c, Probe, :stop, [f2])
for {h, pids} <- burners, pid <- pids, do: Testbed.call(tb, h, Probe, :stop, [pid])

false_positives =
  for h <- hosts,
      {at, {:unreachable, _}} <- Testbed.call(tb, h, TopologyLog, :events, []),
      at >= since,
      reduce: 0,
      do: (n -> n + 1)

stalls = for h <- hosts, into: %{}, do: {h, Testbed.call(tb, h, Monitor, :stats, []).stalls}

Testbed.stop(tb)

summary = %{
  trials: trials,
  detect_ms_p50: Stats.percentile(detects, 50),
  detect_ms_p99: Stats.percentile(detects, 99),
  detect_ms_max: Enum.max(detects),
  recovered_ms_p50: Stats.percentile(recovers, 50),
  recovered_ms_p99: Stats.percentile(recovers, 99),
  false_positives: false_positives,
  false_positive_run_s: fp_seconds,
  false_positive_pauses_of_a: pauses,
  false_positive_flood_messages: flooded,
  watcher_stalls_excused: stalls,
  heartbeat_bytes_per_node_s: Float.round(heartbeat_bytes, 1),
  rtt_base_ms: base_ms,
  rtt: Map.new(rtt, fn {ms, r} -> {"plus_#{ms}ms", r} end),
  rtt_error_pct: rtt |> Enum.map(fn {_, r} -> r.error_pct end) |> Enum.max() |> Float.round(1),
  rtt_error_vs_set_pct:
    rtt |> Enum.map(fn {_, r} -> r.error_vs_set_pct end) |> Enum.max() |> Float.round(1),
  targets: %{
    detect_ms_p99: 1_000,
    detect_ms_p50: 500,
    recovered_ms_p50: 500,
    false_positives: 0,
    heartbeat_bytes_per_node_s: 2_000,
    rtt_error_pct: 20
  }
}

IO.puts(Runner.format_summary(Map.drop(summary, [:rtt, :targets, :watcher_stalls_excused])))
path = Runner.write_json!("monitor", [], summary, opts)
IO.puts("\nwrote #{path}")

# The chaos run on the network testbed (real hosts: network namespaces, as
# root): 5 hosts, 4 senders on 2 of them sending numbered signals through
# Jido.Distributed.send/3 and dispatch/2 to 40 targets on the other 3,
# under a seeded random schedule of silent full partitions, partial
# partitions (a-b cut, both reach the rest), one-way cuts and host pauses
# (0.2-3 s), each followed by a heal.
#
#     make chaos                       (the long run)
#     MIX_ENV=dev mix run --no-start bench/chaos.exs [--seed N] [--quick]
#         [--signals N] [--duration-s S] [--net-ticktime T]
#         [--max-partition-s S] [--final-partition-s S]
#
# Long run (default): 100,000 signals over 360 s, OTP's default
# net_ticktime (60 s), cuts of 1-15 s, and a last full partition of 90 s,
# longer than the tick timeout, to show when the current code notices a
# silent partition. --quick: the short run of `make test` (20,000 signals,
# 45 s, net_ticktime 4, no final partition).
#
# Checks that every accepted signal arrived exactly once and in order per
# (sender, target); exits 1 otherwise. Prints the seed (re-use it with
# --seed), the schedule as run, per-event recovery (time from the heal
# until the backlog was delivered) and detection (first nodedown between
# the hosts cut off from each other), and writes bench/results/chaos.json
# and bench/results/chaos.svg (throughput per second per target host, faults
# shaded).
Code.require_file("support/load.exs", __DIR__)
Code.require_file("support/chaos_svg.ex", __DIR__)

alias Jido.Distributed.Bench.{ChaosSvg, Runner}
alias Jido.Distributed.Test.{Chaos, Testbed}

{opts, _, _} =
  OptionParser.parse(System.argv(),
    strict: [
      seed: :integer,
      quick: :boolean,
      signals: :integer,
      duration_s: :integer,
      net_ticktime: :integer,
      max_partition_s: :integer,
      final_partition_s: :integer
    ]
  )

if reason = Testbed.unavailable_reason() do
  IO.puts(:stderr, "chaos: the testbed cannot run here: #{reason}")
  System.halt(2)
end

quick = Keyword.get(opts, :quick, false)

defaults =
  if quick,
    do: [
      signals: 20_000,
      duration_s: 45,
      net_ticktime: 4,
      max_partition_s: 6,
      final_partition_s: nil
    ],
    else: [
      signals: 100_000,
      duration_s: 360,
      net_ticktime: nil,
      max_partition_s: 15,
      final_partition_s: 90
    ]

get = fn key -> Keyword.get(opts, key, defaults[key]) end
seed = Keyword.get_lazy(opts, :seed, fn -> :rand.uniform(1_000_000_000) end)

schedule =
  [partition_ms: {1_000, get.(:max_partition_s) * 1_000}] ++
    if(get.(:final_partition_s),
      do: [final_partition_ms: get.(:final_partition_s) * 1_000],
      else: []
    )

IO.puts("chaos run, seed #{seed} (re-run with --seed #{seed}#{if quick, do: " --quick"})")

started = System.monotonic_time(:millisecond)

result =
  Chaos.run(
    seed: seed,
    signals: get.(:signals),
    duration_ms: get.(:duration_s) * 1_000,
    net_ticktime: get.(:net_ticktime),
    schedule: schedule,
    drain_timeout_ms: 300_000,
    log: &IO.puts/1
  )

wall_s = div(System.monotonic_time(:millisecond) - started, 1_000)
d = result.delivery

IO.puts("""

event                                         start ms  heal ms  backlog  recovery ms  nodedown after ms
""")

for e <- result.events do
  IO.puts(
    String.pad_trailing(Chaos.describe(%{e | cut: e.cut && List.to_tuple(e.cut)}), 44) <>
      String.pad_leading("#{e.started_ms}", 10) <>
      String.pad_leading("#{e.healed_ms}", 9) <>
      String.pad_leading("#{e.backlog}", 9) <>
      String.pad_leading("#{inspect(e.recovery_ms)}", 13) <>
      String.pad_leading("#{inspect(e.nodedown_after_ms)}", 19)
  )
end

IO.puts("""

accepted #{d.accepted}, delivered #{d.delivered} (#{d.distinct} distinct), lost #{d.lost}, \
duplicated #{d.duplicated}, unexpected #{d.unexpected}, order violations #{d.order_violations}
net_ticktime #{result.settings.net_ticktime} s (#{result.settings.net_ticktime_source}); \
senders done at #{result.senders_done_ms} ms, all delivered at #{result.drained_ms} ms; wall #{wall_s} s
""")

summary = Map.merge(result, %{wall_s: wall_s, quick: quick})
path = Runner.write_json!("chaos", [], summary, quick: quick)
svg = Path.join(Path.dirname(path), "chaos.svg")
File.write!(svg, ChaosSvg.render(result))
IO.puts("wrote #{path} and #{svg}")

unless result.drained and d.exactly_once and d.order_held and d.accepted == get.(:signals) do
  IO.puts(:stderr, "chaos: FAILED (seed #{seed})")
  System.halt(1)
end

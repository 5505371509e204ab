# Capability lookup: CapabilityIndex.lookup/2 against a naive scan of every
# pattern with Pattern.match?/2, on the same index and the same types.
#
#   mix run bench/pattern_index.exs [--agents 10000] [--patterns 500]
#     [--per-agent 1] [--lookups 20000] [--runs 5] [--seed 1]
#
# Each agent declares --per-agent patterns (default 1: 10,000 registrations
# over 500 patterns, about 20 agents per pattern); a value above 1 means 1 to
# that many, chosen at random.
#
# Prints median/p99 µs per lookup and writes bench/results/pattern_index.json.
Code.require_file("support/patterns.ex", __DIR__)

alias Jido.Distributed.Routing.{CapabilityIndex, Pattern}

{opts, _} =
  OptionParser.parse!(System.argv(),
    strict: [
      agents: :integer,
      patterns: :integer,
      per_agent: :integer,
      lookups: :integer,
      runs: :integer,
      seed: :integer
    ]
  )

agents = Keyword.get(opts, :agents, 10_000)
pattern_count = Keyword.get(opts, :patterns, 500)
per_agent = Keyword.get(opts, :per_agent, 1)
lookups = Keyword.get(opts, :lookups, 20_000)
runs = Keyword.get(opts, :runs, 5)
seed = Keyword.get(opts, :seed, 1)
:rand.seed(:exsss, {seed, seed, seed})

domains = for i <- 1..25, do: "domain#{i}"
entities = for i <- 1..20, do: "entity#{i}"
subs = for i <- 1..5, do: "sub#{i}"
actions = ~w(created updated deleted added removed failed started stopped approved rejected)

random_type = fn ->
  if :rand.uniform(4) == 1,
    do:
      Enum.join(
        [Enum.random(domains), Enum.random(entities), Enum.random(subs), Enum.random(actions)],
        "."
      ),
    else: Enum.join([Enum.random(domains), Enum.random(entities), Enum.random(actions)], ".")
end

patterns =
  Jido.Distributed.Bench.Patterns.distinct(pattern_count, domains, entities, actions, random_type)

entries =
  for agent <- 1..agents, _ <- 1..:rand.uniform(per_agent) do
    {elem(patterns, :rand.uniform(pattern_count) - 1), "agent-#{agent}"}
  end

{build_us, index} = :timer.tc(fn -> CapabilityIndex.new(entries) end)

# Baseline: every compiled pattern with its sorted values, scanned in full.
naive =
  entries
  |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
  |> Enum.map(fn {p, vs} -> {Pattern.compile!(p), Enum.sort(Enum.uniq(vs))} end)

naive_lookup = fn type ->
  naive
  |> Enum.flat_map(fn {p, vs} -> if Pattern.match?(p, type), do: vs, else: [] end)
  |> Enum.sort()
  |> Enum.dedup()
end

types = for _ <- 1..lookups, do: random_type.()

# Same answers (the index orders by arrival, the scan sorts), or the
# comparison means nothing.
for type <- Enum.take(types, 500) do
  Enum.sort(CapabilityIndex.lookup(index, type)) == naive_lookup.(type) ||
    raise "lookup disagrees with the naive scan on #{type}"
end

measure = fn fun, types ->
  Enum.each(Enum.take(types, 2_000), fun)

  samples =
    for _run <- 1..runs, type <- types do
      t0 = :erlang.monotonic_time(:nanosecond)
      fun.(type)
      :erlang.monotonic_time(:nanosecond) - t0
    end

  sorted = samples |> Enum.sort() |> List.to_tuple()
  n = tuple_size(sorted)
  at = fn q -> elem(sorted, min(n - 1, trunc(q * n))) / 1000 end
  mean = Enum.sum(samples) / n / 1000

  %{
    median_us: at.(0.5),
    p99_us: at.(0.99),
    mean_us: mean,
    ops_per_s: round(1_000_000 / mean),
    samples: n
  }
end

# The naive scan is ~1000x slower: time it on fewer types.
naive_types = Enum.take(types, max(div(lookups, 20), 100))
index_stats = measure.(&CapabilityIndex.lookup(index, &1), types)
naive_stats = measure.(naive_lookup, naive_types)

result_sizes = Enum.map(types, &length(CapabilityIndex.lookup(index, &1)))
matched = Enum.count(result_sizes, &(&1 > 0))
word = :erlang.system_info(:wordsize)
index_bytes = :erts_debug.size(index) * word
naive_bytes = :erts_debug.size(naive) * word

IO.puts("""
CapabilityIndex.lookup/2: #{agents} agents, #{pattern_count} patterns, \
#{CapabilityIndex.size(index)} (pattern, agent) pairs, built in #{Float.round(build_us / 1000, 1)} ms
types: #{length(types)} x #{runs} runs; #{matched} match something; \
mean #{Float.round(Enum.sum(result_sizes) / length(result_sizes), 1)} agents per lookup, \
max #{Enum.max(result_sizes)}
""")

row = fn name, s, bytes ->
  [
    String.pad_trailing(name, 22),
    s.median_us |> Float.round(2) |> to_string() |> String.pad_leading(12),
    s.p99_us |> Float.round(2) |> to_string() |> String.pad_leading(10),
    s.ops_per_s |> to_string() |> String.pad_leading(12),
    to_string(div(bytes, 1024)) |> String.pad_leading(10)
  ]
  |> Enum.join()
end

IO.puts(
  String.pad_trailing("", 22) <>
    String.pad_leading("median µs", 12) <>
    String.pad_leading("p99 µs", 10) <>
    String.pad_leading("ops/s", 12) <> String.pad_leading("KiB", 10)
)

IO.puts(row.("trie index", index_stats, index_bytes))
IO.puts(row.("naive scan (baseline)", naive_stats, naive_bytes))
IO.puts("speed-up (median): #{Float.round(naive_stats.median_us / index_stats.median_us, 1)}x")

json_stats = fn s ->
  "{" <>
    Enum.map_join(Enum.sort(s), ",", fn {k, v} -> ~s("#{k}":#{v}) end) <> "}"
end

json = """
{"bench":"pattern_index","agents":#{agents},"patterns":#{pattern_count},\
"per_agent":#{per_agent},"pairs":#{CapabilityIndex.size(index)},"lookups":#{length(types)},"runs":#{runs},"seed":#{seed},\
"otp":"#{System.otp_release()}","elixir":"#{System.version()}",\
"schedulers":#{System.schedulers_online()},"load_avg_1m":#{File.read!("/proc/loadavg") |> String.split() |> hd()},\
"index":#{json_stats.(index_stats)},"index_bytes":#{index_bytes},\
"naive_scan":#{json_stats.(naive_stats)},"naive_bytes":#{naive_bytes}}
"""

File.mkdir_p!("bench/results")
File.write!("bench/results/pattern_index.json", json)
IO.puts("wrote bench/results/pattern_index.json")

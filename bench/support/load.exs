# Loads the benchmark support modules. Benchmark scripts, the demo and tests do
#
#     Code.require_file("support/load.exs", __DIR__)   # from bench/
#
# (with the path adjusted to where they live). Loading twice is a no-op.
for file <- ~w(json.ex stats.ex result.ex signals.ex patterns.ex runner.ex) do
  Code.require_file(file, __DIR__)
end

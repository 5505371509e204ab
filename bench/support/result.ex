defmodule Jido.Distributed.Bench.Result do
  @moduledoc """
  What `Jido.Distributed.Bench.Runner.run/2` measured for one job.

  Times are nanoseconds per call. When one call is shorter than the runner's
  batching threshold, each sample times `inner` calls in a row and is divided
  by `inner`; then median and p99 describe such batches, not single calls.

  `memory` is `nil` when memory was not measured, otherwise the median over
  the memory runs of, for one call in a fresh process:

    * `:heap_bytes` - bytes allocated on the process heap (and heap
      fragments), counted by tracing the process's garbage collections;
    * `:binary_bytes` - bytes of off-heap (reference-counted) binaries the
      call created, from the process's binary virtual heap;
    * `:total_bytes` - their sum.

  Memory a NIF allocates natively and frees before returning, and memory of
  other processes, is not counted.

  `reductions_per_call` is BEAM work; time spent inside a NIF barely shows
  in it.
  """

  alias Jido.Distributed.Bench.Stats

  @enforce_keys [:name, :samples, :inner, :calls, :stats, :ops_per_second]
  defstruct [
    :name,
    :samples,
    :inner,
    :calls,
    :stats,
    :ops_per_second,
    :reductions_per_call,
    memory: nil
  ]

  @typedoc "Bytes allocated by one call (see the module doc)."
  @type memory :: %{
          heap_bytes: non_neg_integer(),
          binary_bytes: non_neg_integer(),
          total_bytes: non_neg_integer()
        }

  @typedoc "One job's measurements."
  @type t :: %__MODULE__{
          name: String.t(),
          samples: [number()],
          inner: pos_integer(),
          calls: pos_integer(),
          stats: Stats.summary(),
          ops_per_second: float(),
          reductions_per_call: float() | nil,
          memory: memory() | nil
        }

  @doc "Median time per call in microseconds."
  @spec median_us(t()) :: float()
  def median_us(%__MODULE__{stats: stats}), do: stats.median / 1000

  @doc "99th-percentile time per call in microseconds."
  @spec p99_us(t()) :: float()
  def p99_us(%__MODULE__{stats: stats}), do: stats.p99 / 1000

  @doc """
  The result as a JSON-ready map with string keys (times in ns, rounded to
  0.1 ns; raw samples left out).
  """
  @spec to_map(t()) :: %{String.t() => term()}
  def to_map(%__MODULE__{} = r) do
    memory = r.memory || %{}

    %{
      "name" => r.name,
      "samples" => r.stats.n,
      "calls" => r.calls,
      "inner" => r.inner,
      "median_ns" => round1(r.stats.median),
      "p99_ns" => round1(r.stats.p99),
      "mean_ns" => round1(r.stats.mean),
      "min_ns" => round1(r.stats.min),
      "max_ns" => round1(r.stats.max),
      "stddev_ns" => round1(r.stats.stddev),
      "ops_per_second" => round1(r.ops_per_second),
      "reductions_per_call" => r.reductions_per_call && round1(r.reductions_per_call),
      "memory_bytes" => Map.get(memory, :total_bytes),
      "heap_bytes" => Map.get(memory, :heap_bytes),
      "binary_bytes" => Map.get(memory, :binary_bytes)
    }
  end

  defp round1(x) when is_integer(x), do: x
  defp round1(x) when is_float(x), do: Float.round(x, 1)
end

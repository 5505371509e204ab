defmodule Jido.Distributed.Bench.Stats do
  @moduledoc """
  Summary statistics over benchmark samples (pure functions).

  Percentiles use the nearest-rank method: the p-th percentile of `n` sorted
  samples is the one at rank `ceil(p / 100 * n)`, so it is always one of the
  measured values (with fewer than 100 samples, p99 is the maximum). The
  median of an even number of samples is the mean of the two middle ones.

      iex> Jido.Distributed.Bench.Stats.median([3, 1, 2, 10])
      2.5
      iex> Jido.Distributed.Bench.Stats.percentile(Enum.to_list(1..1000), 99)
      990
  """

  @typedoc "Summary of a non-empty list of samples, in the samples' unit."
  @type summary :: %{
          n: pos_integer(),
          min: number(),
          max: number(),
          mean: float(),
          median: number(),
          p99: number(),
          stddev: float()
        }

  @doc """
  Median of a non-empty list of numbers.
  """
  @spec median([number(), ...]) :: number()
  def median([_ | _] = samples), do: samples |> Enum.sort() |> sorted_median()

  @doc """
  The `p`-th percentile (`0 < p <= 100`) of a non-empty list of numbers,
  by nearest rank.
  """
  @spec percentile([number(), ...], number()) :: number()
  def percentile([_ | _] = samples, p) when is_number(p) and p > 0 and p <= 100 do
    samples |> Enum.sort() |> sorted_percentile(p)
  end

  @doc """
  Arithmetic mean of a non-empty list of numbers, as a float.
  """
  @spec mean([number(), ...]) :: float()
  def mean([_ | _] = samples), do: Enum.sum(samples) / length(samples)

  @doc """
  Sample standard deviation (divides by `n - 1`); `0.0` for one sample.
  """
  @spec stddev([number(), ...]) :: float()
  def stddev([_]), do: 0.0

  def stddev([_ | _] = samples) do
    avg = mean(samples)
    squares = Enum.reduce(samples, 0.0, fn x, acc -> acc + (x - avg) * (x - avg) end)
    :math.sqrt(squares / (length(samples) - 1))
  end

  @doc """
  All of the above at once (one sort).

      iex> Jido.Distributed.Bench.Stats.summarize([4, 1, 3, 2])
      %{n: 4, min: 1, max: 4, mean: 2.5, median: 2.5, p99: 4, stddev: 1.2909944487358056}
  """
  @spec summarize([number(), ...]) :: summary()
  def summarize([_ | _] = samples) do
    sorted = Enum.sort(samples)

    %{
      n: length(sorted),
      min: hd(sorted),
      max: List.last(sorted),
      mean: mean(sorted),
      median: sorted_median(sorted),
      p99: sorted_percentile(sorted, 99),
      stddev: stddev(sorted)
    }
  end

  @doc """
  Operations per second for an operation whose duration is `ns` nanoseconds.

      iex> Jido.Distributed.Bench.Stats.ops_per_second(250_000)
      4000.0
  """
  @spec ops_per_second(number()) :: float()
  def ops_per_second(ns) when is_number(ns) and ns > 0, do: 1.0e9 / ns

  defp sorted_median(sorted) do
    n = length(sorted)
    mid = div(n, 2)

    if rem(n, 2) == 1 do
      Enum.at(sorted, mid)
    else
      (Enum.at(sorted, mid - 1) + Enum.at(sorted, mid)) / 2
    end
  end

  defp sorted_percentile(sorted, p) do
    n = length(sorted)
    rank = max(rank(p, n), 1)
    Enum.at(sorted, min(rank, n) - 1)
  end

  # ceil(p * n / 100), in integers when p is one so 99 * 1000 / 100 is exactly 990.
  defp rank(p, n) when is_integer(p), do: div(p * n + 99, 100)

  defp rank(p, n) do
    x = p * n / 100
    t = trunc(x)
    if x > t, do: t + 1, else: t
  end
end

defmodule Jido.Distributed.Monitor.Rtt do
  @moduledoc """
  Round-trip time estimate of one peer: smoothed RTT and its variation as
  TCP computes them (RFC 6298: `srtt += (r - srtt) / 8`,
  `rttvar += (|r - srtt| - rttvar) / 4`), plus the 99th percentile and the
  minimum over a window of recent samples. Times in microseconds.

  Pure.

      iex> alias Jido.Distributed.Monitor.Rtt
      iex> r = Enum.reduce([1_000, 1_200, 800, 1_000], Rtt.new(), &Rtt.sample(&2, &1))
      iex> {round(Rtt.srtt(r)), Rtt.min(r), Rtt.p99(r), Rtt.count(r)}
      {997, 800, 1200, 4}
  """

  defstruct srtt: nil, rttvar: nil, window: {}, next: 0, count: 0, size: 64

  @typedoc "An estimate."
  @type t :: %__MODULE__{
          srtt: float() | nil,
          rttvar: float() | nil,
          window: tuple(),
          next: non_neg_integer(),
          count: non_neg_integer(),
          size: pos_integer()
        }

  @doc "An empty estimate keeping the last `size` samples for `p99/1` and `min/1`."
  @spec new(pos_integer()) :: t()
  def new(size \\ 64) when is_integer(size) and size > 0, do: %__MODULE__{size: size}

  @doc "Adds a sample (µs); negative samples are ignored."
  @spec sample(t(), number()) :: t()
  def sample(%__MODULE__{} = r, us) when is_number(us) and us >= 0 do
    {srtt, rttvar} =
      case r.srtt do
        nil -> {us * 1.0, us / 2}
        srtt -> {srtt + (us - srtt) / 8, r.rttvar + (abs(us - srtt) - r.rttvar) / 4}
      end

    window =
      if tuple_size(r.window) < r.size,
        do: Tuple.append(r.window, us),
        else: put_elem(r.window, r.next, us)

    %{
      r
      | srtt: srtt,
        rttvar: rttvar,
        window: window,
        next: rem(r.next + 1, r.size),
        count: r.count + 1
    }
  end

  def sample(%__MODULE__{} = r, _us), do: r

  @doc "Smoothed RTT in µs (`nil` without samples)."
  @spec srtt(t()) :: float() | nil
  def srtt(%__MODULE__{srtt: srtt}), do: srtt

  @doc "RTT variation in µs (`nil` without samples)."
  @spec rttvar(t()) :: float() | nil
  def rttvar(%__MODULE__{rttvar: rttvar}), do: rttvar

  @doc "Samples taken so far."
  @spec count(t()) :: non_neg_integer()
  def count(%__MODULE__{count: count}), do: count

  @doc "The 99th percentile of the window (`nil` without samples)."
  @spec p99(t()) :: number() | nil
  def p99(%__MODULE__{window: {}}), do: nil

  def p99(%__MODULE__{window: window}) do
    sorted = window |> Tuple.to_list() |> Enum.sort()
    Enum.at(sorted, min(length(sorted) - 1, ceil(length(sorted) * 0.99) - 1))
  end

  @doc "The lowest sample of the window (`nil` without samples)."
  @spec min(t()) :: number() | nil
  def min(%__MODULE__{window: {}}), do: nil
  def min(%__MODULE__{window: window}), do: window |> Tuple.to_list() |> Enum.min()

  @doc "A summary map: `srtt_us`, `rttvar_us`, `p99_us`, `min_us`, `samples`."
  @spec summary(t()) :: map()
  def summary(%__MODULE__{} = r) do
    %{
      srtt_us: r.srtt && Float.round(r.srtt, 1),
      rttvar_us: r.rttvar && Float.round(r.rttvar, 1),
      p99_us: p99(r),
      min_us: __MODULE__.min(r),
      samples: r.count
    }
  end
end

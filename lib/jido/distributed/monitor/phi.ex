defmodule Jido.Distributed.Monitor.Phi do
  @moduledoc """
  A phi-accrual failure detector for one peer (Hayashibara et al., as in
  Akka and Cassandra): from the intervals between the peer's signs of life
  it computes `phi`, the suspicion that the peer is gone, on a log scale:
  `phi = 8` means the current silence would happen by chance once in 10^8
  under the observed distribution of intervals.

  The interval distribution is a normal one with the window's mean and
  standard deviation, the deviation held at `:min_std_ms` at least (so a
  perfectly regular sender is not declared dead after a few ms of jitter),
  and the mean raised by `:acceptable_pause_ms`.

  Pure: times are passed in (milliseconds, any monotonic clock).

      iex> alias Jido.Distributed.Monitor.Phi
      iex> d = Enum.reduce(1..20, Phi.new(expected_ms: 100), &Phi.heartbeat(&2, &1 * 100))
      iex> Phi.phi(d, 2_050) < 1.0
      true
      iex> Phi.phi(d, 2_400) > 8.0
      true
  """

  @enforce_keys [:window, :n, :sum, :sum_sq, :last, :max_samples, :min_std, :pause]
  defstruct @enforce_keys

  @typedoc "A detector."
  @type t :: %__MODULE__{
          window: :queue.queue(number()),
          n: non_neg_integer(),
          sum: number(),
          sum_sq: number(),
          last: integer() | nil,
          max_samples: pos_integer(),
          min_std: number(),
          pause: number()
        }

  @doc """
  A detector with no heartbeat yet.

  ## Options

    * `:expected_ms` - the heartbeat interval, used as the first sample
      (with a deviation of a quarter of it) until real ones arrive; default 100.
    * `:max_samples` - intervals kept; default 200.
    * `:min_std_ms` - lowest standard deviation assumed; default 25.
    * `:acceptable_pause_ms` - added to the mean; default 0.
  """
  @spec new(keyword()) :: t()
  def new(opts \\ []) do
    expected = Keyword.get(opts, :expected_ms, 100)
    std = expected / 4
    # Two samples around `expected` give that mean and deviation.
    a = expected - std
    b = expected + std

    %__MODULE__{
      window: :queue.from_list([a, b]),
      n: 2,
      sum: a + b,
      sum_sq: a * a + b * b,
      last: nil,
      max_samples: Keyword.get(opts, :max_samples, 200),
      min_std: Keyword.get(opts, :min_std_ms, 25),
      pause: Keyword.get(opts, :acceptable_pause_ms, 0)
    }
  end

  @doc "Records a sign of life at `now`."
  @spec heartbeat(t(), integer()) :: t()
  def heartbeat(%__MODULE__{last: nil} = d, now), do: %{d | last: now}

  def heartbeat(%__MODULE__{last: last} = d, now) when now <= last, do: d

  def heartbeat(%__MODULE__{} = d, now) do
    interval = now - d.last
    d = %{d | last: now, window: :queue.in(interval, d.window), n: d.n + 1}
    d = %{d | sum: d.sum + interval, sum_sq: d.sum_sq + interval * interval}

    if d.n > d.max_samples do
      {{:value, old}, window} = :queue.out(d.window)
      %{d | window: window, n: d.n - 1, sum: d.sum - old, sum_sq: d.sum_sq - old * old}
    else
      d
    end
  end

  @doc """
  Records a sign of life at `now` without taking the time since the last
  one as an interval (after an outage).

      iex> alias Jido.Distributed.Monitor.Phi
      iex> d = Enum.reduce(1..20, Phi.new(expected_ms: 100), &Phi.heartbeat(&2, &1 * 100))
      iex> Phi.mean(Phi.restart(d, 60_000)) == Phi.mean(d)
      true
  """
  @spec restart(t(), integer()) :: t()
  def restart(%__MODULE__{} = d, now), do: %{d | last: now}

  @doc "The last sign of life (`nil` before the first)."
  @spec last(t()) :: integer() | nil
  def last(%__MODULE__{last: last}), do: last

  @doc "Mean interval between signs of life, in ms."
  @spec mean(t()) :: float()
  def mean(%__MODULE__{n: n, sum: sum}), do: sum / n

  @doc "Suspicion at `now`: 0.0 right after a heartbeat, growing with silence."
  @spec phi(t(), integer()) :: float()
  def phi(%__MODULE__{last: nil}, _now), do: 0.0

  def phi(%__MODULE__{} = d, now) do
    mean = d.sum / d.n
    variance = max(d.sum_sq / d.n - mean * mean, 0.0)
    std = max(:math.sqrt(variance), d.min_std)
    elapsed = now - d.last
    # Clamped below: far before the mean, exp would overflow for nothing.
    y = max((elapsed - (mean + d.pause)) / std, -8.0)
    # Logistic approximation of the normal tail (as Akka's detector).
    e = :math.exp(-y * (1.5976 + 0.070566 * y * y))

    p_later =
      if elapsed > mean + d.pause,
        do: e / (1.0 + e),
        else: 1.0 - 1.0 / (1.0 + e)

    -:math.log10(max(p_later, 1.0e-300))
  end
end

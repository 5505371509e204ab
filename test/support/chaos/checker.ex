defmodule Jido.Distributed.Test.Chaos.Checker do
  @moduledoc """
  Judges a chaos run from what the senders accepted and what the targets
  received: pure functions over the reports, no processes.

    * Exactly once: for each (sender, target) pair, the accepted signals are
      `1..n`; each must arrive once. `lost` counts accepted signals that
      never arrived, `duplicated` extra arrivals of one signal, `unexpected`
      arrivals of signals never accepted.
    * Order: arrivals of each pair must have strictly increasing sequence
      numbers (`order_violations` counts the ones that do not).
    * Recovery: for each event, the backlog at its heal is every signal
      accepted before the heal and not yet delivered then; the recovery time
      is from the heal until the last of them arrived (`0` when there was
      no backlog).
    * Throughput: arrivals per second of the run, per target host.

  Times are OS milliseconds (all namespaces share the machine's clock).
  """

  @typedoc "Accepted signals: `%{{sender, target_index} => [accept_ms]}`, the list in sequence order."
  @type accepted :: %{{term(), non_neg_integer()} => [integer()]}

  @typedoc "Arrivals: `%{{sender, target_index} => [{seq, arrival_ms}]}` in arrival order."
  @type arrivals :: %{{term(), non_neg_integer()} => [{pos_integer(), integer()}]}

  @doc """
  Counts per pair and in total: `%{accepted, delivered, distinct, lost,
  duplicated, unexpected, order_violations, exactly_once, order_held}`.
  """
  @spec delivery(accepted(), arrivals()) :: map()
  def delivery(accepted, arrivals) do
    pairs = Enum.uniq(Map.keys(accepted) ++ Map.keys(arrivals))

    totals =
      pairs
      |> Enum.map(fn pair ->
        pair_counts(length(Map.get(accepted, pair, [])), Map.get(arrivals, pair, []))
      end)
      |> Enum.reduce(
        %{
          accepted: 0,
          delivered: 0,
          distinct: 0,
          lost: 0,
          duplicated: 0,
          unexpected: 0,
          order_violations: 0
        },
        fn counts, acc -> Map.merge(acc, counts, fn _k, a, b -> a + b end) end
      )

    Map.merge(totals, %{
      pairs: length(pairs),
      exactly_once: totals.lost == 0 and totals.duplicated == 0 and totals.unexpected == 0,
      order_held: totals.order_violations == 0
    })
  end

  defp pair_counts(n, arrivals) do
    seqs = Enum.map(arrivals, &elem(&1, 0))
    distinct = seqs |> Enum.uniq() |> length()
    valid = seqs |> Enum.uniq() |> Enum.count(&(&1 >= 1 and &1 <= n))

    violations =
      seqs
      |> Enum.chunk_every(2, 1, :discard)
      |> Enum.count(fn [a, b] -> b <= a end)

    %{
      accepted: n,
      delivered: length(seqs),
      distinct: distinct,
      lost: n - valid,
      duplicated: length(seqs) - distinct,
      unexpected: distinct - valid,
      order_violations: violations
    }
  end

  @doc """
  For a heal at `heal_ms`: `%{backlog: n, recovery_ms: ms | nil}` where
  `backlog` counts signals accepted at or before `heal_ms` and first delivered
  after it, and `recovery_ms` is from `heal_ms` to the last such delivery
  (`0` without backlog, `nil` if some were never delivered).
  """
  @spec recovery(accepted(), arrivals(), integer()) :: %{
          backlog: non_neg_integer(),
          recovery_ms: non_neg_integer() | nil
        }
  def recovery(accepted, arrivals, heal_ms) do
    {backlog, last, missing} =
      Enum.reduce(accepted, {0, heal_ms, 0}, fn {pair, times}, acc ->
        first_arrival = first_arrivals(Map.get(arrivals, pair, []))

        times
        |> Enum.with_index(1)
        |> Enum.reduce(acc, fn
          {t, seq}, {b, last, missing} when t <= heal_ms ->
            case first_arrival do
              %{^seq => at} when at > heal_ms -> {b + 1, max(last, at), missing}
              %{^seq => _} -> {b, last, missing}
              _ -> {b + 1, last, missing + 1}
            end

          _, acc ->
            acc
        end)
      end)

    %{backlog: backlog, recovery_ms: if(missing > 0, do: nil, else: last - heal_ms)}
  end

  defp first_arrivals(arrivals) do
    Enum.reduce(arrivals, %{}, fn {seq, at}, acc -> Map.put_new(acc, seq, at) end)
  end

  @doc """
  Arrivals per second since `start_ms` per target host:
  `%{host => [count_second_0, count_second_1, ...]}`, all lists as long as
  the longest. `host_of` maps a target index to its host.
  """
  @spec throughput(arrivals(), integer(), (non_neg_integer() -> term())) :: %{
          term() => [non_neg_integer()]
        }
  def throughput(arrivals, start_ms, host_of) do
    buckets =
      for {{_sender, t}, list} <- arrivals, {_seq, at} <- list, reduce: %{} do
        acc -> Map.update(acc, {host_of.(t), div(max(at - start_ms, 0), 1_000)}, 1, &(&1 + 1))
      end

    seconds = buckets |> Map.keys() |> Enum.map(&elem(&1, 1)) |> Enum.max(fn -> -1 end)
    hosts = buckets |> Map.keys() |> Enum.map(&elem(&1, 0)) |> Enum.uniq() |> Enum.sort()

    Map.new(hosts, fn host ->
      {host, Enum.map(0..seconds//1, &Map.get(buckets, {host, &1}, 0))}
    end)
  end

  @doc """
  The first `:nodedown` any host saw, between `window_start` and
  `window_end`, of a node it had a cut to: ms after `window_start`, or `nil`.
  `events` is `%{host => [NodeWatch.event()]}`; `cut?` tells whether
  `{observer_host, other_node}` was cut.
  """
  @spec first_nodedown(%{term() => list()}, integer(), integer(), (term(), node() -> boolean())) ::
          non_neg_integer() | nil
  def first_nodedown(events, window_start, window_end, cut?) do
    events
    |> Enum.flat_map(fn {host, list} ->
      for {at, :nodedown, node} <- list,
          at >= window_start and at <= window_end,
          cut?.(host, node),
          do: at - window_start
    end)
    |> Enum.min(fn -> nil end)
  end
end

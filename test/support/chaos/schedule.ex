defmodule Jido.Distributed.Test.Chaos.Schedule do
  @moduledoc """
  A seeded random schedule of network faults for the chaos run: pure, so the
  same seed and options always give the same schedule.

  Events follow one another (one fault at a time), each after a quiet gap,
  and each ends with a heal (or, for a pause, the resume):

    * `:full` - every host in one of two groups, at least one sender host
      and one target host on different sides; silent, both ways;
    * `:partial` - one sender host and one target host cut from each
      other, both still reach every other host;
    * `:one_way` - packets from one host to another dropped (between a
      sender host and a target host, either direction: a cut towards the
      sender drops only acks);
    * `:pause` - one host's VM stopped (SIGSTOP) for 0.2 to 3 s by default.

  The first events are one of each kind, in random order, so a short
  schedule still has every kind.

      iex> alias Jido.Distributed.Test.Chaos.Schedule
      iex> opts = [duration_ms: 30_000, senders: [:s1], targets: [:t1, :t2]]
      iex> Schedule.generate(7, opts) == Schedule.generate(7, opts)
      true
  """

  @typedoc "One fault: when it starts (ms after the run's start), how long it lasts, and what it does."
  @type event :: %{
          kind: :full | :partial | :one_way | :pause,
          at_ms: non_neg_integer(),
          duration_ms: pos_integer(),
          groups: [[atom()]] | nil,
          cut: {atom(), atom()} | nil,
          host: atom() | nil
        }

  @kinds [:full, :partial, :one_way, :pause]

  @doc """
  The schedule for `seed`.

  ## Options

    * `:duration_ms` (required) - no event ends later than this.
    * `:senders`, `:targets` (required) - the sender hosts and the target hosts.
    * `:warmup_ms` - quiet time before the first event (default 2_000).
    * `:gap_ms` - `{min, max}` quiet time after each heal (default `{1_000, 3_000}`).
    * `:partition_ms` - `{min, max}` length of a cut (default `{1_000, 6_000}`).
    * `:pause_ms` - `{min, max}` length of a pause (default `{200, 3_000}`).
    * `:final_partition_ms` - when set, one more `:full` event of exactly this
      length closes the schedule (to see what notices a long silent partition).
  """
  @spec generate(integer(), keyword()) :: [event()]
  def generate(seed, opts) when is_integer(seed) do
    duration = Keyword.fetch!(opts, :duration_ms)
    senders = Keyword.fetch!(opts, :senders)
    targets = Keyword.fetch!(opts, :targets)

    ctx = %{
      senders: senders,
      targets: targets,
      gap: Keyword.get(opts, :gap_ms, {1_000, 3_000}),
      partition: Keyword.get(opts, :partition_ms, {1_000, 6_000}),
      pause: Keyword.get(opts, :pause_ms, {200, 3_000})
    }

    rand = :rand.seed_s(:exsss, seed)
    {first, rand} = shuffle(@kinds, rand)
    final = Keyword.get(opts, :final_partition_ms)
    last_end = if final, do: duration - final, else: duration

    {events, rand, at} =
      fill(first, Keyword.get(opts, :warmup_ms, 2_000), last_end, ctx, rand, [])

    if final do
      {event, _rand} = event(:full, max(at, 0), ctx, rand)
      Enum.reverse([%{event | duration_ms: final} | events])
    else
      Enum.reverse(events)
    end
  end

  # Adds events while they fit; after the first kinds, kinds are random.
  defp fill(kinds, at, last_end, ctx, rand, acc) do
    {kind, kinds, rand} =
      case kinds do
        [kind | rest] -> {kind, rest, rand}
        [] -> pick(@kinds, rand) |> then(fn {k, r} -> {k, [], r} end)
      end

    {event, rand} = event(kind, at, ctx, rand)
    {gap, rand} = between(ctx.gap, rand)
    done = event.at_ms + event.duration_ms

    if done > last_end do
      {acc, rand, at}
    else
      fill(kinds, done + gap, last_end, ctx, rand, [event | acc])
    end
  end

  defp event(:pause, at, ctx, rand) do
    {host, rand} = pick(ctx.senders ++ ctx.targets, rand)
    {ms, rand} = between(ctx.pause, rand)
    {base(:pause, at, ms) |> Map.put(:host, host), rand}
  end

  defp event(kind, at, ctx, rand) do
    {ms, rand} = between(ctx.partition, rand)
    {s, rand} = pick(ctx.senders, rand)
    {t, rand} = pick(ctx.targets, rand)
    event = base(kind, at, ms)

    case kind do
      :full ->
        others = (ctx.senders ++ ctx.targets) -- [s, t]
        {sides, rand} = Enum.map_reduce(others, rand, fn _, r -> :rand.uniform_s(2, r) end)
        side = fn n -> for {h, ^n} <- Enum.zip(others, sides), do: h end
        {%{event | groups: [[s | side.(1)], [t | side.(2)]]}, rand}

      :partial ->
        {%{event | groups: [[s], [t]]}, rand}

      :one_way ->
        {flip, rand} = :rand.uniform_s(2, rand)
        {%{event | cut: if(flip == 1, do: {s, t}, else: {t, s})}, rand}
    end
  end

  defp base(kind, at, ms),
    do: %{kind: kind, at_ms: at, duration_ms: ms, groups: nil, cut: nil, host: nil}

  defp between({min, max}, rand) do
    {x, rand} = :rand.uniform_s(max - min + 1, rand)
    {min + x - 1, rand}
  end

  defp pick(list, rand) do
    {i, rand} = :rand.uniform_s(length(list), rand)
    {Enum.at(list, i - 1), rand}
  end

  defp shuffle(list, rand) do
    {keyed, rand} =
      Enum.map_reduce(list, rand, fn x, r ->
        {k, r} = :rand.uniform_s(r)
        {{k, x}, r}
      end)

    {keyed |> Enum.sort() |> Enum.map(&elem(&1, 1)), rand}
  end
end

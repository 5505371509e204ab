defmodule Jido.Distributed.Bench.Patterns do
  @moduledoc """
  Random signal-type patterns for routing benchmarks: 60% exact types,
  15% with `*`, 25% with `**` in various positions.
  """

  @doc """
  One random pattern over the given segment values. `exact` makes the
  exact types (60% of patterns).
  """
  @spec random([String.t()], [String.t()], [String.t()], (() -> String.t())) :: String.t()
  def random(domains, entities, actions, exact) do
    d = Enum.random(domains)
    e = Enum.random(entities)
    a = Enum.random(actions)

    case :rand.uniform(20) do
      n when n <= 12 -> exact.()
      13 -> "#{d}.*.#{a}"
      14 -> "#{d}.#{e}.*"
      15 -> "*.#{e}.#{a}"
      16 -> "#{d}.**"
      17 -> "#{d}.#{e}.**"
      18 -> "**.#{a}"
      19 -> "#{d}.**.#{a}"
      20 -> "**.#{e}.**"
    end
  end

  @doc "`count` distinct random patterns, as a tuple."
  @spec distinct(pos_integer(), [String.t()], [String.t()], [String.t()], (() -> String.t())) ::
          tuple()
  def distinct(count, domains, entities, actions, exact) do
    Stream.repeatedly(fn -> random(domains, entities, actions, exact) end)
    |> Stream.uniq()
    |> Enum.take(count)
    |> List.to_tuple()
  end
end

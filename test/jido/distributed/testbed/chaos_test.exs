defmodule Jido.Distributed.Test.ChaosTest do
  # The short chaos run: 5 hosts, 20,000 signals under a seeded fault
  # schedule; every accepted signal exactly once, in order per (sender, target).
  # Re-run a schedule with CHAOS_SEED=<seed> (the seed is printed).
  use Jido.Distributed.TestbedCase

  alias Jido.Distributed.Test.Chaos

  @moduletag timeout: 300_000

  test "20,000 signals through partitions, one-way cuts and pauses: none lost, none duplicated, order held" do
    seed =
      case System.get_env("CHAOS_SEED") do
        nil -> :rand.uniform(1_000_000_000)
        text -> String.to_integer(text)
      end

    IO.puts("\nchaos seed: #{seed} (re-run with CHAOS_SEED=#{seed})")

    result =
      Chaos.run(
        seed: seed,
        signals: 20_000,
        duration_ms: 45_000,
        # Short ticks so that a silent partition is noticed within the run.
        net_ticktime: 4,
        drain_timeout_ms: 90_000
      )

    kinds = result.events |> Enum.map(& &1.kind) |> Enum.uniq() |> Enum.sort()
    assert kinds == [:full, :one_way, :partial, :pause]

    d = result.delivery
    assert result.drained, "only #{d.distinct} of #{d.accepted} accepted signals arrived"
    assert d.accepted == 20_000
    assert d.lost == 0
    assert d.duplicated == 0
    assert d.unexpected == 0
    assert d.order_violations == 0
    assert d.delivered == 20_000

    # Every heal's backlog was delivered.
    assert Enum.all?(result.events, &is_integer(&1.recovery_ms))
  end
end

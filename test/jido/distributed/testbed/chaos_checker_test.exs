defmodule Jido.Distributed.Test.ChaosCheckerTest do
  # Node-free tests of the chaos schedule, the checker and the testbed rules.
  use ExUnit.Case, async: true

  alias Jido.Distributed.Test.Chaos.{Checker, Schedule}
  alias Jido.Distributed.Test.Testbed.Rules

  doctest Schedule
  doctest Rules

  @opts [duration_ms: 45_000, senders: [:s1, :s2], targets: [:t1, :t2, :t3]]

  describe "Schedule" do
    test "the same seed gives the same schedule, another seed another one" do
      assert Schedule.generate(1, @opts) == Schedule.generate(1, @opts)
      assert Schedule.generate(1, @opts) != Schedule.generate(2, @opts)
    end

    test "events do not overlap, fit the duration, and have every kind with its bounds" do
      for seed <- 1..50 do
        events = Schedule.generate(seed, @opts)

        assert events |> Enum.map(& &1.kind) |> Enum.uniq() |> Enum.sort() == [
                 :full,
                 :one_way,
                 :partial,
                 :pause
               ]

        events
        |> Enum.chunk_every(2, 1, :discard)
        |> Enum.each(fn [a, b] -> assert a.at_ms + a.duration_ms < b.at_ms end)

        assert List.last(events).at_ms + List.last(events).duration_ms <= 45_000

        for e <- events do
          case e.kind do
            :pause ->
              assert e.duration_ms in 200..3_000
              assert e.host in [:s1, :s2, :t1, :t2, :t3]

            :one_way ->
              {a, b} = e.cut
              assert Enum.sort([a in [:s1, :s2], b in [:s1, :s2]]) == [false, true]

            :partial ->
              assert [[s], [t]] = e.groups
              assert s in [:s1, :s2] and t in [:t1, :t2, :t3]

            :full ->
              assert [g1, g2] = e.groups
              assert Enum.sort(g1 ++ g2) == [:s1, :s2, :t1, :t2, :t3]

              assert Enum.any?(g1, &(&1 in [:s1, :s2])) and
                       Enum.any?(g2, &(&1 in [:t1, :t2, :t3]))
          end
        end
      end
    end

    test "a final partition of the given length closes the schedule" do
      events = Schedule.generate(3, Keyword.put(@opts, :final_partition_ms, 10_000))
      last = List.last(events)
      assert last.kind == :full and last.duration_ms == 10_000
      assert last.at_ms + last.duration_ms <= 45_000
    end
  end

  describe "Checker.delivery/2" do
    test "exactly once and in order" do
      accepted = %{{:s, 0} => [1, 2, 3], {:s, 1} => [1]}
      arrivals = %{{:s, 0} => [{1, 5}, {2, 6}, {3, 7}], {:s, 1} => [{1, 5}]}
      d = Checker.delivery(accepted, arrivals)
      assert d.exactly_once and d.order_held
      assert %{accepted: 4, delivered: 4, lost: 0, duplicated: 0, unexpected: 0} = d
    end

    test "counts lost, duplicated, unexpected and out-of-order arrivals" do
      accepted = %{{:s, 0} => [1, 2, 3, 4]}
      arrivals = %{{:s, 0} => [{1, 5}, {3, 6}, {2, 7}, {3, 8}, {9, 9}]}
      d = Checker.delivery(accepted, arrivals)
      assert d.lost == 1
      assert d.duplicated == 1
      assert d.unexpected == 1
      # 3 then 2 (the repeated 3 comes after 2, so it is a duplicate, not a reordering).
      assert d.order_violations == 1
      refute d.exactly_once or d.order_held
    end
  end

  describe "Checker.recovery/3" do
    test "the backlog at a heal and the time until its last signal arrived" do
      accepted = %{{:s, 0} => [100, 200, 300], {:s, 1} => [150]}
      arrivals = %{{:s, 0} => [{1, 110}, {2, 900}, {3, 950}], {:s, 1} => [{1, 1_200}]}
      # At 250: seq 2 of pair 0 (arrived 900) and pair 1 (arrived 1200) were pending.
      assert Checker.recovery(accepted, arrivals, 250) == %{backlog: 2, recovery_ms: 950}
      assert Checker.recovery(accepted, arrivals, 2_000) == %{backlog: 0, recovery_ms: 0}
      assert Checker.recovery(accepted, %{}, 250) == %{backlog: 3, recovery_ms: nil}
    end
  end

  test "Checker.throughput/3 buckets arrivals per second per host" do
    arrivals = %{{:s, 0} => [{1, 1_100}, {2, 1_900}, {3, 3_500}], {:s, 1} => [{1, 1_500}]}
    host_of = fn t -> if t == 0, do: :t1, else: :t2 end
    assert Checker.throughput(arrivals, 1_000, host_of) == %{t1: [2, 0, 1], t2: [1, 0, 0]}
  end

  describe "Rules" do
    test "a one-way cut and its script" do
      cuts = Rules.cut_one_way(Rules.new(), :a, :b)
      refute Rules.connected?(cuts, :a, :b)
      assert Rules.connected?(cuts, :a, :c)
      script = Rules.script(cuts, %{a: "10.0.0.1", b: "10.0.0.2"})
      assert script =~ ~s(ip saddr 10.0.0.1 ip daddr 10.0.0.2 counter drop comment "a b")
      refute script =~ "ip saddr 10.0.0.2"
    end

    test "parse_counters/1 reads nft's listing" do
      text = """
      table bridge jdtb {
        chain forward {
          ip saddr 10.213.0.11 ip daddr 10.213.0.12 counter packets 7 bytes 420 drop comment "a b"
        }
      }
      """

      assert Rules.parse_counters(text) == %{{"a", "b"} => %{packets: 7, bytes: 420}}
    end
  end

  test "the SVG timeline is well-formed XML with a band per event and a line per host" do
    Code.require_file("bench/support/chaos_svg.ex", File.cwd!())

    result = %{
      seed: 5,
      settings: %{senders: 4, targets: 40, net_ticktime: 4},
      delivery: %{
        accepted: 30,
        distinct: 30,
        lost: 0,
        duplicated: 0,
        order_held: true,
        order_violations: 0
      },
      events: [
        %{
          kind: :full,
          started_ms: 1_000,
          healed_ms: 2_500,
          groups: [[:s1], [:t1]],
          cut: nil,
          host: nil
        },
        %{
          kind: :one_way,
          started_ms: 3_000,
          healed_ms: 3_500,
          groups: nil,
          cut: [:s1, :t2],
          host: nil
        },
        %{kind: :pause, started_ms: 4_000, healed_ms: 4_300, groups: nil, cut: nil, host: :t1}
      ],
      throughput: %{
        per_target_host: %{t1: [5, 0, 9, 5, 1], t2: [5, 5, 0, 900, 0]},
        accepted_per_second: [10, 10, 10, 10, 0]
      }
    }

    # Loaded at run time (bench/support is not compiled with the project).
    renderer = Jido.Distributed.Bench.ChaosSvg
    svg = renderer.render(result)
    {doc, _} = svg |> :erlang.binary_to_list() |> :xmerl_scan.string(quiet: true)
    assert elem(doc, 0) == :xmlElement
    # Three bands plus the white background and four legend swatches.
    assert length(Regex.scan(~r/<rect /, svg)) == 3 + 1 + 4
    # One line per host plus the accepted line.
    assert length(Regex.scan(~r/<polyline /, svg)) == 3
    # A burst above the scale is labelled with its value.
    assert svg =~ ">900</text>"
  end
end

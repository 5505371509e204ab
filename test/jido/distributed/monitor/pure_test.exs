defmodule Jido.Distributed.Monitor.PureTest do
  use ExUnit.Case, async: true

  alias Jido.Distributed.Monitor.{Peer, Phi, Rtt}

  doctest Phi
  doctest Rtt
  doctest Peer
  doctest Jido.Distributed.Monitor.Wire
  doctest Jido.Distributed.Monitor
  doctest Jido.Distributed.Monitor.Traffic

  defp regular(d, from, to, every), do: Enum.reduce(from..to//every, d, &Phi.heartbeat(&2, &1))

  test "phi grows with silence and falls back on a heartbeat" do
    d = regular(Phi.new(expected_ms: 100), 0, 3_000, 100)
    phis = for t <- [3_050, 3_150, 3_250, 3_400], do: Phi.phi(d, t)
    assert phis == Enum.sort(phis)
    assert Phi.phi(Phi.heartbeat(d, 3_400), 3_410) < 0.5
  end

  test "phi never overflows, far before or after the mean" do
    d = regular(Phi.new(expected_ms: 1_000, min_std_ms: 1), 0, 100_000, 1_000)
    assert Phi.phi(d, 100_000) >= 0.0
    assert is_float(Phi.phi(d, 10_000_000))
  end

  test "jittery heartbeats raise the deviation, so the same silence is less suspect" do
    steady = regular(Phi.new(expected_ms: 100), 0, 5_000, 100)

    jittery =
      Enum.reduce(1..50, Phi.new(expected_ms: 100), fn i, d ->
        Phi.heartbeat(d, i * 100 + if(rem(i, 2) == 0, do: 60, else: -60))
      end)

    assert Phi.phi(jittery, Phi.last(jittery) + 250) < Phi.phi(steady, 5_000 + 250)
  end

  test "the window is bounded" do
    d = regular(Phi.new(max_samples: 10), 0, 10_000, 10)
    assert d.n == 10 and :queue.len(d.window) == 10
  end

  test "rtt keeps the last samples only" do
    r = Enum.reduce(1..100, Rtt.new(8), &Rtt.sample(&2, &1))
    assert Rtt.min(r) == 93 and Rtt.p99(r) == 100 and Rtt.count(r) == 100
    assert Rtt.sample(r, -5) == r
  end

  test "misuse of the API raises ArgumentError naming the argument" do
    for f <- [
          &Jido.Distributed.Monitor.status/1,
          &Jido.Distributed.Monitor.class/1,
          &Jido.Distributed.Monitor.reachable?/1
        ] do
      assert_raise ArgumentError, ~r/the node argument must be an atom, got: "x"/, fn ->
        f.("x")
      end
    end

    assert_raise ArgumentError, ~r/expected a node \(atom\) and a boolean/, fn ->
      Jido.Distributed.Transport.Link.reachability("n", :yes)
    end
  end

  describe "peer" do
    defp up(now \\ 1_000) do
      p = Peer.new(:b@h, 0, expected_ms: 100)
      Enum.reduce(0..now//100, p, fn t, p -> elem(Peer.alive(p, t), 0) end)
    end

    test "a connection closed while reachable is down at once; while unreachable, later" do
      assert {%{status: :down}, [:node_down]} = Peer.disconnected(up(), 1_010)

      {p, [:unreachable]} = Peer.check(up(), 1_600)
      assert {%{status: :unreachable} = p, []} = Peer.disconnected(p, 1_700)
      assert {_, []} = Peer.check(p, 20_000)
      assert {%{status: :down}, [:node_down]} = Peer.check(p, 31_000)
    end

    test "a peer heard through others needs a longer silence" do
      p = up()
      {direct, _} = Peer.check(p, 1_330)
      {via, _} = p |> Peer.heard_via(:c@h) |> Peer.check(1_330)
      assert direct.status == :unreachable
      assert via.status == :suspect
      assert {%{status: :unreachable}, [:unreachable]} = Peer.check(via, 1_800)
    end

    test "excuse forgets a silence this node caused itself" do
      {p, _} = up() |> Peer.excuse(5_000) |> Peer.check(5_050)
      assert p.status == :up
    end

    test "back from down is node_up, from unreachable recovered, from suspect nothing" do
      {p, [:suspect]} = Peer.check(up(), 1_220)
      assert {%{status: :up}, []} = Peer.alive(p, 1_230)
      {p, [:unreachable]} = Peer.check(up(), 1_600)
      assert {_, [:recovered]} = Peer.alive(p, 1_700)
      {p, _} = Peer.disconnected(up(), 1_100)
      assert {_, [:node_up]} = Peer.alive(p, 1_200)
    end
  end
end

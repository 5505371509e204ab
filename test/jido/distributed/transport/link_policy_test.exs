defmodule Jido.Distributed.Transport.LinkPolicyTest do
  use ExUnit.Case, async: true

  alias Jido.Distributed.Transport.LinkPolicy

  doctest LinkPolicy

  describe "wake/3" do
    test "exactly one push of a stream of pushes asks for a full-batch flush per batch crossed" do
      batch = 8

      for count <- [1, 3, 8] do
        # Pending grows by `count` per push, below saturation.
        pushes =
          for p <- Stream.iterate(count, &(&1 + count)) |> Enum.take_while(&(&1 < 4 * batch)),
              do: p

        decisions = Enum.map(pushes, &LinkPolicy.wake(&1, count, batch))
        assert Enum.count(decisions, &(&1 == :flush_full)) == 1
        assert Enum.all?(decisions, &(&1 in [:hint, :flush_full]))
      end
    end

    test "callers wait for a flush once four batches are pending, never before" do
      assert LinkPolicy.wake(4 * 16 - 1, 1, 16) == :hint
      assert LinkPolicy.wake(4 * 16, 1, 16) == :wait_flush
      assert LinkPolicy.wake(10_000, 10_000, 16) == :wait_flush
    end

    test "a push that alone fills a batch asks for a flush" do
      assert LinkPolicy.wake(16, 16, 16) == :flush_full
      assert LinkPolicy.wake(20, 20, 16) == :flush_full
    end
  end

  describe "on_hint/4" do
    test "an idle link flushes at once, whatever the timer" do
      for armed <- [true, false] do
        assert LinkPolicy.on_hint(5_000, 2_000, 3_000, armed) == :flush
        assert LinkPolicy.on_hint(5_000, 0, 0, armed) == :flush
      end
    end

    test "a busy link lingers for the rest of the linger time, rounded to whole ms, at least 1" do
      assert LinkPolicy.on_hint(1_000, 0, 3_000, false) == {:linger, 2}
      assert LinkPolicy.on_hint(1_400, 0, 3_000, false) == {:linger, 2}
      assert LinkPolicy.on_hint(1_600, 0, 3_000, false) == {:linger, 1}
      assert LinkPolicy.on_hint(2_999, 0, 3_000, false) == {:linger, 1}
      assert LinkPolicy.on_hint(0, 0, 60_000_000, false) == {:linger, 60_000}
    end

    test "a busy link with a timer armed keeps waiting" do
      assert LinkPolicy.on_hint(1_000, 0, 3_000, true) == :keep_waiting
    end
  end

  describe "retransmission" do
    test "due only with unacked frames, a connection and retransmit_ms without progress" do
      cases =
        for unacked <- [0, 1],
            connected <- [true, false],
            elapsed <- [0, 999, 1_000, 5_000],
            do: {unacked, connected, elapsed}

      for {unacked, connected, elapsed} <- cases do
        expected = unacked > 0 and connected and elapsed >= 1_000

        assert LinkPolicy.retransmit_due?(unacked, connected, 10_000 + elapsed, 10_000, 1_000) ==
                 expected
      end
    end

    test "checks run at a quarter of retransmit_ms, at least 10 ms, only while frames are unacked" do
      assert LinkPolicy.check_interval(1, 1_000) == 250
      assert LinkPolicy.check_interval(100, 4) == 10
      assert LinkPolicy.check_interval(0, 1_000) == nil
    end

    test "gap reports at one position are acted on once per window" do
      window = LinkPolicy.gap_window_ms()
      assert {true, last} = LinkPolicy.gap_retransmit(7, 0, nil)
      assert LinkPolicy.gap_retransmit(7, window - 1, last) == false
      assert {true, {7, ^window}} = LinkPolicy.gap_retransmit(7, window, last)
      # Another position is acted on at once.
      assert {true, {8, 1}} = LinkPolicy.gap_retransmit(8, 1, last)
    end

    test "a reconnect timer resumes when connected, connects while holding data, else idles" do
      assert LinkPolicy.on_reconnect(true, true) == :resume
      assert LinkPolicy.on_reconnect(true, false) == :resume
      assert LinkPolicy.on_reconnect(false, true) == :connect
      assert LinkPolicy.on_reconnect(false, false) == :idle
    end
  end
end

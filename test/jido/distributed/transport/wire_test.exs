defmodule Jido.Distributed.Transport.WireTest do
  use ExUnit.Case, async: true

  import Jido.Distributed.Transport.Wire, only: [is_ack_message: 1]

  alias Jido.Distributed.Transport.Wire

  doctest Wire

  test "a frame round-trips with its header, origin taken from the Link's pid" do
    msg = Wire.frame(self(), 12, 40, 38, <<1, 2, 3>>, [:a, :b])

    assert Wire.parse_frame(msg) ==
             {:ok, %{link: self(), origin: node(), epoch: 12, seq: 40, base: 38}, <<1, 2, 3>>}
  end

  test "frames of any other shape or with a bad field are refused" do
    pid = self()

    bad = [
      :garbage,
      {:jido_frame},
      {:jido_frame, pid, 1, 1, 1, "f"},
      {:jido_frame, pid, 1, 1, 1, "f", [], :extra},
      {:jido_frame, :a@h, 1, 1, 1, "f", []},
      {:jido_frame, pid, 0, 1, 1, "f", []},
      {:jido_frame, pid, 1, 0, 1, "f", []},
      {:jido_frame, pid, 1, 1, 0, "f", []},
      {:jido_frame, pid, 1, 1, 2, "f", []},
      {:jido_frame, pid, 1.0, 1, 1, "f", []},
      {:jido_frame, pid, 1, 1, 1, ~c"f", []},
      {:jido_frame, pid, 1, 1, 1, "f", :atoms},
      Wire.ack(1, 1, false)
    ]

    for msg <- bad, do: assert(Wire.parse_frame(msg) == :error, inspect(msg))
  end

  test "acks round-trip; bad ones are refused but recognised as acks" do
    assert Wire.parse_ack(Wire.ack(3, 0, true)) == {:ok, %{epoch: 3, upto: 0, gap?: true}}

    bad = [
      {:jido_ack, 0, 1, false},
      {:jido_ack, 1, -1, false},
      {:jido_ack, 1, 1, :yes},
      {:jido_ack, :a@h, 1, 1, false},
      {:jido_ack}
    ]

    for msg <- bad do
      assert Wire.parse_ack(msg) == :error
      assert is_ack_message(msg)
    end

    refute is_ack_message({:jido_frame, self()})
    refute is_ack_message(:jido_ack)
    refute is_ack_message({})
  end

  test "send_ack and send_frame deliver the built messages" do
    :ok = Wire.send_ack(self(), 2, 5, false)
    assert_received {:jido_ack, 2, 5, false}

    name = :"wire_test_#{System.unique_integer([:positive])}"
    Process.register(self(), name)
    :ok = Wire.send_frame(name, node(), self(), 1, 2, 1, "f", [])
    assert_received msg
    assert {:ok, %{seq: 2, link: link}, "f"} = Wire.parse_frame(msg)
    assert link == self()
  end
end

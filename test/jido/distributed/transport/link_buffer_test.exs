defmodule Jido.Distributed.Transport.LinkBufferTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Transport.LinkBuffer

  alias Jido.Distributed.{Frame, Native}
  alias Jido.Distributed.Transport.LinkBuffer

  test "frames pending entries in order with consecutive sequence numbers until acked" do
    buf = LinkBuffer.new(1_000, 1_000_000, :reject)
    entries = for i <- 1..10, do: :erlang.term_to_binary({:dest, i})
    assert {:ok, 10, 0} = LinkBuffer.push(buf, entries)

    assert {:ok, %{seq: 1, base: 1, entries: 4, frame: f1}} = LinkBuffer.take(buf, 4, 1_000_000)
    assert {:ok, %{seq: 2, entries: 4}} = LinkBuffer.take(buf, 4, 1_000_000)
    assert {:ok, %{seq: 3, entries: 2}} = LinkBuffer.take(buf, 4, 1_000_000, 100_000)
    assert :empty = LinkBuffer.take(buf, 4, 1_000_000)
    assert {:ok, [{:dest, 1}, {:dest, 2}, {:dest, 3}, {:dest, 4}]} = Frame.decode(f1)

    assert [{1, ^f1, [:dest]}, {2, _, _}, {3, _, _}] = LinkBuffer.unacked(buf)
    assert {8, 3} = LinkBuffer.ack(buf, 2)
    assert [{3, _, _}] = LinkBuffer.unacked(buf)
    assert %{unacked_entries: 2, acked_seq: 2, base_seq: 3} = LinkBuffer.stats(buf)
  end

  test "the buffer survives the process that filled it" do
    buf = LinkBuffer.new(100, 100_000, :reject)

    {:ok, pid} =
      Task.start(fn ->
        LinkBuffer.push(buf, ["a", "b"])
        exit(:crash)
      end)

    ref = Process.monitor(pid)
    assert_receive {:DOWN, ^ref, _, _, _}, 5_000
    assert %{pending_entries: 2} = LinkBuffer.stats(buf)
  end

  test "oversized entries and non-binaries are refused" do
    buf = LinkBuffer.new(10, 10, :drop_oldest)
    assert {:error, :too_large} = LinkBuffer.push(buf, [String.duplicate("x", 11)])
    assert_raise ArgumentError, fn -> LinkBuffer.push(buf, [:not_binary]) end
  end

  # The size is jido_core::schedule::TAKE_BYTES: what one take would frame.
  test "a take of more than 64 KiB goes to the dirty twin, which frames it" do
    buf = LinkBuffer.new(1_000, 10_000_000, :reject)
    entries = for i <- 1..20, do: :erlang.term_to_binary({:dest, i, String.duplicate("x", 5_000)})
    assert {:ok, 20, 0} = LinkBuffer.push(buf, entries)

    assert :dirty = Native.buffer_take(buf.ref, 1_000, 1_000_000)
    assert %{pending_entries: 20, next_seq: 1} = LinkBuffer.stats(buf)
    assert {:ok, {1, 1, _, _, 5, _}} = Native.buffer_take(buf.ref, 1_000, 30_000)

    assert {:ok, %{seq: 2, entries: 15, frame: frame}} = LinkBuffer.take(buf, 1_000, 1_000_000)
    assert {:ok, decoded} = Frame.decode(frame)
    assert Enum.map(decoded, &elem(&1, 1)) == Enum.to_list(6..20)
  end
end

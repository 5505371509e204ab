defmodule Jido.Distributed.Transport.LinkRowTest do
  use ExUnit.Case, async: true

  require Jido.Distributed.Transport.LinkRow

  alias Jido.Distributed.Transport.{LinkBuffer, LinkRow}

  @link [batch_size: 64, max_buffer_entries: 10, max_buffer_bytes: 1_000, overflow: :reject]

  test "a new row has the node, an empty buffer, an epoch, flags, counters and no Link" do
    row = LinkRow.new(:b@h, @link)
    LinkRow.link_row(node: node, buffer: buffer, epoch: epoch, flags: flags, pid: pid) = row
    assert node == :b@h
    assert LinkBuffer.stats(buffer).pending_entries == 0
    assert is_integer(epoch) and epoch > 0
    assert pid == nil
    assert LinkRow.batch_size(flags) == 64

    assert LinkRow.read_counters(LinkRow.link_row(row, :counters))
           |> Map.values()
           |> Enum.all?(&(&1 == 0))

    # Epochs are random per buffer.
    refute LinkRow.link_row(LinkRow.new(:b@h, @link), :epoch) == epoch
  end

  test "the ETS positions name the key and the pid" do
    row = LinkRow.new(:b@h, @link)
    assert elem(row, LinkRow.keypos() - 1) == :b@h
    row = put_elem(row, LinkRow.pid_pos() - 1, self())
    assert LinkRow.link_row(row, :pid) == self()
  end

  test "the wake flag is claimed once until cleared; the batch size is its own slot" do
    flags = LinkRow.link_row(LinkRow.new(:b@h, @link), :flags)
    assert LinkRow.claim_wake(flags)
    refute LinkRow.claim_wake(flags)
    assert LinkRow.batch_size(flags) == 64
    :ok = LinkRow.clear_wake(flags)
    assert LinkRow.claim_wake(flags)
    :ok = LinkRow.put_batch_size(flags, 512)
    assert LinkRow.batch_size(flags) == 512
    refute LinkRow.claim_wake(flags)
  end

  test "counters are named" do
    counters = LinkRow.link_row(LinkRow.new(:b@h, @link), :counters)
    :counters.add(counters, LinkRow.counter(:retransmits), 3)
    assert %{retransmits: 3, frames: 0, acks: 0} = LinkRow.read_counters(counters)
  end
end

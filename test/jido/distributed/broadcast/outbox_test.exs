defmodule Jido.Distributed.Broadcast.OutboxTest do
  # Node-free.
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Broadcast.Outbox

  alias Jido.Distributed.Broadcast.Outbox

  test "acks come out per parent, oldest first" do
    o = put_all(Outbox.new(), [{:p, {:got, 1}}, {:q, {:got, 2}}, {:p, {:retry, 1, :x}}], 0)
    assert Enum.sort(Outbox.parents(o)) == [:p, :q]
    {acks, o} = Outbox.take(o, :p)
    assert acks == [{:got, 1}, {:retry, 1, :x}]
    assert Outbox.take(o, :p) == {nil, o}
    refute Outbox.empty?(o)
    {[{:got, 2}], o} = Outbox.take(o, :q)
    assert Outbox.empty?(o)
  end

  test "a report drops the receipt of the same broadcast queued for the same parent only" do
    o = put_all(Outbox.new(), [{:p, {:got, 1}}, {:q, {:got, 1}}, {:p, {:got, 2}}], 0)
    {o, false} = Outbox.put(o, :p, {:done, 1, 3, []}, 0)
    assert {[{:got, 2}, {:done, 1, 3, []}], o} = Outbox.take(o, :p)
    assert {[{:got, 1}], _} = Outbox.take(o, :q)
  end

  test "a queue is full at max_acks, counting a superseded receipt once" do
    max = Outbox.max_acks()
    o = put_all(Outbox.new(), for(i <- 1..(max - 1), do: {:p, {:got, i}}), 0)
    # Replaces {:got, 1}: still max - 1 queued.
    assert {o, false} = Outbox.put(o, :p, {:done, 1, 1, []}, 0)
    assert {_o, true} = Outbox.put(o, :p, {:got, max}, 0)
  end

  test "the linger counts from the oldest ack still queued" do
    {o, _} = Outbox.put(Outbox.new(), :p, {:got, 1}, 100)
    {o, _} = Outbox.put(o, :q, {:got, 2}, 103)
    assert Outbox.due?(o, 100 + Outbox.linger_ms())
    {_, o} = Outbox.take(o, :p)
    # The oldest time stays until the outbox empties.
    assert Outbox.due?(o, 100 + Outbox.linger_ms())
    {_, o} = Outbox.take(o, :q)
    refute Outbox.due?(o, 1_000)
  end

  defp put_all(o, entries, now),
    do: Enum.reduce(entries, o, fn {p, ack}, o -> elem(Outbox.put(o, p, ack, now), 0) end)
end

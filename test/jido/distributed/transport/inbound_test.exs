defmodule Jido.Distributed.Transport.InboundTest do
  use ExUnit.Case, async: true

  alias Jido.Distributed.Frame
  alias Jido.Distributed.Transport.Inbound

  defp header(seq), do: %{origin: :origin@host, epoch: 1, seq: seq, base: 1}

  test "a frame whose header does not parse is counted malformed and changes nothing" do
    store = Inbound.new()
    assert {:error, :bad_magic} = Inbound.deliver(store, header(1), "not a frame", 1_000_000)
    assert %{malformed: 1, frames: 0} = Inbound.counters(store)
    assert Inbound.sessions(store) == %{}
  end

  # Above jido_core::schedule::DELIVER_ENTRIES the delivery runs dirty.
  test "small and large frames are delivered once, in order, on either scheduler" do
    store = Inbound.new()
    {:ok, small} = Frame.encode(for i <- 1..3, do: {self(), {:n, i}})
    {:ok, large} = Frame.encode(for i <- 4..300, do: {self(), {:n, i}})

    assert {:ok, 1} = Inbound.deliver(store, header(1), small, 1_000_000)
    assert {:ok, 2} = Inbound.deliver(store, header(2), large, 1_000_000)
    assert {:duplicate, 2} = Inbound.deliver(store, header(2), large, 1_000_000)

    {:messages, messages} = Process.info(self(), :messages)
    assert messages == for(i <- 1..300, do: {:n, i})
    assert %{frames: 2, signals: 300, duplicates: 1} = Inbound.counters(store)
  end

  test "counter_names/0 are exactly the counters the NIF keeps (jido_core::inbound::Counter)" do
    store = Inbound.new()
    assert Enum.sort(Map.keys(Inbound.counters(store))) == Enum.sort(Inbound.counter_names())
    assert Enum.all?(Map.values(Inbound.counters(store)), &(&1 == 0))
    assert :ok = Inbound.count(store, :acks_sent, 3)
    assert %{acks_sent: 3} = Inbound.counters(store)
  end
end

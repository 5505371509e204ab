defmodule Jido.Distributed.Broadcast.SubscriptionsTest do
  # Node-free: an unnamed table stands in for the supervisor's.
  use ExUnit.Case, async: true

  alias Jido.Distributed.Broadcast.Subscriptions

  setup do
    table = :ets.new(:subs, [:public, :bag])
    {:ok, table: table, subs: Subscriptions.load(table)}
  end

  defp signal(type), do: %{id: System.unique_integer(), type: type}

  test "delivers each signal once per subscriber, in order, in its format", %{subs: s} do
    s = Subscriptions.subscribe(s, self(), "a.*", :signal)
    s = Subscriptions.subscribe(s, self(), "a.**", :signal)
    s = Subscriptions.subscribe(s, self(), "b.x", {:tag, :got})
    [one, two, other] = [signal("a.b"), signal("b.x"), signal("c")]
    {s, sent} = Subscriptions.deliver(s, [one, two, other])
    assert sent == 2
    assert_received {:signal, ^one}
    assert_received {:got, ^two}
    refute_received _
    assert Subscriptions.size(s) == 1
  end

  test "a format that raises falls back to {:signal, signal}", %{subs: s} do
    s = Subscriptions.subscribe(s, self(), "a", fn _ -> raise "no" end)
    sig = signal("a")
    ExUnit.CaptureLog.capture_log(fn -> Subscriptions.deliver(s, [sig]) end)
    assert_received {:signal, ^sig}
  end

  test "subscriptions are mirrored into the table and loaded back", %{table: t, subs: s} do
    s = Subscriptions.subscribe(s, self(), "a.*", :raw)
    assert :ets.tab2list(t) == [{self(), "a.*", :raw}]
    loaded = Subscriptions.load(t)
    sig = signal("a.b")
    {_, 1} = Subscriptions.deliver(loaded, [sig])
    assert_received ^sig
    s = Subscriptions.unsubscribe(s, self(), "a.*")
    assert :ets.tab2list(t) == []
    assert {_, 0} = Subscriptions.deliver(s, [sig])
    assert Subscriptions.size(s) == 0
  end

  test "an exited subscriber is removed by its monitor only", %{table: t, subs: s} do
    pid = spawn(fn -> receive do: (:stop -> :ok) end)
    s = Subscriptions.subscribe(s, pid, "a", :signal)
    assert Subscriptions.down(s, make_ref(), pid) == :error
    send(pid, :stop)
    assert_receive {:DOWN, ref, :process, ^pid, _}
    {:ok, s} = Subscriptions.down(s, ref, pid)
    assert :ets.tab2list(t) == []
    assert Subscriptions.size(s) == 0
  end

  test "cached lookups are dropped when subscriptions change", %{subs: s} do
    {s, 0} = Subscriptions.deliver(s, [signal("a")])
    s = Subscriptions.subscribe(s, self(), "a", :signal)
    assert {_, 1} = Subscriptions.deliver(s, [signal("a")])
  end
end

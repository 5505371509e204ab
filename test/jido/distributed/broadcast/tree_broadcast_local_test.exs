defmodule Jido.Distributed.TreeBroadcastLocalTest do
  # One node: the broadcast process of the test node itself, with members
  # that do not exist (never connected) to exercise adoption. Multi-node
  # behaviour is in tree_broadcast_test.exs.
  use ExUnit.Case, async: false
  doctest Jido.Distributed.TreeBroadcast

  import ExUnit.CaptureLog
  require Logger

  alias Jido.Distributed.{Frame, TreeBroadcast, TreePlanner}

  defp type(name), do: "local#{System.unique_integer([:positive])}.#{name}"
  defp signal(type), do: %{id: "#{System.unique_integer([:positive])}", type: type}
  defp fake_nodes(n), do: for(i <- 1..n, do: :"tb_absent_#{i}@nohost")

  defp counters, do: TreeBroadcast.stats().counters

  test "delivers to local subscribers whose pattern matches, once each" do
    base = type("x")
    prefix = hd(String.split(base, "."))
    other = spawn_link(fn -> receive(do: (:stop -> :ok)) end)

    assert :ok = TreeBroadcast.subscribe(prefix <> ".*")
    # Overlapping patterns of one process: one message.
    assert :ok = TreeBroadcast.subscribe(prefix <> ".**")
    assert :ok = TreeBroadcast.subscribe(prefix <> ".**", pid: other, message_format: {:tag, :bc})

    signal = signal(base)
    assert {:ok, %{delivered: 1, missing: []}} = TreeBroadcast.broadcast(signal, nodes: [])
    assert_receive {:signal, ^signal}
    refute_receive {:signal, _}, 50

    deep = signal(prefix <> ".a.b")
    assert {:ok, _} = TreeBroadcast.broadcast(deep, nodes: [])
    assert_receive {:signal, ^deep}
    refute_receive _, 50
    send(other, :stop)
  end

  test "unsubscribe removes one pattern; exited subscribers are removed" do
    t = type("y")
    :ok = TreeBroadcast.subscribe(t)
    :ok = TreeBroadcast.subscribe(t <> ".**")
    :ok = TreeBroadcast.unsubscribe(t)
    {:ok, _} = TreeBroadcast.broadcast(signal(t), nodes: [])
    # "t.**" still matches t.
    assert_receive {:signal, _}
    :ok = TreeBroadcast.unsubscribe(t <> ".**")
    {:ok, _} = TreeBroadcast.broadcast(signal(t), nodes: [])
    refute_receive {:signal, _}, 50

    before = TreeBroadcast.stats().subscribers
    pid = spawn(fn -> receive(do: (:go -> :ok)) end)
    :ok = TreeBroadcast.subscribe(t, pid: pid)
    assert TreeBroadcast.stats().subscribers == before + 1
    ref = Process.monitor(pid)
    send(pid, :go)
    assert_receive {:DOWN, ^ref, _, _, _}
    # The server handles the subscriber's exit before the next call.
    assert TreeBroadcast.stats().subscribers == before
  end

  test "subscriptions survive a restart of the broadcast process" do
    t = type("restart")
    :ok = TreeBroadcast.subscribe(t)
    gone = spawn(fn -> :ok end)
    ref = Process.monitor(gone)
    assert_receive {:DOWN, ^ref, _, _, _}
    # A subscription of a process that is already dead is dropped again.
    :ets.insert(TreeBroadcast.subscriptions_table(), {gone, t, :signal})

    old = Process.whereis(TreeBroadcast)
    Process.exit(old, :kill)

    new =
      Enum.find_value(1..200, fn _ ->
        pid = Process.whereis(TreeBroadcast)
        (pid != nil and pid != old and pid) || (Process.sleep(10) && nil)
      end)

    assert is_pid(new)
    {:ok, %{delivered: 1}} = TreeBroadcast.broadcast(signal(t), nodes: [])
    assert_receive {:signal, %{type: ^t}}
    _ = TreeBroadcast.stats()
    assert :ets.lookup(TreeBroadcast.subscriptions_table(), gone) == []
    :ok = TreeBroadcast.unsubscribe(t)
    assert :ets.match_object(TreeBroadcast.subscriptions_table(), {self(), t, :_}) == []
  end

  test "members that are not connected are reported missing; their children adopted" do
    members = fake_nodes(9)
    before = counters()

    # With fanout 2, the root alone cannot carry 9 unhealthy members as
    # leaves, so some are interior: each unreachable one is given up at
    # once and its children are sent to by the root itself.
    assert {:ok, %{delivered: 1, missing: missing}} =
             TreeBroadcast.broadcast(signal(type("z")), nodes: members, fanout: 2)

    assert missing == Enum.sort(members)
    after_ = counters()
    assert after_.failed_children - before.failed_children == 9
    assert after_.adopted - before.adopted == 7
    assert after_.forwarded == before.forwarded
  end

  test "await: false returns an id to await; unknown ids are refused" do
    t = type("w")
    :ok = TreeBroadcast.subscribe(t)
    assert {:ok, {root, _, _} = id} = TreeBroadcast.broadcast(signal(t), nodes: [], await: false)
    assert root == node()
    assert_receive {:signal, _}
    assert TreeBroadcast.await(id, 1_000) == {:ok, %{delivered: 1, missing: []}}
    assert TreeBroadcast.await(id, 1_000) == {:ok, %{delivered: 1, missing: []}}
    assert TreeBroadcast.await({node(), 0, 0}) == {:error, :unknown_broadcast}
    assert TreeBroadcast.await({:other@host, 0, 0}) == {:error, :unknown_broadcast}
  end

  describe "batches" do
    # Broadcasts queued while the server is suspended are all in its
    # mailbox when it resumes, so the batching is deterministic.
    defp queued(fun) do
      :ok = :sys.suspend(TreeBroadcast)

      try do
        fun.()
      after
        :ok = :sys.resume(TreeBroadcast)
      end
    end

    defp seq_signal(t, seq), do: %{id: "#{t}-#{seq}", type: t, data: %{seq: seq}}

    test "broadcasts queued together go in one frame, delivered in order, each awaitable" do
      t = type("batch")
      :ok = TreeBroadcast.subscribe(t)
      before = counters()

      ids =
        queued(fn ->
          for seq <- 1..10 do
            {:ok, id} = TreeBroadcast.broadcast(seq_signal(t, seq), nodes: [], await: false)
            id
          end
        end)

      for seq <- 1..10, do: assert_receive({:signal, %{data: %{seq: ^seq}}})
      refute_receive {:signal, _}, 50

      for id <- ids,
          do: assert(TreeBroadcast.await(id, 1_000) == {:ok, %{delivered: 1, missing: []}})

      after_ = counters()
      assert after_.started - before.started == 10
      assert after_.batches - before.batches == 1
    end

    test "a broadcast for other members or another timeout starts a new batch, in order" do
      t = type("mixed")
      :ok = TreeBroadcast.subscribe(t)
      before = counters()
      parent = self()

      queued(fn ->
        {:ok, _} = TreeBroadcast.broadcast(seq_signal(t, 1), nodes: [], await: false)
        {:ok, _} = TreeBroadcast.broadcast(seq_signal(t, 2), nodes: [], await: false)
        # Another timeout: not the same batch.
        {:ok, _} =
          TreeBroadcast.broadcast(seq_signal(t, 3), nodes: [], await: false, timeout: 999)

        # An awaited broadcast from another process, queued behind.
        spawn_link(fn ->
          send(
            parent,
            {:awaited, TreeBroadcast.broadcast(seq_signal(t, 4), nodes: [], timeout: 999)}
          )
        end)

        wait_until(fn ->
          match?(
            {:message_queue_len, 4},
            Process.info(Process.whereis(TreeBroadcast), :message_queue_len)
          )
        end)

        {:ok, _} = TreeBroadcast.broadcast(seq_signal(t, 5), nodes: [], await: false)
      end)

      assert_receive {:awaited, {:ok, %{delivered: 1, missing: []}}}
      for seq <- 1..5, do: assert_receive({:signal, %{data: %{seq: ^seq}}})
      after_ = counters()
      assert after_.started - before.started == 5
      # [1, 2], [3, 4], [5]
      assert after_.batches - before.batches == 3
    end

    test "a signal larger than the :max_frame_size setting is refused at once" do
      big = %{id: "big", type: type("big"), data: :binary.copy(<<0>>, 64 * 1024 * 1024 + 1)}
      assert TreeBroadcast.broadcast(big, nodes: []) == {:error, :too_large}
      assert TreeBroadcast.broadcast(big, nodes: [], await: false) == {:error, :too_large}
    end
  end

  defp wait_until(fun, tries \\ 100) do
    cond do
      fun.() -> :ok
      tries == 0 -> flunk("condition not met")
      true -> Process.sleep(10) && wait_until(fun, tries - 1)
    end
  end

  test "a repeated frame is delivered once and counted as a duplicate" do
    t = type("dup")
    :ok = TreeBroadcast.subscribe(t)
    {:ok, frame} = Frame.encode([signal(t)])
    {:ok, atoms} = Frame.atoms(frame)
    id = {:someone@else, 1, System.unique_integer([:positive])}
    before = counters()

    # The acks go to a parent that is not connected: dropped.
    message = {:jido_bcast, id, :parent@nohost, frame, atoms, {node(), []}, 1_000}
    send(TreeBroadcast, message)
    send(TreeBroadcast, message)
    assert_receive {:signal, %{type: ^t}}
    refute_receive {:signal, _}, 50

    after_ = counters()
    assert after_.received - before.received == 2
    assert after_.duplicates - before.duplicates == 1
  end

  test "a frame sent with :same instead of its atoms is relayed, remembered list or not" do
    t = type("same")
    :ok = TreeBroadcast.subscribe(t)
    before = counters()

    for parent <- [:forgotten@nohost, :remembered@nohost] do
      {:ok, frame, atoms} = Frame.encode_with_atoms([signal(t)])
      if parent == :remembered@nohost, do: send(TreeBroadcast, bcast(parent, frame, atoms))
      # An interior node: its unreachable child is given up at once.
      send(TreeBroadcast, bcast(parent, frame, :same, [{:child@nohost, []}]))
    end

    for _ <- 1..3, do: assert_receive({:signal, %{type: ^t}})
    refute_receive {:signal, _}, 50
    after_ = counters()
    assert after_.malformed == before.malformed
    assert after_.failed_children - before.failed_children == 2
  end

  defp bcast(parent, frame, atoms, children \\ []) do
    id = {:someone@else, 3, System.unique_integer([:positive])}
    {:jido_bcast, id, parent, frame, atoms, {node(), children}, 1_000}
  end

  test "a frame that does not decode is counted, not delivered" do
    before = counters()
    id = {:someone@else, 2, System.unique_integer([:positive])}
    send(TreeBroadcast, {:jido_bcast, id, :parent@nohost, "garbage", [], {node(), []}, 1_000})
    send(TreeBroadcast, {:something, :else})
    _ = TreeBroadcast.stats()
    assert counters().malformed - before.malformed == 2
  end

  test "garbage is counted and logged once per reason; the process keeps running" do
    # A fresh process, which has logged nothing yet.
    old = Process.whereis(TreeBroadcast)
    Process.exit(old, :kill)
    wait_until(fn -> Process.whereis(TreeBroadcast) not in [nil, old] end, 200)
    pid = Process.whereis(TreeBroadcast)
    before = counters()
    id = {:someone@else, 4, System.unique_integer([:positive])}
    # The child given as a string made the process crash before.
    bad_child = {:jido_bcast, id, :p@nohost, "f", [], {node(), [{"c@h", []}]}, 100}
    bad_ack = {:jido_bcast_acks, :c@nohost, [{:got, id} | :tail]}

    log =
      capture_log(fn ->
        for _ <- 1..3, do: send(TreeBroadcast, bad_child)
        for _ <- 1..2, do: send(TreeBroadcast, bad_ack)
        assert GenServer.call(TreeBroadcast, {:nonsense, 1}) == {:error, :malformed}
        assert GenServer.call(TreeBroadcast, {:nonsense, 2}) == {:error, :malformed}
        GenServer.cast(TreeBroadcast, {:start, id, %{id: 1, type: "x"}, 1, {node(), :x}, 10, 4})
        _ = TreeBroadcast.stats()
        Logger.flush()
      end)

    assert Process.whereis(TreeBroadcast) == pid
    assert counters().malformed - before.malformed == 8

    for reason <- [:bad_subtree, :bad_acks, :unknown_message, :bad_tree] do
      assert length(String.split(log, "(#{reason})")) == 2, "#{reason} not logged once: #{log}"
    end

    # And it still works.
    assert {:ok, %{delivered: 1}} = TreeBroadcast.broadcast(signal(type("after")), nodes: [])
  end

  test "a planned tree beyond the wire's bounds is refused, awaited or not" do
    # Fanout 1: a chain deeper than 4,096.
    members = for i <- 1..4_100, do: :"tb_chain_#{i}@nohost"
    s = signal(type("deep"))
    assert TreeBroadcast.broadcast(s, nodes: members, fanout: 1) == {:error, :malformed}
    assert {:ok, id} = TreeBroadcast.broadcast(s, nodes: members, fanout: 1, await: false)
    assert TreeBroadcast.await(id, 5_000) == {:error, :malformed}
  end

  test "options are checked" do
    s = signal("a.b")

    for {opts, message} <- [
          {[fanout: 0], "the :fanout option must be a positive integer, got: 0"},
          {[timeout: :soon], "the :timeout option must be a positive integer, got: :soon"},
          {[nodes: :all], "the :nodes option must be a list of node names, got: :all"},
          {[nodes: ["a@h"]], ~s(the :nodes option must be a list of node names, got: ["a@h"])},
          {[await: 1], "the :await option must be a boolean, got: 1"}
        ] do
      assert_raise ArgumentError, message, fn -> TreeBroadcast.broadcast(s, opts) end
    end

    assert TreeBroadcast.broadcast(%{id: 1}) == {:error, {:invalid_signal, %{id: 1}}}
    assert TreeBroadcast.broadcast("str", nodes: []) == {:error, {:invalid_signal, "str"}}

    assert_raise ArgumentError, ~r/unknown option :fan, known: \[:nodes/, fn ->
      TreeBroadcast.broadcast(s, fan: 1)
    end

    assert_raise ArgumentError, "the :pid option must be a local pid, got: :me", fn ->
      TreeBroadcast.subscribe("a.b", pid: :me)
    end

    assert_raise ArgumentError, ~r/the :message_format option must be/, fn ->
      TreeBroadcast.subscribe("a.b", message_format: :nope)
    end

    assert TreeBroadcast.subscribe("a.*x") == {:error, :partial_wildcard}
  end

  test "the plan for the same members is reused" do
    members = fake_nodes(3)
    {:ok, _} = TreeBroadcast.broadcast(signal(type("p")), nodes: members)

    [{:last, generation, {4, ^members}, tree}] =
      :ets.lookup(:jido_distributed_broadcast_plans, :last)

    located = TreeBroadcast.located_members([node() | members])
    assert {:ok, ^tree} = TreePlanner.plan(located, node(), fanout: 4)
    assert Enum.sort(TreePlanner.nodes(tree)) == Enum.sort([node() | members])

    # A node coming up (or going down) drops the plans, also the one this
    # process keeps: the next broadcast plans again.
    send(TreeBroadcast, {:nodeup, :tb_new@nohost})
    _ = TreeBroadcast.stats()
    assert :ets.lookup(:jido_distributed_broadcast_plans, :last) == []
    {:ok, _} = TreeBroadcast.broadcast(signal(type("p")), nodes: members)

    assert [{:last, newer, {4, ^members}, ^tree}] =
             :ets.lookup(:jido_distributed_broadcast_plans, :last)

    assert newer != generation
  end

  test "a tree can be given" do
    {:ok, tree} = TreePlanner.plan([node() | fake_nodes(2)], node(), fanout: 1)

    assert {:ok, %{delivered: 1, missing: missing}} =
             TreeBroadcast.broadcast(signal(type("t")), tree: tree)

    assert missing == Enum.sort(fake_nodes(2))

    assert_raise ArgumentError, ~r/the :tree option must be a tree rooted at this node/, fn ->
      TreeBroadcast.broadcast(signal(type("t")), tree: {:other@host, []})
    end

    for bad <- [{node(), [{"b@h", []}]}, {node(), [:b@h]}, {node(), [{:b@h, []} | :c@h]}, node()] do
      assert_raise ArgumentError, ~r/the :tree option must be a tree rooted at this node/, fn ->
        TreeBroadcast.broadcast(signal(type("t")), tree: bad)
      end
    end
  end

  test "start and stop telemetry events on the root" do
    # :telemetry is not a dependency: stand in a module of that name for
    # this test only (sync tests run alone), then remove it.
    test_pid = self()

    Module.create(
      :telemetry,
      quote do
        def execute(event, measurements, metadata),
          do: send(unquote(test_pid), {:telemetry, event, measurements, metadata})
      end,
      Macro.Env.location(__ENV__)
    )

    :persistent_term.put({Jido.Distributed.Telemetry, :available}, true)

    try do
      members = fake_nodes(2)
      {:ok, result} = TreeBroadcast.broadcast(signal(type("tel")), nodes: members)

      assert_receive {:telemetry, [:jido, :distributed, :broadcast, :start], %{nodes: 3},
                      %{id: id, fanout: 4, depth: 1}}

      assert_receive {:telemetry, [:jido, :distributed, :broadcast, :stop], measurements,
                      %{id: ^id, missing: missing}}

      assert measurements.delivered == result.delivered
      assert measurements.missing == 2
      assert missing == Enum.sort(members)
      assert is_integer(measurements.duration)
    after
      :persistent_term.erase({Jido.Distributed.Telemetry, :available})
      :code.purge(:telemetry)
      :code.delete(:telemetry)
      :code.purge(:telemetry)
    end
  end

  test "a restarted broadcast process writes no persistent_term; callers get its new instance" do
    {:ok, {_, instance, _}} = TreeBroadcast.broadcast(signal(type("i")), nodes: [], await: false)

    terms = Enum.sort(:persistent_term.get())
    old = Process.whereis(TreeBroadcast)
    Process.exit(old, :kill)
    wait_until(fn -> Process.whereis(TreeBroadcast) not in [nil, old] end, 200)

    # The same caller (its cached context is of an older generation).
    {:ok, {_, new_instance, _} = id} =
      TreeBroadcast.broadcast(signal(type("i")), nodes: [], await: false)

    assert new_instance != instance
    assert TreeBroadcast.await(id, 5_000) == {:ok, %{delivered: 1, missing: []}}
    assert Enum.sort(:persistent_term.get()) == terms
  end

  test "child_budget keeps a tenth for the way back" do
    assert TreeBroadcast.child_budget(5_000) == 4_500
    assert TreeBroadcast.child_budget(5) == 4
    assert TreeBroadcast.child_budget(0) == 1
  end
end

defmodule Jido.Distributed.Broadcast.ProtocolTest do
  # Node-free. Random cases use ExUnit's seed (`mix test --seed N` repeats them).
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Broadcast.Protocol

  alias Jido.Distributed.Broadcast.{Protocol, Recent, Session}

  @id {:r@h, 1, 1}

  describe "arrival/4" do
    test "a broadcast in flight gains the parent, which gets a receipt unless one is owed" do
      s = Protocol.relay_session(@id, :b@h, :a@h, true, %{deadline: 100}, 0)
      recent = Recent.new(10, 1_000)

      assert {:joined, joined, [{:count, :duplicates, 1}]} =
               Protocol.arrival(%{@id => s}, recent, @id, :c@h)

      assert joined.parents == [:a@h, :c@h]

      # Receipt already sent (no longer owed): the new parent gets its own.
      sent = %{s | data: Map.delete(s.data, :receipt_due)}

      assert {:joined, _, [{:count, :duplicates, 1}, {:ack, :c@h, {:got, @id}}]} =
               Protocol.arrival(%{@id => sent}, recent, @id, :c@h)
    end

    test "a broadcast whose outcome is an error is new again" do
      recent = Recent.put(Recent.new(10, 1_000), @id, {:error, :malformed}, 0)
      assert Protocol.arrival(%{}, recent, @id, :p@h) == :new
    end
  end

  describe "give_up/2" do
    test "on the root a child that never confirmed is missing, its children adopted" do
      s = Session.new(@id, :a@h, true) |> Session.sent({:b@h, [{:c@h, []}, {:d@h, []}]})
      {s, effects} = Protocol.give_up(s, :b@h)

      assert effects == [
               {:count, :failed_children, 1},
               {:count, :adopted, 2},
               {:send, [{:c@h, []}, {:d@h, []}]}
             ]

      s = s |> Session.sent_all([{:c@h, []}, {:d@h, []}])
      s = s |> Session.done(:c@h, 1, []) |> Session.done(:d@h, 1, [])
      assert {:finished, {3, [:b@h]}, []} = Protocol.settle(s)
    end

    test "a child that confirmed receipt is counted delivered and not handed up" do
      s = Protocol.relay_session(@id, :b@h, :a@h, true, %{deadline: 100}, 0)
      s = s |> Session.sent({:c@h, []}) |> Session.received(:c@h)
      {s, effects} = Protocol.give_up(s, :c@h)
      assert effects == [{:count, :failed_children, 1}]
      assert {:finished, {2, []}, [{:ack, :a@h, {:done, @id, 2, []}}]} = Protocol.settle(s)
    end

    test "a child that is not pending changes nothing" do
      s = Session.new(@id, :a@h, true)
      assert Protocol.give_up(s, :z@h) == {s, []}
    end
  end

  describe "ack/4" do
    test "a retry from a child that is not pending is refused" do
      s = Session.new(@id, :a@h, true) |> Session.sent({:b@h, []})
      assert Protocol.ack(s, :x@h, {:retry, @id, :c@h}, 0) == :error
      assert {:ok, s, []} = Protocol.ack(s, :b@h, {:got, @id}, 0)
      assert {:ok, s, []} = Protocol.ack(s, :b@h, {:done, @id, 1, []}, 0)
      assert {:finished, {2, []}, []} = Protocol.settle(s)
    end
  end

  describe "sweep/4" do
    test "after the deadline every unreported subtree is missing" do
      s = Protocol.root_session(@id, :a@h, [:caller], %{deadline: 10})
      s = s |> Session.sent({:b@h, [{:c@h, []}]}, 0) |> Session.received(:b@h)
      {s, [], :expired} = Protocol.sweep(s, 10, 0, 0)

      assert Protocol.settle(s) ==
               {:finished, {2, [:c@h]},
                [{:reply, :caller, {:ok, %{delivered: 2, missing: [:c@h]}}}]}
    end

    test "a session with nothing late waits, and its receipt stays owed until due" do
      s = Protocol.relay_session(@id, :b@h, :a@h, true, %{deadline: 1_000}, 50)
      s = Session.sent(s, {:c@h, []}, 50)
      assert {^s, [], :waiting} = Protocol.sweep(s, 60, 0, 40)
      assert {s2, [{:ack, :a@h, {:got, @id}}], :waiting} = Protocol.sweep(s, 60, 0, 50)
      refute Map.has_key?(s2.data, :receipt_due)
    end
  end

  test "child_budget keeps a tenth for the way back, at least 1 ms" do
    assert Protocol.child_budget(5) == 4
    assert Protocol.child_budget(0) == 1
    assert Protocol.child_budget(-3) == 1
  end

  describe "a whole broadcast, simulated" do
    # Drives the protocol over a random tree in which some nodes are dead
    # (every send to them fails at once, as `:noconnect`), delivering the
    # messages between nodes in a random order that keeps each pair's
    # order. Every live node must be delivered once, every dead one
    # reported missing, and the root must finish.
    test "every live node is delivered once and exactly the dead ones are missing" do
      for _ <- 1..200 do
        n = Enum.random(1..40)
        nodes = for i <- 1..n, do: :"n#{i}@h"
        [root | rest] = nodes
        tree = random_tree(root, rest, Enum.random(1..4))
        dead = rest |> Enum.filter(fn _ -> :rand.uniform(4) == 1 end) |> MapSet.new()

        {result, deliveries} = simulate(tree, dead)
        live = Enum.reject(nodes, &MapSet.member?(dead, &1))

        assert result == {length(live), dead |> MapSet.to_list() |> Enum.sort()},
               "tree #{inspect(tree)} dead #{inspect(dead)}"

        assert Enum.sort(deliveries) == Enum.sort(live)
      end
    end
  end

  # Each member hangs under a random earlier node with room (at most
  # `fanout` children each).
  defp random_tree(root, members, fanout) do
    children =
      Enum.reduce(members, %{root => []}, fn node, children ->
        parent = children |> Enum.filter(fn {_, c} -> length(c) < fanout end) |> Enum.random()
        children |> Map.update!(elem(parent, 0), &(&1 ++ [node])) |> Map.put(node, [])
      end)

    nest(root, children)
  end

  defp nest(node, children), do: {node, Enum.map(children[node], &nest(&1, children))}

  defp simulate({root, children}, dead) do
    session = Protocol.root_session(@id, root, [:caller], %{deadline: 1_000})
    world = %{sessions: %{}, recent: %{}, queue: [], deliveries: [root], result: nil, dead: dead}
    {session, world} = send_to(world, root, session, children)
    world = settle(world, root, session)
    world = run(world)
    {world.result, world.deliveries}
  end

  defp run(%{queue: []} = world), do: world

  defp run(world) do
    # Any message whose (from, to) pair has no earlier one in the queue.
    heads =
      world.queue
      |> Enum.with_index()
      |> Enum.uniq_by(fn {{from, to, _}, _} -> {from, to} end)

    {{from, to, message}, index} = Enum.random(heads)
    world = %{world | queue: List.delete_at(world.queue, index)}
    run(handle(world, from, to, message))
  end

  defp handle(world, _from, me, {:bcast, parent, {me, children}}) do
    recent = Map.get(world.recent, me, Recent.new(100, 1_000))

    case Protocol.arrival(Map.get(world.sessions, me, %{}), recent, @id, parent) do
      :new when children == [] ->
        {outcome, effects} = Protocol.leaf(@id, me, parent, true)
        world = %{world | deliveries: [me | world.deliveries]}
        world = put_in(world.recent[me], Recent.put(recent, @id, outcome, 0))
        effects(world, me, nil, effects) |> elem(1)

      :new ->
        session = Protocol.relay_session(@id, me, parent, true, %{deadline: 1_000}, 0)
        {session, world} = send_to(world, me, session, children)
        settle(%{world | deliveries: [me | world.deliveries]}, me, session)

      {:joined, session, effects} ->
        {session, world} = effects(world, me, session, effects)
        put_session(world, me, session)

      {:repeat, effects} ->
        effects(world, me, nil, effects) |> elem(1)
    end
  end

  defp handle(world, child, me, {:ack, ack}) do
    with %{^me => %{@id => session}} <- world.sessions,
         {:ok, session, effects} <- Protocol.ack(session, child, ack, 0) do
      {session, world} = effects(world, me, session, effects)
      settle(world, me, session)
    else
      _ -> world
    end
  end

  defp send_to(world, me, session, subtrees) do
    session = Session.sent_all(session, subtrees, 0)

    Enum.reduce(subtrees, {session, world}, fn {child, _} = subtree, {session, world} ->
      if MapSet.member?(world.dead, child) do
        {session, effects} = Protocol.give_up(session, child)
        effects(world, me, session, effects)
      else
        {session, enqueue(world, me, child, {:bcast, me, subtree})}
      end
    end)
  end

  defp effects(world, me, session, effects) do
    Enum.reduce(effects, {session, world}, fn
      {:send, subtrees}, {session, world} -> send_to(world, me, session, subtrees)
      {:ack, parent, ack}, {session, world} -> {session, enqueue(world, me, parent, {:ack, ack})}
      {:reply, :caller, {:ok, result}}, {session, world} -> {session, reply(world, result)}
      {:count, _, _}, acc -> acc
    end)
  end

  defp reply(%{result: nil} = world, %{delivered: d, missing: m}), do: %{world | result: {d, m}}

  defp settle(world, me, session) do
    case Protocol.settle(session) do
      {:in_flight, session} ->
        put_session(world, me, session)

      {:finished, outcome, effects} ->
        {_, world} = effects(world, me, session, effects)
        recent = Map.get(world.recent, me, Recent.new(100, 1_000))

        world =
          put_in(
            world.recent[me],
            Recent.put(recent, @id, {:done, elem(outcome, 0), elem(outcome, 1)}, 0)
          )

        update_in(world.sessions, &Map.update(&1, me, %{}, fn s -> Map.delete(s, @id) end))
    end
  end

  defp put_session(world, me, session),
    do:
      update_in(
        world.sessions,
        &Map.update(&1, me, %{@id => session}, fn s -> Map.put(s, @id, session) end)
      )

  defp enqueue(world, from, to, message),
    do: %{world | queue: world.queue ++ [{from, to, message}]}
end

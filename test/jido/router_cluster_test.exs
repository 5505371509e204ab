defmodule Jido.RouterClusterTest do
  use Jido.Distributed.ClusterCase

  alias Jido.Distributed.Directory
  alias Jido.Distributed.Routing.Pattern
  alias Jido.Distributed.Test.Collector

  @moduletag timeout: 120_000

  # -- helpers -------------------------------------------------------------------

  # Registers each {node, id, patterns} with a Collector on that node as the
  # agent process (registered from here: register/3 goes to the pid's node).
  defp register_agents(specs) do
    Map.new(specs, fn {node, id, patterns} ->
      pid = Collector.start(node)
      :ok = Directory.register(id, patterns, pid: pid)
      {id, %{node: node, pid: pid, patterns: patterns}}
    end)
  end

  defp known_ids(node, prefix) do
    node
    |> Cluster.rpc(Directory, :agents, [])
    |> Enum.map(& &1.id)
    |> Enum.filter(&String.starts_with?(&1, prefix))
    |> MapSet.new()
  end

  defp await_converged(nodes, prefix, ids) do
    ids = MapSet.new(ids)

    for node <- nodes do
      eventually("#{node}'s directory to list #{MapSet.size(ids)} agents", fn ->
        known_ids(node, prefix) == ids
      end)
    end
  end

  defp route_all(origin, signals),
    do: Cluster.rpc(origin, Enum, :map, [signals, &Jido.Router.route_with_locality/1])

  defp capable?(agent_spec, type), do: Enum.any?(agent_spec.patterns, &Pattern.match?(&1, type))

  defp prefix, do: "c#{System.unique_integer([:positive])}"

  # -- tests ---------------------------------------------------------------------

  test "a capable local agent is always chosen, from every origin" do
    nodes = start_cluster(4)
    p = prefix()
    :rand.seed(:exsss, {7, 7, 7})
    types = for i <- 1..30, do: "#{p}.t#{i}.go"

    # Each type gets 1 to 3 agents on random nodes, with exact, `*` and `**`
    # patterns; some `**` agents cover many types.
    specs =
      for {type, i} <- Enum.with_index(types, 1), j <- 1..:rand.uniform(3) do
        pattern =
          case rem(i + j, 3) do
            0 -> type
            1 -> "#{p}.t#{i}.*"
            2 -> "#{p}.t#{i}.**"
          end

        {Enum.random(nodes), "#{p}-#{i}-#{j}", [pattern]}
      end

    specs = specs ++ [{hd(nodes), "#{p}-wide", ["#{p}.**.go"]}]
    agents = register_agents(specs)
    await_converged([node() | nodes], p, Map.keys(agents))

    tally =
      for origin <- nodes, reduce: %{local: 0, expected_local: 0, remote: 0, none: 0} do
        tally ->
          signals =
            for i <- 1..400 do
              type = if rem(i, 20) == 0, do: "#{p}.unhandled", else: Enum.random(types)
              %{id: "#{origin}-#{i}", type: type}
            end

          signals
          |> Enum.zip(route_all(origin, signals))
          |> Enum.reduce(tally, fn {signal, route}, tally ->
            capable = for {id, spec} <- agents, capable?(spec, signal.type), do: {id, spec}
            local? = Enum.any?(capable, fn {_id, spec} -> spec.node == origin end)

            case route do
              {:local, agent} ->
                assert local?
                assert agent.node == origin and node(agent.pid) == origin
                assert capable?(agents[agent.id], signal.type)
                %{tally | local: tally.local + 1, expected_local: tally.expected_local + 1}

              {:remote, agent} ->
                refute local?, "remote #{agent.id} chosen for #{signal.type} on #{origin}"
                assert agent.node != origin
                assert capable?(agents[agent.id], signal.type)
                %{tally | remote: tally.remote + 1}

              {:error, :no_capable_agent} ->
                assert capable == []
                %{tally | none: tally.none + 1}
            end
          end)
      end

    # Every signal with a capable local agent stayed local (100%), and the
    # workload had both kinds.
    assert tally.local == tally.expected_local
    assert tally.local > 0 and tally.remote > 0 and tally.none > 0
  end

  test "an agent that exits or a node that stops is never chosen afterwards" do
    [a, b, c, d] = nodes = start_cluster(4)
    p = prefix()
    type = "#{p}.job.run"

    agents =
      register_agents([
        {b, "#{p}-b", ["#{p}.job.*"]},
        {c, "#{p}-c", ["#{p}.**"]},
        {d, "#{p}-d", ["#{p}.job.run"]}
      ])

    await_converged(nodes, p, Map.keys(agents))
    signals = for i <- 1..300, do: %{id: "s#{i}", type: type}

    # Spread over the three (same class, same load): all are used.
    chosen = a |> route_all(signals) |> Enum.map(fn {:remote, agent} -> agent.id end)
    assert chosen |> Enum.uniq() |> length() == 3

    Process.exit(agents["#{p}-b"].pid, :kill)
    await_converged(nodes, p, ["#{p}-c", "#{p}-d"])

    for origin <- [a, c, d], route <- route_all(origin, signals) do
      assert {_where, %{id: id}} = route
      assert id != "#{p}-b"
    end

    Cluster.stop_nodes([d])
    await_converged([node(), a, b, c], p, ["#{p}-c"])

    for origin <- [a, b], route <- route_all(origin, signals) do
      assert {:remote, %{id: id, node: ^c}} = route
      assert id == "#{p}-c"
    end
  end

  test "an unreachable node is skipped while a reachable capable agent exists" do
    [a, b, c, _d] = nodes = start_cluster(4)
    p = prefix()
    type = "#{p}.work"
    agents = register_agents([{b, "#{p}-b", [type]}, {c, "#{p}-c", ["#{p}.*"]}])
    await_converged(nodes, p, Map.keys(agents))
    signals = for i <- 1..300, do: %{id: "s#{i}", type: type}

    # Cut a <-> b: b's agents leave a's replica with the link.
    Cluster.partition(a, b)
    await_converged([a], p, ["#{p}-c"])
    assert Enum.all?(route_all(a, signals), &match?({:remote, %{node: ^c}}, &1))

    # Healing brings b's agents back (a new subscription after the reconnect).
    Cluster.heal(a, b)
    await_converged([a], p, Map.keys(agents))
    assert a |> route_all(signals) |> Enum.any?(&match?({:remote, %{node: ^b}}, &1))

    # The same through routing weights, as the partition work will set them:
    # b is skipped while c is capable, and chosen when it is the only one.
    :ok = Cluster.rpc(a, Jido.Router, :update_routing_weights, [%{b => :infinity}])
    assert Enum.all?(route_all(a, signals), &match?({:remote, %{node: ^c}}, &1))
    Process.exit(agents["#{p}-c"].pid, :kill)
    await_converged([a], p, ["#{p}-b"])
    assert Enum.all?(route_all(a, signals), &match?({:remote, %{node: ^b}}, &1))
  end

  test "route_and_send and {:agent, id} deliver to the chosen agent" do
    [a, b, c, d] = nodes = start_cluster(4)
    p = prefix()

    agents =
      register_agents([
        {a, "#{p}-a", ["#{p}.local.*"]},
        {b, "#{p}-b1", ["#{p}.remote.**"]},
        {c, "#{p}-c1", ["#{p}.remote.**"]},
        {c, "#{p}-c2", ["#{p}.local.*"]}
      ])

    await_converged(nodes, p, Map.keys(agents))

    signals =
      for i <- 1..200 do
        kind = if rem(i, 2) == 0, do: "local", else: "remote"
        %{id: "s#{i}", type: "#{p}.#{kind}.x", data: %{sender: a, seq: i}}
      end

    results = Cluster.rpc(a, Enum, :map, [signals, &Jido.Distributed.route_and_send/1])

    expected =
      Enum.reduce(results, %{}, fn {:ok, {where, agent}}, acc ->
        # From a, "local" signals stay on a; "remote" ones go to b or c.
        assert where == if(agent.node == a, do: :local, else: :remote)
        Map.update(acc, agent.pid, 1, &(&1 + 1))
      end)

    assert expected[agents["#{p}-a"].pid] == 100
    refute Map.has_key?(expected, agents["#{p}-c2"].pid)
    pids = Enum.map(agents, fn {_id, spec} -> spec.pid end)
    assert {:ok, _} = Collector.await_total(pids, 200, 10_000)

    for {pid, count} <- expected do
      assert Collector.report(pid).received == count
    end

    # Sending to an agent id from another node.
    :ok = Cluster.rpc(d, Jido.Distributed, :send, [{:agent, "#{p}-c2"}, %{id: "x", type: "t"}])

    eventually("the signal to #{p}-c2", fn ->
      Collector.report(agents["#{p}-c2"].pid).received == 1
    end)

    assert {:error, {:unknown_agent, "nobody"}} =
             Cluster.rpc(d, Jido.Distributed, :send, [{:agent, "nobody"}, %{id: "x", type: "t"}])
  end

  test "loads, new capabilities and a restarted Directory reach the other nodes" do
    [a, b, _c, _d] = nodes = start_cluster(4)
    p = prefix()
    pid = Collector.start(b)
    :ok = Directory.register("#{p}-b", ["#{p}.old.*"], pid: pid, load: 5)
    await_converged(nodes, p, ["#{p}-b"])

    load_on_a = fn ->
      case Cluster.rpc(a, Directory, :whereis, ["#{p}-b"]) do
        %{load: load} -> load
        nil -> nil
      end
    end

    assert load_on_a.() == 5.0
    :ok = Cluster.rpc(b, Directory, :update_load, ["#{p}-b", 0.5])
    eventually("the new load on #{a}", fn -> load_on_a.() == 0.5 end)

    # Same process, new capabilities: the old pattern stops matching everywhere.
    :ok = Directory.register("#{p}-b", ["#{p}.new"], pid: pid)

    for node <- nodes do
      eventually("new capabilities on #{node}", fn ->
        Cluster.rpc(node, Directory, :capable, ["#{p}.old.x"]) == [] and
          match?([%{pid: ^pid}], Cluster.rpc(node, Directory, :capable, ["#{p}.new"]))
      end)
    end

    # b's Directory dies: the others drop b's agents, then get them back from
    # the restarted one (it kept them in its store).
    old = Cluster.rpc(b, Process, :whereis, [Directory])
    true = Cluster.rpc(b, Process, :exit, [old, :kill])

    eventually("a new Directory on #{b}", fn ->
      new = Cluster.rpc(b, Process, :whereis, [Directory])
      is_pid(new) and new != old
    end)

    await_converged(nodes, p, ["#{p}-b"])

    assert {:remote, %{pid: ^pid}} =
             Cluster.rpc(a, Jido.Router, :route_with_locality, [%{id: 1, type: "#{p}.new"}])

    assert Enum.sort(Cluster.rpc(a, Directory, :peers, [])) == Enum.sort([node() | nodes] -- [a])
  end
end

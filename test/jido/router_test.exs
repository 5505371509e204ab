defmodule Jido.RouterTest do
  # Not async: the doctests and the weight tests change this node's
  # routing weights.
  use ExUnit.Case, async: false
  doctest Jido.Router

  alias Jido.Distributed.Directory
  alias Jido.Router

  @b :b@host
  @c :c@host
  @d :d@host

  # b: same zone, c: same region, d: other region.
  @classes %{@b => :same_zone, @c => :same_region, @d => :remote}

  defp opts(extra \\ []) do
    Keyword.merge(
      [
        local_node: :me@host,
        nodes: [@b, @c, @d],
        weights: %{},
        class_of: &Map.fetch!(@classes, &1)
      ],
      extra
    )
  end

  defp agent(id, node, caps, load \\ nil) do
    base = %{id: id, node: node, capabilities: caps}
    if load, do: Map.put(base, :load, load), else: base
  end

  defp sig(type, id \\ "s1"), do: %{id: id, type: type}

  defp ids(agents), do: Enum.map(agents, & &1.id)

  setup do
    on_exit(fn -> Router.update_routing_weights(%{}, replace: true) end)
  end

  describe "pure ranking" do
    test "a capable local agent wins over any remote one, however loaded" do
      agents = [
        agent("far", @d, ["a.*"], 0),
        agent("near", @b, ["a.*"], 0),
        agent("here", :me@host, ["a.**"], 1_000)
      ]

      assert {:local, %{id: "here"}} = Router.route_with_locality(sig("a.x"), agents, opts())
      assert ids(Router.rank(sig("a.x"), agents, opts())) == ["here", "near", "far"]
    end

    test "remote agents rank by reachability, then distance class, then load" do
      agents = [
        agent("unreachable", :gone@host, ["t"], 0),
        agent("region-idle", @c, ["t"], 0),
        agent("zone-busy", @b, ["t"], 50),
        agent("zone-idle", @b, ["t"], 1),
        agent("far-idle", @d, ["t"], 0)
      ]

      assert ids(Router.rank(sig("t"), agents, opts())) ==
               ["zone-idle", "zone-busy", "region-idle", "far-idle", "unreachable"]

      assert {:remote, %{id: "zone-idle"}} = Router.route_with_locality(sig("t"), agents, opts())
    end

    test "an unreachable node is chosen only when nothing else is capable" do
      agents = [agent("lost", :gone@host, ["t"]), agent("other", @d, ["u"])]
      assert {:remote, %{id: "lost"}} = Router.route_with_locality(sig("t"), agents, opts())
    end

    test "weights: :infinity marks a node unreachable, a number is a penalty before class" do
      agents = [agent("zone", @b, ["t"]), agent("region", @c, ["t"]), agent("far", @d, ["t"])]

      assert ids(Router.rank(sig("t"), agents, opts(weights: %{@b => :infinity}))) ==
               ["region", "far", "zone"]

      assert ids(Router.rank(sig("t"), agents, opts(weights: %{@b => 2, @c => 1}))) ==
               ["far", "region", "zone"]

      # A finite weight makes a node not in Node.list() reachable (a relay).
      relayed = [agent("relayed", :gone@host, ["t"]), agent("lost", :lost@host, ["t"])]

      assert ids(
               Router.rank(sig("t"), relayed,
                 weights: %{:gone@host => 3},
                 nodes: [],
                 class_of: fn _ -> :remote end
               )
             ) == ["relayed", "lost"]
    end

    test "class_of is never called for an unreachable node" do
      agents = [agent("lost", :gone@host, ["t"])]
      class_of = fn node -> flunk("class_of called for #{node}") end
      assert [_] = Router.rank(sig("t"), agents, opts(class_of: class_of))
    end

    test "ties are broken by the signal id: stable per signal, spread over signals" do
      agents = for i <- 1..4, do: agent("eq#{i}", @b, ["t"], 3)

      picks =
        for i <- 1..4_000 do
          {:remote, %{id: id}} = Router.route_with_locality(sig("t", "sig-#{i}"), agents, opts())
          # The same signal goes to the same agent, whatever the list order.
          assert {:remote, %{id: ^id}} =
                   Router.route_with_locality(
                     sig("t", "sig-#{i}"),
                     Enum.reverse(agents),
                     opts()
                   )

          id
        end

      counts = Enum.frequencies(picks)
      assert map_size(counts) == 4
      for {_id, n} <- counts, do: assert(n in 800..1_200)
    end

    test "local ties spread too, and the least loaded local agent wins" do
      me = :me@host
      agents = [agent("l1", me, ["t"], 2), agent("l2", me, ["t"], 2), agent("l3", me, ["t"], 5)]

      picks =
        for i <- 1..1_000 do
          {:local, %{id: id}} = Router.route_with_locality(sig("t", i), agents, opts())
          id
        end

      assert picks |> Enum.uniq() |> Enum.sort() == ["l1", "l2"]
    end

    test "agents without a load count as 0; pids give the node" do
      agents = [
        %{id: "pid-agent", pid: self(), capabilities: ["t"]},
        agent("loaded", node(), ["t"], 0.5)
      ]

      assert {:local, %{id: "pid-agent"}} = Router.route_with_locality(sig("t"), agents)
    end

    test "no capable agent, invalid or missing type" do
      agents = [agent("a", @b, ["x.*"])]
      assert {:error, :no_capable_agent} = Router.route_with_locality(sig("y.z"), agents, opts())
      assert {:error, :no_capable_agent} = Router.route_with_locality(sig("x..z"), agents, opts())
      assert {:error, :no_capable_agent} = Router.route_with_locality(%{id: 1}, agents, opts())
      assert {:error, :no_capable_agent} = Router.route_with_locality(sig("x.y"), [], opts())
    end

    test "find_capable_agent/2 and capable_agents/2 keep list order" do
      agents = [agent("1", @d, ["**"]), agent("2", @b, ["a.*"]), agent("3", @c, ["b"])]
      assert {:ok, %{id: "1"}} = Router.find_capable_agent(sig("a.b"), agents)
      assert ids(Router.capable_agents(sig("a.b"), agents)) == ["1", "2"]
    end
  end

  describe "routing weights" do
    test "merge, remove, replace; bad values raise" do
      :ok = Router.update_routing_weights(%{@b => 1, @c => :infinity})
      :ok = Router.update_routing_weights(%{@d => 2.5, @b => nil})
      assert Router.routing_weights() == %{@c => :infinity, @d => 2.5}
      assert Router.weight(@c) == :infinity
      assert Router.weight(node()) == 0
      assert Router.weight(:nobody@nowhere) == :infinity
      :ok = Router.update_routing_weights(%{@b => 0}, replace: true)
      assert Router.routing_weights() == %{@b => 0}

      assert_raise ArgumentError, ~r/routing weights must map nodes/, fn ->
        Router.update_routing_weights(%{@b => :never})
      end
    end

    test "concurrent updates are not lost" do
      1..50
      |> Enum.map(fn i ->
        Task.async(fn -> Router.update_routing_weights(%{:"n#{i}@host" => i}) end)
      end)
      |> Enum.each(&Task.await/1)

      assert map_size(Router.routing_weights()) == 50
    end
  end

  describe "through the Directory (this node only)" do
    test "the least loaded local agent, ties spread by signal id" do
      prefix = "rt#{System.unique_integer([:positive])}"
      type = "#{prefix}.job.run"

      pids =
        for i <- 1..3 do
          pid = spawn(fn -> Process.sleep(:infinity) end)
          :ok = Directory.register("#{prefix}-#{i}", ["#{prefix}.job.*"], pid: pid, load: 2)
          pid
        end

      picks =
        for i <- 1..900 do
          {:local, agent} = Router.route_with_locality(sig(type, "s#{i}"))
          assert agent.node == node() and agent.load == 2.0
          # Same choice as the pure ranking over the same agents.
          assert {:local, %{id: id}} =
                   Router.route_with_locality(sig(type, "s#{i}"), Directory.capable(type))

          assert agent.id == id
          agent.id
        end

      assert picks |> Enum.frequencies() |> Map.values() |> Enum.all?(&(&1 in 200..400))

      :ok = Directory.update_load("#{prefix}-2", 1)
      assert {:local, %{id: id}} = Router.route_with_locality(sig(type, "any"))
      assert id == "#{prefix}-2"
      Enum.each(pids, &Process.exit(&1, :kill))
    end
  end

  describe "misuse" do
    test "arguments of the wrong shape raise ArgumentError naming the argument" do
      agents = [agent("a", @b, ["a.*"])]

      assert_raise ArgumentError,
                   ~r/^the agents argument must be a list of agent descriptors .*got: :directory$/,
                   fn ->
                     Router.route_with_locality(sig("a.x"), :directory)
                   end

      assert_raise ArgumentError, ~r/^the agents argument must be .*got: %{}$/, fn ->
        Router.rank(sig("a.x"), %{})
      end

      assert_raise ArgumentError, ~r/^the agents argument must be .*got: nil$/, fn ->
        Router.find_capable_agent(sig("a.x"), nil)
      end

      assert_raise ArgumentError, "the opts argument must be a keyword list, got: :bad", fn ->
        Router.route_with_locality(sig("a.x"), agents, :bad)
      end

      assert_raise ArgumentError,
                   "the agents argument must be a list of agent descriptors or :directory, got: :all",
                   fn -> Router.capable_agents(sig("a.x"), :all) end

      assert_raise ArgumentError,
                   "the weights argument must be a map of node => number, :infinity or nil, " <>
                     "got: [b@host: :infinity]",
                   fn -> Router.update_routing_weights([{@b, :infinity}]) end

      assert_raise ArgumentError, "the opts argument must be a keyword list, got: true", fn ->
        Router.update_routing_weights(%{@b => 1}, true)
      end

      assert_raise ArgumentError,
                   ~s(the node argument must be a node name (an atom\), got: "b"),
                   fn ->
                     Router.weight("b")
                   end

      assert Router.routing_weights() == %{}
    end

    test "a term that is not a signal is capable of nothing" do
      agents = [agent("a", @b, ["**"])]

      for bad <- ["a.x", nil, 42, %{id: 1}] do
        assert Router.route_with_locality(bad, agents, opts()) == {:error, :no_capable_agent}
        assert Router.route_with_locality(bad) == {:error, :no_capable_agent}
        assert Router.find_capable_agent(bad, agents) == {:error, :no_capable_agent}
        assert Router.capable_agents(bad) == []
      end
    end
  end
end

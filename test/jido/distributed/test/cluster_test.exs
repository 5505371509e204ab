defmodule Jido.Distributed.Test.ClusterTest do
  use Jido.Distributed.ClusterCase

  alias Jido.Distributed.Test.Cluster

  test "nodes start meshed, with the app running and their location in the app env" do
    specs = [
      [name: :eu, location: [region: "eu", zone: "eu-1"]],
      [name: :us, location: [region: "us", zone: "us-1"]],
      :plain
    ]

    [eu, us, plain] = nodes = start_cluster(specs, env: [max_frame_size: 4096])

    for n <- nodes do
      apps = for {app, _, _} <- Cluster.rpc(n, Application, :started_applications, []), do: app
      assert :jido_distributed in apps
      assert Cluster.rpc(n, Application, :get_env, [:jido_distributed, :max_frame_size]) == 4096
      assert Enum.sort(Cluster.rpc(n, Node, :list, [])) == Enum.sort([node() | nodes -- [n]])
      refute Cluster.rpc(n, Cluster, :partition_prevention?, [])
      assert Cluster.rpc(n, :net_kernel, :epmd_module, []) == Jido.Distributed.Test.Epmd
    end

    assert Cluster.rpc(eu, Application, :get_env, [:jido_distributed, :location]) ==
             [region: "eu", zone: "eu-1"]

    assert Cluster.rpc(us, Application, :get_env, [:jido_distributed, :location]) ==
             [region: "us", zone: "us-1"]

    assert Cluster.rpc(plain, Application, :get_env, [:jido_distributed, :location]) ==
             Application.get_env(:jido_distributed, :location)

    refute Cluster.partition_prevention?()
  end

  test "a partition cuts only the link between its two nodes, heal restores it" do
    [a, b, c] = start_cluster(3)
    for n <- [a, b, c], do: Cluster.start_forwarder(n, :inbox, self())

    Cluster.partition(a, b)

    # a and b cannot talk, also not after auto-connect attempts.
    Cluster.rpc(a, :erlang, :send, [{:inbox, b}, :a_to_b])
    Cluster.rpc(b, :erlang, :send, [{:inbox, a}, :b_to_a])
    refute b in Cluster.rpc(a, Node, :list, [])
    refute a in Cluster.rpc(b, Node, :list, [])

    # Every other link still works.
    Cluster.rpc(a, :erlang, :send, [{:inbox, c}, :a_to_c])
    Cluster.rpc(c, :erlang, :send, [{:inbox, a}, :c_to_a])
    Cluster.rpc(b, :erlang, :send, [{:inbox, c}, :b_to_c])
    Cluster.rpc(c, :erlang, :send, [{:inbox, b}, :c_to_b])
    for n <- [a, b, c], do: send({:inbox, n}, :from_test)

    assert_receive {:forwarded, :inbox, ^c, :a_to_c}, 2_000
    assert_receive {:forwarded, :inbox, ^a, :c_to_a}, 2_000
    assert_receive {:forwarded, :inbox, ^c, :b_to_c}, 2_000
    assert_receive {:forwarded, :inbox, ^b, :c_to_b}, 2_000
    for n <- [a, b, c], do: assert_receive({:forwarded, :inbox, ^n, :from_test}, 2_000)
    refute_receive {:forwarded, :inbox, _, :a_to_b}, 1_000
    refute_receive {:forwarded, :inbox, _, :b_to_a}, 10

    assert Enum.sort(Node.list()) == Enum.sort([a, b, c])
    refute b in Cluster.rpc(a, Node, :list, [])

    Cluster.heal(a, b)
    Cluster.rpc(a, :erlang, :send, [{:inbox, b}, :a_to_b_healed])
    Cluster.rpc(b, :erlang, :send, [{:inbox, a}, :b_to_a_healed])
    assert_receive {:forwarded, :inbox, ^b, :a_to_b_healed}, 2_000
    assert_receive {:forwarded, :inbox, ^a, :b_to_a_healed}, 2_000

    # The calling node itself can be one side; the peer survives it.
    Cluster.partition(node(), c)
    refute c in Node.list()
    send({:inbox, c}, :test_to_c)
    refute_receive {:forwarded, :inbox, ^c, :test_to_c}, 500
    assert c in Cluster.rpc(a, Node, :list, [])

    Cluster.heal(node(), c)
    send({:inbox, c}, :test_to_c_healed)
    assert_receive {:forwarded, :inbox, ^c, :test_to_c_healed}, 2_000
  end

  test "set_latency raises the round trip of one link only, clear_latency restores it" do
    [a, b, c] = start_cluster(3, start_app: false)
    base_ab = Cluster.node_rtt_us(a, b)
    base_ac = Cluster.node_rtt_us(a, c)

    Cluster.set_latency(a, b, 40)
    slow_ab = Cluster.node_rtt_us(a, b)
    assert (slow_ab - base_ab) in 30_000..120_000, "a<->b rtt #{base_ab} -> #{slow_ab} us"
    assert (Cluster.node_rtt_us(b, a) - base_ab) in 30_000..120_000
    assert Cluster.node_rtt_us(a, c) < base_ac + 15_000
    assert [_, _] = Cluster.proxy_ports(a, b)

    Cluster.clear_latency(a, b)
    assert Cluster.node_rtt_us(a, b) < base_ab + 15_000
    assert Cluster.proxy_ports(a, b) == []

    # With the calling node on one side, the peer side initiates through the proxy.
    base_tc = Cluster.node_rtt_us(node(), c)
    Cluster.set_latency(node(), c, 40)
    slow_tc = Cluster.node_rtt_us(node(), c)
    assert (slow_tc - base_tc) in 30_000..120_000, "test<->c rtt #{base_tc} -> #{slow_tc} us"
    assert Cluster.node_rtt_us(node(), b) < base_tc + 15_000
    Cluster.clear_latency(node(), c)
    assert Cluster.node_rtt_us(node(), c) < base_tc + 15_000
  end

  test "stop_nodes leaves no node, process or proxy behind, and peers die with their owner" do
    [a, b] = nodes = start_cluster(2, start_app: false)
    names = Enum.map(nodes, &(&1 |> Atom.to_string() |> String.split("@") |> hd()))
    Cluster.set_latency(a, b, 10)
    ports = Cluster.proxy_ports(a, b)
    Cluster.partition(node(), a)

    assert :ok = Cluster.stop_nodes(nodes)
    assert :ok = Cluster.stop_nodes(nodes)

    for n <- nodes, do: refute(n in Node.list(:connected))
    {ps, 0} = System.cmd("ps", ["-eo", "args"])
    for name <- names, do: refute(ps =~ name)

    for port <- ports do
      assert {:error, :econnrefused} = :gen_tcp.connect(~c"127.0.0.1", port, [], 1_000)
    end

    # Peers are linked to the process that started them.
    test = self()

    owner =
      spawn(fn ->
        send(test, {:started, Cluster.start_nodes(1, start_app: false)})
        Process.sleep(:infinity)
      end)

    assert_receive {:started, [orphan]}, 30_000
    on_exit(fn -> Cluster.stop_nodes([orphan]) end)
    assert orphan in Node.list()
    Process.exit(owner, :kill)

    assert Enum.any?(1..250, fn _ ->
             Process.sleep(20)
             orphan not in Node.list(:connected)
           end)
  end
end

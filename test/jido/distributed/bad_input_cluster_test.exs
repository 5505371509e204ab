defmodule Jido.Distributed.BadInputClusterTest do
  # Bad input must neither leak nor crash: made-up and malformed node names,
  # and terms that are not signals, on real peer nodes.
  use Jido.Distributed.ClusterCase

  alias Jido.Distributed.Transport.{LinkStore, NodeCheck}

  @moduletag timeout: 120_000

  defp process_count(node), do: Cluster.rpc(node, :erlang, :system_info, [:process_count])

  defp links(node), do: Cluster.rpc(node, Jido.Distributed, :stats, []).links

  defp link_processes(node) do
    Cluster.rpc(node, DynamicSupervisor, :count_children, [Jido.Distributed.LinkSupervisor]).active
  end

  defp connected?(a, b), do: b in Cluster.rpc(a, Node, :list, [[:visible, :hidden]])

  # A pid on `node`, which need not exist (as a pid can arrive in a message).
  defp pid_on(node) do
    name = Atom.to_string(node)
    :erlang.binary_to_term(<<131, 88, 119, byte_size(name), name::binary, 1::32, 0::32, 1::32>>)
  end

  defp signal(i), do: %{id: "s#{i}", type: "bad.input.t", data: %{seq: i}}

  test "a flood of made-up node names leaves no Link, no row and no process behind" do
    [a] = start_cluster(1)
    u = System.unique_integer([:positive])
    made_up = for i <- 1..1_000, do: :"made#{i}_#{u}@nowhere.invalid"
    more = for i <- 1..1_000, do: :"more#{i}_#{u}@nowhere.invalid"
    sig = signal(1)
    baseline = process_count(a)

    # send/3 to {name, node}: refused at once, each with the node named.
    results =
      Cluster.rpc(a, Enum, :zip_with, [
        Enum.map(made_up, &{:svc, &1}),
        List.duplicate(sig, 1_000),
        &Jido.Distributed.send/2
      ])

    assert results == Enum.map(made_up, &{:error, {:unknown_node, &1}})
    # Background connection attempts are bounded, whatever the flood.
    assert Cluster.rpc(a, NodeCheck, :attempts, []) <= 32
    assert process_count(a) <= baseline + 32 + 10

    # dispatch/2: one failure per node.
    assert {:error, failures} =
             Cluster.rpc(a, Jido.Distributed, :dispatch, [Enum.map(more, &{{:svc, &1}, sig})])

    assert failures == Enum.map(more, &{&1, {:unknown_node, &1}})

    # A pid on such a node, the Dispatch adapter and route_and_send with an
    # explicit agent list: the same.
    [n1, n2, n3 | _] = made_up
    pid = pid_on(n1)
    assert {:error, {:unknown_node, ^n1}} = Cluster.rpc(a, Jido.Distributed, :send, [pid, sig])

    assert {:error, {:unknown_node, ^n2}} =
             Cluster.rpc(a, Jido.Distributed.Dispatch, :deliver, [sig, [target: {:svc, n2}]])

    agent = %{id: "far", name: :svc, node: n3, capabilities: ["bad.input.*"]}

    assert {:error, {:unknown_node, ^n3}} =
             Cluster.rpc(a, Jido.Distributed, :route_and_send, [sig, [agents: [agent]]])

    assert {:error, [{^n1, {:unknown_node, ^n1}}]} =
             Cluster.rpc(a, Jido.Distributed, :dispatch, [[{pid, sig}]])

    # Malformed names are invalid targets, with no connection attempt.
    for node <- [:@, :a@b@c, :nohost@, :"@nowhere.invalid", :"sp ace@nowhere.invalid"] do
      target = {:svc, node}

      assert {:error, {:invalid_target, ^target}} =
               Cluster.rpc(a, Jido.Distributed, :send, [target, sig])
    end

    # Nothing kept: no link row, no Link process; every attempt ends and the
    # process count goes back to where it was.
    assert links(a) == %{}
    assert link_processes(a) == 0

    eventually("the connection attempts to end", fn ->
      Cluster.rpc(a, NodeCheck, :attempts, []) == 0 and process_count(a) <= baseline + 5
    end)

    for node <- Enum.take(made_up, 10) ++ Enum.take(more, 10) do
      assert Cluster.rpc(a, LinkStore, :lookup, [node]) == nil
      refute Cluster.rpc(a, NodeCheck, :known?, [node])
    end

    # Still refused later: a made-up name never becomes known.
    assert {:error, {:unknown_node, ^n1}} =
             Cluster.rpc(a, Jido.Distributed, :send, [{:svc, n1}, sig])
  end

  test "a never-seen node is refused until it connects; a node in :known_nodes is buffered for" do
    [a, b, c] = start_cluster(3)
    fwd_b = Cluster.start_forwarder(b, :bad_input_b, self())
    fwd_c = Cluster.start_forwarder(c, :bad_input_c, self())

    # Cut a from b and c (each side with its own cookie for the other, so
    # nothing can reconnect them), then restart the application on a, so it
    # has never been connected to either; c is expected to join.
    cookie = Cluster.rpc(a, :erlang, :get_cookie, [])

    for {x, y} <- [{a, b}, {b, a}, {a, c}, {c, a}] do
      cut = :"cut_#{System.unique_integer([:positive])}"
      true = Cluster.rpc(x, :erlang, :set_cookie, [y, cut])
    end

    for y <- [b, c], do: Cluster.rpc(a, :erlang, :disconnect_node, [y])

    eventually("a to lose b and c", fn ->
      not connected?(a, b) and not connected?(a, c) and not connected?(b, a) and
        not connected?(c, a)
    end)

    :ok = Cluster.rpc(a, Application, :stop, [:jido_distributed])

    :ok =
      Cluster.rpc(a, Application, :put_env, [
        :jido_distributed,
        :known_nodes,
        [c],
        [persistent: true]
      ])

    {:ok, _} = Cluster.rpc(a, Application, :ensure_all_started, [:jido_distributed])

    # b: refused at once, nothing kept (its one connection attempt fails on
    # the cookie). c: accepted and buffered.
    assert {:error, {:unknown_node, ^b}} =
             Cluster.rpc(a, Jido.Distributed, :send, [fwd_b, signal(0)])

    assert :ok = Cluster.rpc(a, Jido.Distributed, :send, [{:bad_input_c, c}, signal(1)])
    assert Map.keys(links(a)) == [c]
    assert links(a)[c].buffer.pending_entries + links(a)[c].buffer.unacked_entries == 1

    # b can connect now: sends are refused until the background attempt of
    # one of them has connected a to b, then accepted; only those arrive.
    true = Cluster.rpc(a, :erlang, :set_cookie, [b, cookie])
    true = Cluster.rpc(b, :erlang, :set_cookie, [a, cookie])

    accepted =
      Enum.reduce_while(1..200, nil, fn i, nil ->
        case Cluster.rpc(a, Jido.Distributed, :send, [{:bad_input_b, b}, signal(100 + i)]) do
          :ok ->
            {:halt, i}

          {:error, {:unknown_node, ^b}} ->
            assert Cluster.rpc(a, LinkStore, :lookup, [b]) == nil
            Process.sleep(100)
            {:cont, nil}
        end
      end)

    assert is_integer(accepted), "sends to #{b} were still refused after 20 s"
    assert connected?(a, b)
    expected = signal(100 + accepted)
    assert_receive {:forwarded, :bad_input_b, ^b, {:signal, ^expected}}, 15_000

    # c connects: its Link delivers what it held.
    true = Cluster.rpc(a, :erlang, :set_cookie, [c, cookie])
    true = Cluster.rpc(c, :erlang, :set_cookie, [a, cookie])
    held = signal(1)
    assert_receive {:forwarded, :bad_input_c, ^c, {:signal, ^held}}, 15_000

    refute_receive {:forwarded, _, _, _}, 300
    assert is_pid(fwd_c)
  end

  test "terms that are not signals are refused on every path and never reach another node" do
    [a, b] = start_cluster(2)
    fwd = Cluster.start_forwarder(b, :bad_input_fwd, self())
    id = "bad-input-#{System.unique_integer([:positive])}"
    :ok = Cluster.rpc(b, Jido.Distributed.Directory, :register, [id, ["bad.input.*"], [pid: fwd]])

    eventually("#{id} on #{a}", fn ->
      Cluster.rpc(a, Jido.Distributed.Directory, :whereis, [id]) != nil
    end)

    bads = ["str", nil, 42, {:id, :type}, %{id: "1"}, %{type: "bad.input.t"}]
    agents = [%{id: id, pid: fwd, capabilities: ["bad.input.*"]}]

    for {bad, i} <- Enum.with_index(bads) do
      error = {:error, {:invalid_signal, bad}}
      assert Cluster.rpc(a, Jido.Distributed, :send, [fwd, bad]) == error
      assert Cluster.rpc(a, Jido.Distributed, :send, [{:bad_input_fwd, b}, bad]) == error

      assert Cluster.rpc(a, Jido.Distributed, :send, [{:agent, id}, bad, [message_format: :raw]]) ==
               error

      assert Cluster.rpc(a, Jido.Distributed.Dispatch, :deliver, [bad, [target: fwd]]) == error
      assert Cluster.rpc(a, Jido.Distributed, :route_and_send, [bad]) == error
      assert Cluster.rpc(a, Jido.Distributed, :route_and_send, [bad, [agents: agents]]) == error
      assert Cluster.rpc(a, Jido.Distributed, :broadcast, [bad]) == error

      # In a batch, only the signal goes.
      good = signal(i)

      assert Cluster.rpc(a, Jido.Distributed, :dispatch, [[{fwd, bad}, {fwd, good}]]) ==
               {:error, [{fwd, {:invalid_signal, bad}}]}
    end

    for i <- 0..(length(bads) - 1) do
      good = signal(i)
      assert_receive {:forwarded, :bad_input_fwd, ^b, {:signal, ^good}}, 10_000
    end

    refute_receive {:forwarded, _, _, _}, 300
  end
end

defmodule Jido.Distributed.RelayTest do
  # Relays register names with the one epmd and peers are whole VMs: run
  # these one at a time.
  use ExUnit.Case, async: false
  @moduletag :relay

  import ExUnit.CaptureLog

  alias Jido.Distributed.Relay

  @wait_ms 10_000

  ## Helpers

  defp unique(prefix), do: "#{prefix}_#{System.unique_integer([:positive])}"

  # Starts a relay owner under the test supervisor (stopped after the test,
  # also on failure) and makes sure its OS process is killed even if the
  # owner failed to stop it.
  defp start_relay!(opts \\ []) do
    name = unique("jr_test")
    server = String.to_atom("relay_owner_" <> name)
    opts = Keyword.merge([name: name, server_name: server, restart_backoff_ms: 100], opts)
    # Temporary: a test owner that dies must stay dead.
    pid = start_supervised!(Supervisor.child_spec({Relay, opts}, restart: :temporary))
    os_pid = Relay.os_pid(server)
    on_exit(fn -> kill_if_alive(os_pid) end)
    %{server: server, pid: pid, name: name, node: Relay.node_name(server), os_pid: os_pid}
  end

  defp start_peer! do
    cookie = Atom.to_charlist(Node.get_cookie())

    {:ok, peer, node} =
      :peer.start_link(%{
        name: String.to_atom(unique("relay_peer")),
        args: [~c"-setcookie", cookie]
      })

    on_exit(fn -> stop_peer(peer) end)
    :ok = :erpc.call(node, :code, :add_paths, [:code.get_path()])
    # Peer logs would go to this node's console; keep only warnings and up.
    :ok = :erpc.call(node, :logger, :set_primary_config, [:level, :warning])
    {peer, node}
  end

  defp stop_peer(peer) do
    :peer.stop(peer)
  catch
    :exit, _ -> :ok
  end

  defp kill_if_alive(nil), do: :ok

  defp kill_if_alive(os_pid) do
    if Relay.os_process_alive?(os_pid),
      do: System.cmd("kill", ["-KILL", Integer.to_string(os_pid)])

    :ok
  end

  defp eventually(fun, ms \\ @wait_ms) do
    cond do
      fun.() ->
        true

      ms <= 0 ->
        false

      true ->
        Process.sleep(50)
        eventually(fun, ms - 50)
    end
  end

  defp epmd_names do
    {:ok, names} = :erl_epmd.names()
    Enum.map(names, fn {name, _port} -> List.to_string(name) end)
  end

  ## Tests

  describe "ping" do
    test "round trip from this node through a hidden connection" do
      relay = start_relay!()
      [_, host] = node() |> Atom.to_string() |> String.split("@")
      assert relay.node == :"#{relay.name}@#{host}"
      assert is_integer(relay.os_pid) and Relay.os_process_alive?(relay.os_pid)

      for _ <- 1..5 do
        assert {:ok, rtt} = Relay.ping(relay.server)
        assert is_integer(rtt) and rtt >= 0
      end

      assert {:ok, _} = Relay.ping_node(relay.node, 5_000)

      # The owner connected this node; the relay is hidden.
      assert relay.node in Node.list(:hidden)
      refute relay.node in Node.list()

      # Connecting explicitly works too, after a disconnect.
      assert Node.disconnect(relay.node)
      assert eventually(fn -> relay.node not in Node.list(:hidden) end)
      assert Node.connect(relay.node) == true
      assert relay.node in Node.list(:hidden)
      assert {:ok, _} = Relay.ping(relay.server)
    end

    test "round trip from a second BEAM node" do
      relay = start_relay!()
      {_peer, peer_node} = start_peer!()

      assert {:ok, rtt} = :erpc.call(peer_node, Relay, :ping_node, [relay.node, 5_000])
      assert is_integer(rtt)
      assert relay.node in :erpc.call(peer_node, Node, :list, [:hidden])
      refute relay.node in :erpc.call(peer_node, Node, :list, [])
      # Both nodes are served at once.
      assert {:ok, _} = Relay.ping(relay.server)
    end

    test "a ping to a relay that does not exist times out" do
      assert {:error, :timeout} = Relay.ping_node(:jr_nobody@nohost, 200)
    end
  end

  describe "keep-alive" do
    test "an idle connection survives a short net_ticktime" do
      relay = start_relay!(tick_interval_ms: 300)

      # Controlled over stdio: a 2 s net_ticktime would also cut this test
      # node, which ticks every 15 s.
      cookie = Atom.to_charlist(Node.get_cookie())

      {:ok, peer, _node} =
        :peer.start_link(%{
          name: String.to_atom(unique("relay_peer")),
          connection: :standard_io,
          args: [~c"-setcookie", cookie, ~c"-kernel", ~c"net_ticktime", ~c"2"]
        })

      on_exit(fn -> stop_peer(peer) end)
      :ok = :peer.call(peer, :code, :add_paths, [:code.get_path()])
      assert :peer.call(peer, :net_kernel, :get_net_ticktime, []) == 2

      assert {:ok, _} = :peer.call(peer, Relay, :ping_node, [relay.node, 5_000])
      # Nothing but ticks (the relay's own every 300 ms, and its answers to
      # the peer's) for over twice the tick time: in silence the peer would
      # declare the relay down after ~2 s. The Rust tests check the relay's
      # own ticks alone.
      Process.sleep(4_500)
      assert :peer.call(peer, Node, :list, [:hidden]) == [relay.node]
      assert {:ok, _} = :peer.call(peer, Relay, :ping_node, [relay.node, 5_000])
    end
  end

  describe "cookies" do
    test "a wrong cookie is refused; the right-cookie nodes keep being served" do
      relay = start_relay!()
      {_peer, peer_node} = start_peer!()
      true = :erpc.call(peer_node, :erlang, :set_cookie, [relay.node, :wrong_cookie])

      log =
        capture_log(fn ->
          refute :erpc.call(peer_node, Node, :connect, [relay.node])
          assert {:error, :timeout} = :erpc.call(peer_node, Relay, :ping_node, [relay.node, 300])
          # Let the relay's log line reach Logger.
          Process.sleep(200)
        end)

      assert log =~ "cookie mismatch"
      refute relay.node in :erpc.call(peer_node, Node, :list, [:hidden])

      # Same relay process, still serving this node...
      assert Relay.os_pid(relay.server) == relay.os_pid
      assert {:ok, _} = Relay.ping(relay.server)

      # ...and the peer once it uses the right cookie.
      true = :erpc.call(peer_node, :erlang, :set_cookie, [relay.node, Node.get_cookie()])
      assert {:ok, _} = :erpc.call(peer_node, Relay, :ping_node, [relay.node, 5_000])
    end

    test "the :cookie option gives the relay its own cookie" do
      relay = start_relay!(cookie: :relay_only_cookie)
      # The owner uses that cookie for the relay node only.
      assert {:ok, _} = Relay.ping(relay.server)

      {_peer, peer_node} = start_peer!()
      refute :erpc.call(peer_node, Node, :connect, [relay.node])
      true = :erpc.call(peer_node, :erlang, :set_cookie, [relay.node, :relay_only_cookie])
      assert {:ok, _} = :erpc.call(peer_node, Relay, :ping_node, [relay.node, 5_000])
    end
  end

  describe "no orphans" do
    test "stopping the owner stops the relay OS process and frees its epmd name" do
      relay = start_relay!()
      assert relay.name in epmd_names()

      :ok = stop_supervised(relay.server)

      # terminate/2 waits for the exit, so this holds at once.
      refute Relay.os_process_alive?(relay.os_pid)
      assert eventually(fn -> relay.name not in epmd_names() end)
    end

    test "a killed owner (no terminate) still takes the relay down" do
      relay = start_relay!()
      ref = Process.monitor(relay.pid)
      Process.exit(relay.pid, :kill)
      assert_receive {:DOWN, ^ref, :process, _, :killed}
      assert eventually(fn -> not Relay.os_process_alive?(relay.os_pid) end)
    end

    test "stopping the owner's node stops the relay OS process" do
      {peer, peer_node} = start_peer!()
      name = unique("jr_peer_relay")

      :ok = :erpc.call(peer_node, Application, :load, [:jido_distributed])

      :ok =
        :erpc.call(peer_node, Application, :put_env, [
          :jido_distributed,
          :relay,
          [name: name, restart_backoff_ms: 100]
        ])

      {:ok, _} = :erpc.call(peer_node, Application, :ensure_all_started, [:jido_distributed])
      os_pid = :erpc.call(peer_node, Relay, :os_pid, [Relay])
      on_exit(fn -> kill_if_alive(os_pid) end)
      relay_node = :erpc.call(peer_node, Relay, :node_name, [Relay])

      assert Relay.os_process_alive?(os_pid)
      assert {:ok, _} = :erpc.call(peer_node, Relay, :ping, [Relay, 5_000])
      # Reachable from here too: it is a node of the cluster like any other.
      assert {:ok, _} = Relay.ping_node(relay_node, 5_000)

      :ok = :peer.stop(peer)

      assert eventually(fn -> not Relay.os_process_alive?(os_pid) end),
             "jido_relay (os pid #{os_pid}) outlived its owner node"

      assert eventually(fn -> name not in epmd_names() end)
    end
  end

  describe "restarts" do
    test "a killed relay is restarted and serves again" do
      relay = start_relay!(restart_backoff_ms: 100)
      assert {:ok, _} = Relay.ping(relay.server)

      capture_log(fn ->
        {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(relay.os_pid)])

        assert eventually(fn ->
                 new = Relay.os_pid(relay.server)

                 new != nil and new != relay.os_pid and
                   match?({:ok, _}, Relay.ping(relay.server, 1_000))
               end)
      end)

      new_os_pid = Relay.os_pid(relay.server)
      on_exit(fn -> kill_if_alive(new_os_pid) end)
      refute Relay.os_process_alive?(relay.os_pid)
      assert Relay.node_name(relay.server) == relay.node
      assert relay.node in Node.list(:hidden)
    end

    test "while restarting, ping says so instead of waiting" do
      relay = start_relay!(restart_backoff_ms: 5_000)

      capture_log(fn ->
        {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(relay.os_pid)])
        assert eventually(fn -> Relay.os_pid(relay.server) == nil end)
        assert {:error, :not_running} = Relay.ping(relay.server)
      end)
    end
  end

  describe "start errors" do
    test "bad options raise ArgumentError naming the option" do
      assert_raise ArgumentError,
                   ~r/:tick_interval_ms option must be a positive integer, got: 0/,
                   fn ->
                     Relay.start_link(tick_interval_ms: 0)
                   end

      assert_raise ArgumentError, ~r/:port option must be a port number .*got: 70000/, fn ->
        Relay.start_link(port: 70_000)
      end

      assert_raise ArgumentError, ~r/:name option must contain only .*got: "a.b"/, fn ->
        Relay.start_link(name: "a.b")
      end

      assert_raise ArgumentError, ~r/:host option must be a host name .*got: "a@b"/, fn ->
        Relay.start_link(host: "a@b")
      end

      assert_raise ArgumentError, ~r/unknown option :bogus/, fn ->
        Relay.start_link(bogus: 1)
      end
    end

    test "a name already registered with epmd fails the start with the relay's reason" do
      relay = start_relay!()
      Process.flag(:trap_exit, true)

      capture_log(fn ->
        assert {:error, {:relay_exited, 1, lines}} =
                 Relay.start_link(name: relay.name, server_name: nil)

        assert Enum.any?(lines, &(&1 =~ "epmd refused to register"))
      end)
    end

    test "a node that is not alive gets {:error, :not_alive}" do
      # A peer without distribution, controlled over stdio.
      {:ok, peer, :nonode@nohost} = :peer.start_link(%{connection: :standard_io})
      on_exit(fn -> stop_peer(peer) end)
      :ok = :peer.call(peer, :code, :add_paths, [:code.get_path()])
      {:ok, _} = :peer.call(peer, Application, :ensure_all_started, [:logger])
      :ok = :peer.call(peer, :logger, :set_primary_config, [:level, :none])
      refute :peer.call(peer, Node, :alive?, [])
      assert {:error, :not_alive} = :peer.call(peer, Relay, :start_link, [[server_name: nil]])
    end
  end
end

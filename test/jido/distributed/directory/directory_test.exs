defmodule Jido.Distributed.DirectoryTest do
  # Not async: one test restarts the Directory.
  use ExUnit.Case, async: false
  doctest Jido.Distributed.Directory

  alias Jido.Distributed.Directory
  alias Jido.Distributed.Directory.Store

  setup do
    {:ok, prefix: "dt#{System.unique_integer([:positive])}"}
  end

  defp agent_process, do: spawn(fn -> Process.sleep(:infinity) end)

  defp ids(descriptors), do: descriptors |> Enum.map(& &1.id) |> Enum.sort()

  defp eventually(fun, timeout \\ 5_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll(fun, deadline)
  end

  defp poll(fun, deadline) do
    cond do
      fun.() -> :ok
      System.monotonic_time(:millisecond) > deadline -> flunk("condition not met in time")
      true -> Process.sleep(10) && poll(fun, deadline)
    end
  end

  test "exact and wildcard capabilities, each agent listed once", %{prefix: p} do
    a = agent_process()
    b = agent_process()
    :ok = Directory.register("#{p}-a", ["#{p}.order.created", "#{p}.order.*"], pid: a)
    :ok = Directory.register("#{p}-b", ["#{p}.**"], pid: b, load: 1.5)

    assert ids(Directory.capable("#{p}.order.created")) == ["#{p}-a", "#{p}-b"]
    assert ids(Directory.capable("#{p}.order.paid")) == ["#{p}-a", "#{p}-b"]
    assert ids(Directory.capable("#{p}.user")) == ["#{p}-b"]
    assert Directory.capable("#{p}..user") == []
    assert Directory.capable("other.#{p}") == []

    assert %{id: id, pid: ^b, node: node, load: 1.5, capabilities: caps} =
             Directory.whereis("#{p}-b")

    assert id == "#{p}-b" and node == node() and caps == ["#{p}.**"]
    assert Directory.whereis("#{p}-none") == nil
    assert Enum.count(Directory.agents(), &String.starts_with?(&1.id, p)) == 2
  end

  test "re-registering replaces capabilities and load; another process may not take the id",
       %{prefix: p} do
    a = agent_process()
    :ok = Directory.register("#{p}-a", ["#{p}.x.*"], pid: a, load: 4)
    :ok = Directory.register("#{p}-a", ["#{p}.y"], pid: a)
    assert Directory.capable("#{p}.x.1") == []
    assert [%{load: 0.0}] = Directory.capable("#{p}.y")

    other = agent_process()

    assert {:error, {:already_registered, ^a}} =
             Directory.register("#{p}-a", ["#{p}.z"], pid: other)

    # No wildcard pattern left behind in the index.
    {trie, _loads, _classes} = Directory.view()
    assert Jido.Distributed.Routing.CapabilityIndex.lookup(trie, "#{p}.x.1") == []
  end

  test "bad input is refused", %{prefix: p} do
    assert {:error, {:invalid_pattern, "a.*b", :partial_wildcard}} =
             Directory.register("#{p}", ["ok", "a.*b"])

    assert {:error, {:invalid_load, -1}} = Directory.register("#{p}", ["ok"], load: -1)
    assert {:error, {:invalid_load, :lots}} = Directory.register("#{p}", ["ok"], load: :lots)
    assert {:error, :not_registered} = Directory.update_load("#{p}-none", 1)
    assert {:error, {:invalid_load, "1"}} = Directory.update_load("#{p}-none", "1")
    assert :ok = Directory.unregister("#{p}-none")

    assert_raise ArgumentError, ~r/the :pid option must be a pid/, fn ->
      Directory.register("#{p}", ["ok"], pid: :me)
    end

    assert_raise ArgumentError,
                 ~s(the capabilities argument must be a list of signal type patterns, got: "a.*"),
                 fn -> Directory.register("#{p}", "a.*") end

    assert_raise ArgumentError, "the opts argument must be a keyword list, got: :bad", fn ->
      Directory.register("#{p}", ["ok"], :bad)
    end

    assert Directory.whereis("#{p}") == nil
  end

  test "an agent vanishes when it exits or unregisters", %{prefix: p} do
    a = agent_process()
    b = agent_process()
    :ok = Directory.register("#{p}-a", ["#{p}.*"], pid: a)
    :ok = Directory.register("#{p}-b", ["#{p}.*"], pid: b)
    Process.exit(a, :kill)
    eventually(fn -> ids(Directory.capable("#{p}.t")) == ["#{p}-b"] end)
    :ok = Directory.unregister("#{p}-b")
    assert Directory.capable("#{p}.t") == []
    assert Directory.whereis("#{p}-b") == nil
    assert :ets.match_object(Store.local(), {:_, "#{p}-b", :_, :_, :_}) == []
  end

  test "loads are read in place and order the choice", %{prefix: p} do
    for i <- 1..3, do: :ok = Directory.register("#{p}-#{i}", ["#{p}.t"], pid: agent_process())
    :ok = Directory.update_load("#{p}-1", 7)
    :ok = Directory.update_load("#{p}-2", 0.25)
    :ok = Directory.update_load("#{p}-3", 3)
    loads = Map.new(Directory.capable("#{p}.t"), &{&1.id, &1.load})
    assert loads == %{"#{p}-1" => 7.0, "#{p}-2" => 0.25, "#{p}-3" => 3.0}
    assert {:local, %{id: id}} = Jido.Router.route_with_locality(%{id: 1, type: "#{p}.t"})
    assert id == "#{p}-2"
  end

  test "load encoding keeps the order of numbers" do
    values = [0, 0.0, 1.0e-300, 0.5, 1, 1.5, 2, 1_000_000, 1.0e300]
    encoded = Enum.map(values, &Directory.encode_load/1)
    assert encoded == Enum.sort(encoded)
    assert Enum.map(encoded, &Directory.decode_load/1) == Enum.map(values, &(&1 * 1.0))
  end

  test "more agents than the initial load slots", %{prefix: p} do
    pids =
      for i <- 1..1_500 do
        pid = agent_process()
        :ok = Directory.register("#{p}-#{i}", ["#{p}.*.t"], pid: pid, load: i)
        pid
      end

    assert length(Directory.capable("#{p}.x.t")) == 1_500
    assert %{load: 1500.0} = Directory.whereis("#{p}-1500")
    assert {:local, %{id: id}} = Jido.Router.route_with_locality(%{id: 1, type: "#{p}.x.t"})
    assert id == "#{p}-1"
    Enum.each(pids, &Process.exit(&1, :kill))
    eventually(fn -> Directory.capable("#{p}.x.t") == [] end)
  end

  test "sending to {:agent, id}", %{prefix: p} do
    :ok = Directory.register("#{p}-me", ["#{p}.t"])
    signal = %{id: "1", type: "#{p}.t"}
    assert :ok = Jido.Distributed.send({:agent, "#{p}-me"}, signal)
    assert_received {:signal, ^signal}

    no = "#{p}-no"
    assert {:error, {:unknown_agent, ^no}} = Jido.Distributed.send({:agent, no}, signal)

    assert {:error, [{{:agent, ^no}, {:unknown_agent, ^no}}]} =
             Jido.Distributed.dispatch([{{:agent, "#{p}-me"}, signal}, {{:agent, no}, signal}])

    assert_received {:signal, ^signal}
    :ok = Directory.unregister("#{p}-me")
  end

  test "route_and_send with an explicit list", %{prefix: p} do
    agents = [%{id: "#{p}-x", name: :nobody, node: :far@host, capabilities: ["#{p}.*"]}]

    assert {:error, {:no_address, _}} =
             Jido.Distributed.route_and_send(%{id: 1, type: "#{p}.t"},
               agents: [%{id: "#{p}-n", node: :far@host, capabilities: ["#{p}.*"]}]
             )

    me = %{id: "#{p}-me", pid: self(), capabilities: ["#{p}.t"]}

    assert {:ok, {:local, ^me}} =
             Jido.Distributed.route_and_send(%{id: 2, type: "#{p}.t"},
               agents: [me | agents],
               message_format: :raw
             )

    assert_received %{id: 2}
  end

  test "a restarted Directory keeps this node's agents", %{prefix: p} do
    a = agent_process()
    :ok = Directory.register("#{p}-a", ["#{p}.**"], pid: a, load: 2)
    scope = Process.whereis(Directory.scope())
    old = Process.whereis(Directory)
    ref = Process.monitor(old)
    Process.exit(old, :kill)
    assert_receive {:DOWN, ^ref, :process, _, :killed}
    eventually(fn -> is_pid(Process.whereis(Directory)) and Process.whereis(Directory) != old end)
    # OTP 25's pg crashes when a process that monitors the scope and joined
    # a group (in that order) dies; the Directory must not take it down.
    assert Process.whereis(Directory.scope()) == scope

    assert [%{id: id, pid: ^a, load: 2.0}] = Directory.capable("#{p}.x.y")
    assert id == "#{p}-a"
    # Still monitored by the new Directory.
    Process.exit(a, :kill)
    eventually(fn -> Directory.capable("#{p}.x.y") == [] end)
  end
end

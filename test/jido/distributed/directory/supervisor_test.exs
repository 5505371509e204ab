defmodule Jido.Distributed.Directory.SupervisorTest do
  # Not async: restarts the node's Directory server.
  use ExUnit.Case, async: false

  import Jido.Distributed.ClusterCase, only: [eventually: 1]

  import ExUnit.CaptureLog

  alias Jido.Distributed.Directory
  alias Jido.Distributed.Directory.{Store, Wire}

  defp restart_server do
    old = Process.whereis(Wire.name())
    ref = Process.monitor(old)
    Process.exit(old, :kill)
    assert_receive {:DOWN, ^ref, :process, _, :killed}, 5_000

    eventually(fn ->
      is_pid(Process.whereis(Wire.name())) and Process.whereis(Wire.name()) != old
    end)

    Process.whereis(Wire.name())
  end

  # One restart for the whole file: the supervisor allows 3 in 5 seconds,
  # and the Directory's own test restarts it too.
  test "a restarted server rewrites no view, keeps counters, repairs rows, logs afresh" do
    p = "st#{System.unique_integer([:positive])}"
    agent = spawn(fn -> Process.sleep(:infinity) end)
    :ok = Directory.register("#{p}-a", ["#{p}.*", "#{p}.exact"], pid: agent, load: 3)
    capture_log(fn -> send(Wire.name(), {:"$jido_directory", :nonsense}) end)
    # A call: the server has handled the message and published its view.
    _ = Directory.peers()
    malformed = Directory.stats().malformed
    assert malformed >= 1
    view = Directory.view()
    tables = Enum.map([Store.agents(), Store.local(), Store.remote()], &:ets.info(&1, :id))

    # As if the server had been killed after writing an agent's row but not
    # its pattern rows, and after deleting another agent's row but not its
    # pattern rows.
    :ets.match_delete(Store.local(), {"#{p}.*", :_, :_, :_, :_})
    :ets.insert(Store.local(), {"#{p}.orphan", "#{p}-gone", agent, 999_999, 0})
    assert Directory.capable("#{p}.x") == []

    server = restart_server()
    _ = Directory.peers()

    # The same term, not an equal copy: :persistent_term was not written.
    assert :erts_debug.same(Directory.view(), view)

    assert Enum.map([Store.agents(), Store.local(), Store.remote()], &:ets.info(&1, :id)) ==
             tables

    assert Directory.stats().malformed == malformed
    assert [%{id: id, pid: ^agent, load: 3.0}] = Directory.capable("#{p}.x")
    assert id == "#{p}-a"
    assert :ets.lookup(Store.local(), "#{p}.orphan") == []

    # Malformed messages and calls: counted, logged once per kind (the new
    # server has logged nothing yet), and crash nothing.
    log =
      capture_log(fn ->
        for _ <- 1..3, do: send(server, {:"$jido_directory", :delta, :not_a_pid, []})
        send(server, {:"$jido_directory", :snapshot, self(), make_ref(), %{}, [:bad]})
        assert GenServer.call(server, {:what, :ever}) == {:error, :malformed}

        assert GenServer.call(server, {:register, "x", self(), ["a..b"], 0}) ==
                 {:error, :malformed}

        assert GenServer.call(server, {:update_load, "x", :busy}) == {:error, :malformed}
      end)

    assert Directory.stats().malformed == malformed + 7
    assert length(String.split(log, "(bad_delta)")) == 2
    assert log =~ "(bad_entry)" and log =~ "(bad_call)"
    assert Process.whereis(Wire.name()) == server

    :ok = Directory.unregister("#{p}-a")
    Process.exit(agent, :kill)
  end
end

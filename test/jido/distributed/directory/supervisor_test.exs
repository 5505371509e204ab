defmodule Jido.Distributed.Directory.SupervisorTest do
  # Not async: restarts the node's Directory server.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias Jido.Distributed.Directory
  alias Jido.Distributed.Directory.{Store, Wire}

  defp eventually(fun, deadline \\ System.monotonic_time(:millisecond) + 10_000) do
    cond do
      fun.() -> :ok
      System.monotonic_time(:millisecond) > deadline -> flunk("condition not met in time")
      true -> Process.sleep(10) && eventually(fun, deadline)
    end
  end

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

  test "the supervisor owns the tables; a restarted server rewrites no view and keeps counters" do
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

    server = restart_server()
    _ = Directory.peers()

    # The same term, not an equal copy: :persistent_term was not written.
    assert :erts_debug.same(Directory.view(), view)

    assert Enum.map([Store.agents(), Store.local(), Store.remote()], &:ets.info(&1, :id)) ==
             tables

    assert Directory.stats().malformed == malformed
    assert [%{id: id, load: 3.0}] = Directory.capable("#{p}.x")
    assert id == "#{p}-a"
    assert Process.whereis(Wire.name()) == server

    :ok = Directory.unregister("#{p}-a")
    Process.exit(agent, :kill)
  end

  test "malformed messages and calls are counted, logged once per kind, and crash nothing" do
    # A fresh server has logged nothing yet.
    server = restart_server()
    before = Directory.stats().malformed

    log =
      capture_log(fn ->
        for _ <- 1..3, do: send(server, {:"$jido_directory", :delta, :not_a_pid, []})
        send(server, {:"$jido_directory", :snapshot, self(), make_ref(), %{}, [:bad]})
        assert GenServer.call(server, {:what, :ever}) == {:error, :malformed}

        assert GenServer.call(server, {:register, "x", self(), ["a..b"], 0}) ==
                 {:error, :malformed}
      end)

    assert Directory.stats().malformed == before + 6
    assert length(String.split(log, "(bad_delta)")) == 2
    assert log =~ "(bad_entry)" and log =~ "(bad_call)"
    assert Process.whereis(Wire.name()) == server
  end
end

defmodule Jido.Distributed.SupervisionTest do
  # Servers killed again and again restart under their own subsystem's
  # supervisor; the application's supervisor and the transport's state
  # never go with them.
  use ExUnit.Case, async: false

  alias Jido.Distributed.Transport.{LinkStore, Receiver}

  @servers [
    Receiver,
    Jido.Distributed.Directory,
    Jido.Distributed.TreeBroadcast,
    Jido.Distributed.Monitor.Server
  ]

  defp await_pid(name, old) do
    Enum.find_value(1..500, fn _ ->
      case Process.whereis(name) do
        pid when is_pid(pid) and pid != old -> pid
        _ -> Process.sleep(5) && nil
      end
    end) || flunk("#{inspect(name)} did not come back")
  end

  test "every server killed ten times in a row comes back; the app and LinkStore stay" do
    app = Process.whereis(Jido.Distributed.Supervisor)
    store = Process.whereis(LinkStore)

    for name <- @servers, _ <- 1..10 do
      old = Process.whereis(name)
      Process.exit(old, :kill)
      await_pid(name, old)
    end

    assert Process.whereis(Jido.Distributed.Supervisor) == app
    assert Process.whereis(LinkStore) == store

    # Everything still answers.
    assert %{counters: _} = Receiver.stats()
    assert :ok = Jido.Distributed.Directory.register("sup-test", ["sup.*"])

    assert {:local, %{id: "sup-test"}} =
             Jido.Router.route_with_locality(%{id: "1", type: "sup.x"})

    assert :ok = Jido.Distributed.Directory.unregister("sup-test")
    assert is_map(Jido.Distributed.Monitor.stats())

    assert {:ok, %{delivered: 1}} =
             Jido.Distributed.TreeBroadcast.broadcast(%{id: "b", type: "sup.x"}, nodes: [])
  end
end

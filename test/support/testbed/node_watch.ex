defmodule Jido.Distributed.Test.Testbed.NodeWatch do
  @moduledoc """
  Runs on a testbed peer and records when it sees other nodes come and go
  (`:net_kernel.monitor_nodes/2`, visible and hidden nodes), with the OS
  clock in milliseconds, which all namespaces of one machine share. Tests
  use it to show that a silent partition produces no `nodedown`, and the
  chaos runner to tell how long until a node noticed a cut.
  """

  @name :jdtb_node_watch

  @typedoc "One observation: `{os_time_ms, :nodeup | :nodedown, node}`."
  @type event :: {integer(), :nodeup | :nodedown, node()}

  @doc "Starts the watcher on this node (registered, not linked). Idempotent."
  @spec start() :: {:ok, pid()}
  def start do
    case Process.whereis(@name) do
      nil ->
        parent = self()
        ref = make_ref()

        pid =
          spawn(fn ->
            Process.register(self(), @name)
            :ok = :net_kernel.monitor_nodes(true, node_type: :all)
            send(parent, {ref, :ready})
            loop([])
          end)

        receive do
          {^ref, :ready} -> {:ok, pid}
        after
          5_000 -> raise "node watch did not start"
        end

      pid ->
        {:ok, pid}
    end
  end

  @doc "The events recorded so far on this node, oldest first."
  @spec events() :: [event()]
  def events do
    ref = make_ref()
    send(@name, {:events, self(), ref})

    receive do
      {^ref, events} -> events
    after
      5_000 -> raise "node watch did not answer"
    end
  end

  defp loop(events) do
    receive do
      {:nodeup, node, _info} ->
        loop([{:os.system_time(:millisecond), :nodeup, node} | events])

      {:nodedown, node, _info} ->
        loop([{:os.system_time(:millisecond), :nodedown, node} | events])

      {:events, from, ref} ->
        send(from, {ref, Enum.reverse(events)})
        loop(events)

      _ ->
        loop(events)
    end
  end
end

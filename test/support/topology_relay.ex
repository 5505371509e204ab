defmodule Jido.Distributed.Test.TopologyRelay do
  @moduledoc """
  Runs on a peer: subscribes to `Jido.Distributed.Monitor` topology events
  there and forwards each as `{:topology, node, event}` to a test process.
  """

  @doc "Starts the relay on `node`; returns once it has subscribed."
  @spec start(node(), pid()) :: pid()
  def start(node, dest) do
    pid = Node.spawn(node, __MODULE__, :run, [dest])

    receive do
      {:subscribed, ^node} -> pid
    after
      5_000 -> raise "topology relay on #{node} did not subscribe"
    end
  end

  @doc false
  def run(dest) do
    :ok = Jido.Distributed.Monitor.subscribe()
    send(dest, {:subscribed, node()})
    loop(dest)
  end

  defp loop(dest) do
    receive do
      {:jido_topology, event} ->
        send(dest, {:topology, node(), event})
        loop(dest)
    end
  end
end

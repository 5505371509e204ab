defmodule Jido.Distributed.ClusterCase do
  @moduledoc """
  Case template for multi-node tests.

  Tests using it are tagged `:cluster` and never run concurrently with other
  tests (`async: true` is refused: peer nodes, cookies and `global` are
  shared by the whole test node). `start_cluster/2` is imported and
  `Jido.Distributed.Test.Cluster` aliased as `Cluster`.

      defmodule MyTest do
        use Jido.Distributed.ClusterCase

        test "three nodes" do
          [a, b, c] = start_cluster(3)
          Cluster.partition(a, b)
          ...
        end
      end
  """
  use ExUnit.CaseTemplate

  alias Jido.Distributed.Test.Cluster

  using opts do
    if Keyword.get(opts, :async, false) do
      raise ArgumentError, "Jido.Distributed.ClusterCase tests cannot be async"
    end

    quote do
      import Jido.Distributed.ClusterCase,
        only: [start_cluster: 1, start_cluster: 2, eventually: 1, eventually: 2, eventually: 3]

      alias Jido.Distributed.Test.Cluster
      @moduletag :cluster
    end
  end

  @doc """
  Starts peer nodes with `Jido.Distributed.Test.Cluster.start_nodes/2` and
  registers an `on_exit` callback that stops them, with every proxy and
  partition set up for them, also when the test fails. Call it from a test
  or a `setup` block.
  """
  @spec start_cluster(pos_integer() | [Cluster.spec()], keyword()) :: [node()]
  def start_cluster(specs, opts \\ []) do
    nodes = Cluster.start_nodes(specs, opts)
    ExUnit.Callbacks.on_exit({Cluster, nodes}, fn -> Cluster.stop_nodes(nodes) end)
    nodes
  end

  @doc """
  Calls `fun` every 20 ms until it returns something other than `false` or
  `nil`, and returns that; fails the test with "timed out waiting for
  `what`" after `timeout` ms. Other test modules may import it too.
  """
  @spec eventually(String.t(), (() -> term()), timeout()) :: term()
  def eventually(what \\ "a condition", fun, timeout \\ 10_000) when is_function(fun, 0) do
    poll(what, fun, System.monotonic_time(:millisecond) + timeout)
  end

  defp poll(what, fun, deadline) do
    case fun.() do
      result when result not in [false, nil] ->
        result

      _ ->
        if System.monotonic_time(:millisecond) > deadline,
          do: ExUnit.Assertions.flunk("timed out waiting for #{what}")

        Process.sleep(20)
        poll(what, fun, deadline)
    end
  end
end

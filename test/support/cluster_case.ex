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
      import Jido.Distributed.ClusterCase, only: [start_cluster: 1, start_cluster: 2]
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
end

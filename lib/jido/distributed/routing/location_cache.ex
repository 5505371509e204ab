defmodule Jido.Distributed.Routing.LocationCache do
  @moduledoc """
  Owns the cache of other nodes' location labels (the table of
  `Jido.Distributed.Routing.Location`), so it lives as long as the application and
  belongs to no subsystem, and forgets a node's labels when it goes down
  (it may come back elsewhere).
  """
  use GenServer

  alias Jido.Distributed.Routing.Location

  @doc "Starts the owner, registered under the module name."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    :ets.new(Location.table(), [:named_table, :public, :set, read_concurrency: true])
    :ok = :net_kernel.monitor_nodes(true, node_type: :all)
    {:ok, %{}}
  end

  @impl true
  def handle_info({:nodedown, node, _info}, state) do
    Location.forget(node)
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}
end

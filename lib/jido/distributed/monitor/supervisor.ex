defmodule Jido.Distributed.Monitor.Supervisor do
  @moduledoc """
  Supervises the Monitor of this node and owns its table (reachability,
  class and RTT per peer), so the table outlives a Monitor restart.
  """
  use Supervisor

  alias Jido.Distributed.Monitor.Server

  @doc "Starts the supervisor."
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts \\ []), do: Supervisor.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    :ets.new(Server.table(), [:named_table, :public, :set, read_concurrency: true])
    # A restarted Monitor relearns its peers within a heartbeat or two.
    Supervisor.init([Server], strategy: :one_for_one, max_restarts: 100, max_seconds: 5)
  end
end

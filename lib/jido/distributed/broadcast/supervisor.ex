defmodule Jido.Distributed.Broadcast.Supervisor do
  @moduledoc """
  The broadcast subsystem: owns its tables and supervises the node's
  broadcast process, `Jido.Distributed.Broadcast.Server`.

  The tables are created here, in the supervisor's own process, so they
  outlive a crash of the server: the subscriptions (`{pid, pattern,
  format}`, see `Jido.Distributed.Broadcast.Subscriptions`), which a
  restarted server loads again, and the plans and context callers read
  (`Jido.Distributed.Broadcast.PlanCache`).
  """
  use Supervisor

  alias Jido.Distributed.Broadcast.{PlanCache, Server}

  @subscriptions :jido_distributed_broadcast_subscriptions

  @doc "Starts the broadcast subsystem."
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts \\ []), do: Supervisor.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The subscriptions table: `{pid, pattern, format}` rows, a bag."
  @spec subscriptions_table() :: atom()
  def subscriptions_table, do: @subscriptions

  @impl true
  def init(_opts) do
    :ets.new(@subscriptions, [:named_table, :public, :bag])
    :ok = PlanCache.create_table()
    # The server keeps its subscriptions and plans in tables owned here:
    # restart it however often it is killed rather than give up.
    Supervisor.init([{Server, subscriptions: @subscriptions}],
      strategy: :one_for_one,
      max_restarts: 100,
      max_seconds: 5
    )
  end
end

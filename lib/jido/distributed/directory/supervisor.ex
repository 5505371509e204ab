defmodule Jido.Distributed.Directory.Supervisor do
  @moduledoc """
  The directory subsystem: owns the Directory's tables
  (`Jido.Distributed.Directory.Store`, created in this process so they
  outlive a crash of the server) and supervises, `:rest_for_one`, the `:pg`
  scope the Directories of the cluster meet in, then the node's Directory
  server (`Jido.Distributed.Directory.Server`), which joins the scope at
  start: a crashed scope restarts the server too.
  """
  use Supervisor

  alias Jido.Distributed.Directory.{Server, Store, Wire}

  @doc "Starts the directory subsystem."
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts \\ []), do: Supervisor.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    :ok = Store.create_tables()

    Supervisor.init(
      [%{id: :pg, start: {:pg, :start_link, [Wire.scope()]}}, Server],
      strategy: :rest_for_one,
      # The server rebuilds from the tables this supervisor owns: restart
      # it however often it is killed rather than give up the subsystem.
      max_restarts: 100,
      max_seconds: 5
    )
  end
end

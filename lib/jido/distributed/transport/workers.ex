defmodule Jido.Distributed.Transport.Workers do
  @moduledoc """
  The transport's processes that hold no state of their own: the Link
  registry, the Links' `DynamicSupervisor` and the Receiver (`:rest_for_one`,
  each needs the ones before it).

  They sit under their own supervisor, below
  `Jido.Distributed.Transport.LinkStore` in `Jido.Distributed.Transport.Supervisor`,
  so that however often they crash or are killed, only they restart: the
  link buffers and the Receiver's sequencing state that LinkStore owns are
  never restarted with them (restarting those would lose unacked signals
  and deliver acked ones again).
  """
  use Supervisor

  alias Jido.Distributed.Transport.Receiver

  # Links and the Receiver may be killed many times in a row (by an
  # operator, a test, a chaos tool): restart them every time rather than
  # give up after the default three restarts in five seconds.
  @max_restarts 100
  @max_seconds 5

  @doc "Starts the transport workers' supervisor."
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts \\ []), do: Supervisor.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    children = [
      {Registry, keys: :unique, name: Jido.Distributed.LinkRegistry},
      {DynamicSupervisor,
       strategy: :one_for_one,
       name: Jido.Distributed.LinkSupervisor,
       max_restarts: @max_restarts,
       max_seconds: @max_seconds},
      Receiver
    ]

    Supervisor.init(children,
      strategy: :rest_for_one,
      max_restarts: @max_restarts,
      max_seconds: @max_seconds
    )
  end
end

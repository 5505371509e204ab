defmodule Jido.Distributed.Transport.Supervisor do
  @moduledoc """
  The transport subsystem: batched, acknowledged delivery to other nodes.

  Children, in start order, `:rest_for_one` (each needs the ones before it):

    1. `Jido.Distributed.Transport.LinkStore` - owns the transport's tables
       (link rows, the Receiver's sequencing state, known nodes) and watches
       node up/down events for the Links;
    2. `Jido.Distributed.Transport.Workers`, a supervisor of
       * a `Registry` of Links by remote node,
       * a `DynamicSupervisor` of Links (`Jido.Distributed.Transport.Link`),
         one per remote node, started on demand,
       * `Jido.Distributed.Transport.Receiver` - delivers frames from other
         nodes and acks them straight to their Links.

  Workers crashing (or killed) any number of times restart under their
  own supervisor and never take LinkStore's state with them.

  The messages between nodes are listed in `Jido.Distributed.Transport.Wire`.
  """
  use Supervisor

  alias Jido.Distributed.Transport.{LinkStore, Workers}

  @doc "Starts the transport supervisor, registered under the module name."
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts \\ []), do: Supervisor.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    children = [LinkStore, Workers]

    Supervisor.init(children, strategy: :rest_for_one)
  end
end

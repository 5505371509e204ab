defmodule Jido.Distributed.Monitor.Events do
  @moduledoc """
  What follows a topology event of the Monitor: the subscribers get
  `{:jido_topology, event}`, telemetry gets
  `[:jido, :distributed, :monitor, :topology]`, and routing and the Links
  follow reachability with no manual call:

    * `:unreachable` - routing weight `:infinity`; the node's Link sends
      nothing and keeps everything (the connection is still up but carries
      nothing);
    * `:node_down` - nothing more: a node that is not connected already
      weighs `:infinity` in the Router, and its Link sees the closed
      connection itself;
    * `:recovered`, `:node_up` - the weight is removed; the Link sends what
      is unacked and pending at once.
  """

  alias Jido.Distributed.Telemetry
  alias Jido.Distributed.Transport.Link

  @doc "Publishes `events` (as returned by `Jido.Distributed.Monitor.Peer`) about `node`."
  @spec publish([pid()], node(), [atom() | tuple()]) :: :ok
  def publish(subscribers, node, events) do
    Enum.each(events, fn event ->
      message =
        case event do
          {:class_changed, old, new} -> {:class_changed, node, old, new}
          kind -> {kind, node}
        end

      for pid <- subscribers, do: send(pid, {:jido_topology, message})
      Telemetry.emit([:monitor, :topology], %{count: 1}, %{event: elem(message, 0), node: node})
      route(node, event)
    end)
  end

  defp route(node, :unreachable) do
    Jido.Router.update_routing_weights(%{node => :infinity})
    Link.reachability(node, false)
  end

  # A closed connection already weighs :infinity in the Router (a node not
  # connected does), and weighs 0 again the moment it reconnects: an
  # explicit weight here would outlive the reconnect until `:node_up`.

  defp route(node, event) when event in [:recovered, :node_up] do
    Jido.Router.update_routing_weights(%{node => nil})
    Link.reachability(node, true)
  end

  defp route(_node, _event), do: :ok
end

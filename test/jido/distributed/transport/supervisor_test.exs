defmodule Jido.Distributed.Transport.SupervisorTest do
  use ExUnit.Case, async: true

  alias Jido.Distributed.Transport.{LinkStore, Receiver, Workers}

  defp child_ids(sup) do
    sup
    |> Supervisor.which_children()
    |> Enum.map(&elem(&1, 0))
    |> Enum.reverse()
  end

  test "the transport supervisor starts the table owner, registry, Link supervisor and Receiver in order" do
    assert child_ids(Jido.Distributed.Transport.Supervisor) == [LinkStore, Workers]

    assert child_ids(Workers) == [
             Jido.Distributed.LinkRegistry,
             Jido.Distributed.LinkSupervisor,
             Receiver
           ]
  end

  test "the table owner owns only the transport's tables" do
    owner = Process.whereis(LinkStore)

    owned =
      for table <- :ets.all(),
          is_atom(table),
          :ets.info(table, :owner) == owner,
          into: MapSet.new(),
          do: table

    transport = [
      :jido_distributed_links,
      :jido_distributed_link_store,
      :jido_distributed_known_nodes,
      :jido_distributed_connect_attempts
    ]

    assert MapSet.subset?(MapSet.new(transport), owned)
    refute Jido.Distributed.Routing.Location.table() in owned
    # The broadcast subscriptions table moves out with the broadcast restructure.
    assert MapSet.size(MapSet.difference(owned, MapSet.new(transport))) <= 1
  end
end

defmodule Jido.Distributed.Application do
  @moduledoc false
  use Application

  alias Jido.Distributed.{Directory, Transport}

  @impl true
  def start(_type, _args) do
    opts = Jido.Distributed.Options.load!()

    children =
      [
        Jido.Distributed.Monitor.Supervisor,
        Transport.LinkStore,
        {Registry, keys: :unique, name: Jido.Distributed.LinkRegistry},
        {DynamicSupervisor, strategy: :one_for_one, name: Jido.Distributed.LinkSupervisor},
        Directory.Store,
        %{id: :pg, start: {:pg, :start_link, [Directory.scope()]}},
        Directory,
        Transport.Receiver,
        Jido.Distributed.TreeBroadcast
      ] ++ if(opts[:relay], do: [{Jido.Distributed.Relay, opts[:relay]}], else: [])

    Supervisor.start_link(children, strategy: :rest_for_one, name: Jido.Distributed.Supervisor)
  end
end

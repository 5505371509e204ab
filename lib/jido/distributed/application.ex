defmodule Jido.Distributed.Application do
  @moduledoc false
  use Application

  alias Jido.Distributed.{Directory, Transport}

  @impl true
  def start(_type, _args) do
    opts = Jido.Distributed.Options.load!()

    children =
      [
        Jido.Distributed.Routing.LocationCache,
        Transport.Supervisor,
        Directory.Supervisor,
        Jido.Distributed.Broadcast.Supervisor,
        # Last: nothing needs it to start, and a Monitor that keeps failing
        # must not take the transport's state with it.
        Jido.Distributed.Monitor.Supervisor
      ] ++ if(opts[:relay], do: [{Jido.Distributed.Relay, opts[:relay]}], else: [])

    Supervisor.start_link(children, strategy: :rest_for_one, name: Jido.Distributed.Supervisor)
  end
end

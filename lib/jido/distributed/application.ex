defmodule Jido.Distributed.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    opts = Jido.Distributed.Options.from_env()

    children =
      if opts[:relay],
        do: [{Jido.Distributed.Relay, opts[:relay]}],
        else: []

    Supervisor.start_link(children, strategy: :rest_for_one, name: Jido.Distributed.Supervisor)
  end
end

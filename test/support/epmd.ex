defmodule Jido.Distributed.Test.Epmd do
  @moduledoc """
  An `-epmd_module` for peer nodes that lets the harness redirect connections.

  Peer nodes started by `Jido.Distributed.Test.Cluster` boot with
  `-epmd_module Elixir.Jido.Distributed.Test.Epmd`. Every callback delegates to
  OTP's `:erl_epmd`, except `port_please/2,3`: when an override is set for the
  looked-up node name, the answer carries the override port (a
  `Jido.Distributed.Test.DelayProxy` listening on the test node) instead of the
  node's real distribution port. Connections this node *initiates* to that
  node then go through the proxy; connections the other node initiates are not
  affected (the harness sets an override on both sides).

  Overrides live in `:persistent_term` of the node they are set on, keyed by
  the node's name part (before `@`). They are read only when a connection is
  set up, so a change takes effect on the next connection.

  The module is loaded while the peer boots, before Elixir is started, so it
  only calls Erlang/OTP modules.
  """

  @typedoc "A node name part (before `@`): `:a`, `~c\"a\"` or `\"a\"`, or a full node atom."
  @type name :: atom() | charlist() | String.t()

  # --- erl_epmd callbacks -------------------------------------------------

  @doc "Starts OTP's epmd client (`:erl_epmd.start_link/0`)."
  @spec start_link() :: {:ok, pid()} | :ignore | {:error, term()}
  def start_link, do: :erl_epmd.start_link()

  @doc "Registers this node with epmd (`:erl_epmd.register_node/2`)."
  @spec register_node(term(), :inet.port_number()) :: {:ok, term()} | {:error, term()}
  def register_node(name, port), do: :erl_epmd.register_node(name, port)

  @doc "Registers this node with epmd (`:erl_epmd.register_node/3`)."
  @spec register_node(term(), :inet.port_number(), atom()) :: {:ok, term()} | {:error, term()}
  def register_node(name, port, family), do: :erl_epmd.register_node(name, port, family)

  @doc "The port this node listens on (`:erl_epmd.listen_port_please/2`)."
  @spec listen_port_please(term(), term()) :: {:ok, :inet.port_number()}
  def listen_port_please(name, host), do: :erl_epmd.listen_port_please(name, host)

  @doc "Resolves the host of a node (`:erl_epmd.address_please/3`)."
  @spec address_please(term(), term(), atom()) :: {:ok, :inet.ip_address()} | {:error, term()}
  def address_please(name, host, family), do: :erl_epmd.address_please(name, host, family)

  @doc "Node names registered at the local epmd (`:erl_epmd.names/0`)."
  @spec names() :: {:ok, [{charlist(), :inet.port_number()}]} | {:error, term()}
  def names, do: :erl_epmd.names()

  @doc "Node names registered at `host`'s epmd (`:erl_epmd.names/1`)."
  @spec names(term()) :: {:ok, [{charlist(), :inet.port_number()}]} | {:error, term()}
  def names(host), do: :erl_epmd.names(host)

  @doc "Like `port_please/3` with an infinite timeout."
  @spec port_please(term(), term()) :: {:port, :inet.port_number(), pos_integer()} | term()
  def port_please(name, host), do: port_please(name, host, :infinity)

  @doc """
  Looks up the distribution port of `name` at `host`; answers with the
  override port if one is set for `name`.

  The real look-up is still made, so a node that is not registered is
  reported as such (`:noport`) instead of being routed to a proxy.
  """
  @spec port_please(term(), term(), timeout()) ::
          {:port, :inet.port_number(), pos_integer()} | term()
  def port_please(name, host, timeout) do
    case :erl_epmd.port_please(name, host, timeout) do
      {:port, port, version} ->
        case :persistent_term.get(key(name), nil) do
          nil -> {:port, port, version}
          override -> {:port, override, version}
        end

      other ->
        other
    end
  end

  # --- overrides --------------------------------------------------------------

  @doc "Routes this node's future connections to `name` through `port`."
  @spec put_override(name(), :inet.port_number()) :: :ok
  def put_override(name, port) when is_integer(port) and port > 0 and port < 65_536,
    do: :persistent_term.put(key(name), port)

  @doc "Removes the override for `name`; returns `:ok` also when none was set."
  @spec delete_override(name()) :: :ok
  def delete_override(name) do
    _ = :persistent_term.erase(key(name))
    :ok
  end

  @doc "The override port set for `name`, or `nil`."
  @spec override(name()) :: :inet.port_number() | nil
  def override(name), do: :persistent_term.get(key(name), nil)

  defp key(name), do: {__MODULE__, short_name(name)}

  # Full node atoms (`:"a@vm"`) and bare names (`~c"a"`) map to the same key.
  defp short_name(name) when is_atom(name), do: short_name(:erlang.atom_to_binary(name, :utf8))
  defp short_name(name) when is_list(name), do: short_name(:erlang.list_to_binary(name))

  defp short_name(name) when is_binary(name) do
    [short | _] = :binary.split(name, "@")
    short
  end
end

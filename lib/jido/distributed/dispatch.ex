defmodule Jido.Distributed.Dispatch do
  @moduledoc """
  A dispatch adapter in jido_signal's shape (`validate_opts/1`, `deliver/2`),
  so a Jido app can route signals through jido_distributed's batched links:

      dispatch: {Jido.Distributed.Dispatch, target: {:orders, :"app@host2"}}

  ## Options

    * `:target` (required) - a pid (local or remote) or `{name, node}` with
      a well-formed node name.
    * `:message_format` - see `Jido.Distributed.Message`; defaults to
      `:signal` (`{:signal, signal}`, what `Jido.AgentServer` handles).
  """

  alias Jido.Distributed.Message
  alias Jido.Distributed.Transport.NodeCheck

  @doc """
  Validates dispatch options.

      iex> Jido.Distributed.Dispatch.validate_opts(target: {:svc, :"a@h"})
      {:ok, [target: {:svc, :"a@h"}, message_format: :signal]}
      iex> Jido.Distributed.Dispatch.validate_opts(target: "nope")
      {:error, "the :target option must be a pid or {name, node} with a well-formed node name, got: \\"nope\\""}
      iex> Jido.Distributed.Dispatch.validate_opts(target: {:svc, :"a@b@c"})
      {:error, "the :target option must be a pid or {name, node} with a well-formed node name, got: {:svc, :a@b@c}"}
  """
  @spec validate_opts(keyword()) :: {:ok, keyword()} | {:error, String.t()}
  def validate_opts(opts) when is_list(opts) do
    target = Keyword.get(opts, :target)
    format = Keyword.get(opts, :message_format, :signal)

    with :ok <- validate_target(target),
         :ok <- Message.validate(format) do
      {:ok, Keyword.merge(opts, target: target, message_format: format)}
    end
  end

  def validate_opts(opts),
    do: {:error, "the opts argument must be a keyword list, got: #{inspect(opts)}"}

  @doc """
  Delivers `signal` to the `:target` in `opts`. Returns `:ok`, `{:error,
  message}` for bad options, or `{:error, reason}` with a
  `t:Jido.Distributed.send_error/0`, such as `{:invalid_signal, term}` for a
  term that is not a signal or `{:unknown_node, node}` for a node this node
  has never been connected to.

      iex> Jido.Distributed.Dispatch.deliver(%{id: "1", type: "t"}, target: self())
      :ok
      iex> Jido.Distributed.Dispatch.deliver("1", target: self())
      {:error, {:invalid_signal, "1"}}
  """
  @spec deliver(Jido.Distributed.Signal.t(), keyword()) ::
          :ok | {:error, String.t() | Jido.Distributed.send_error()}
  def deliver(signal, opts) do
    with {:ok, opts} <- validate_opts(opts) do
      Jido.Distributed.send(opts[:target], signal, message_format: opts[:message_format])
    end
  end

  defp validate_target(pid) when is_pid(pid), do: :ok

  defp validate_target({name, node} = target) when is_atom(name) and is_atom(node) do
    if node == node() or NodeCheck.valid_name?(node), do: :ok, else: invalid_target(target)
  end

  defp validate_target(target), do: invalid_target(target)

  defp invalid_target(target),
    do:
      {:error,
       "the :target option must be a pid or {name, node} with a well-formed node name, got: #{inspect(target)}"}
end

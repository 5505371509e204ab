defmodule Jido.Distributed.Dispatch do
  @moduledoc """
  A dispatch adapter in jido_signal's shape (`validate_opts/1`, `deliver/2`),
  so a Jido app can route signals through jido_distributed's batched links:

      dispatch: {Jido.Distributed.Dispatch, target: {:orders, :"app@host2"}}

  ## Options

    * `:target` (required) - a pid (local or remote) or `{name, node}`.
    * `:message_format` - see `Jido.Distributed.Message`; defaults to
      `:signal` (`{:signal, signal}`, what `Jido.AgentServer` handles).
  """

  alias Jido.Distributed.Message

  @doc """
  Validates dispatch options.

      iex> Jido.Distributed.Dispatch.validate_opts(target: {:svc, :"a@h"})
      {:ok, [target: {:svc, :"a@h"}, message_format: :signal]}
      iex> Jido.Distributed.Dispatch.validate_opts(target: "nope")
      {:error, "the :target option must be a pid or {name, node}, got: \\"nope\\""}
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

  @doc """
  Delivers `signal` to the `:target` in `opts`.

      iex> Jido.Distributed.Dispatch.deliver(%{id: "1", type: "t"}, target: self())
      :ok
  """
  @spec deliver(term(), keyword()) :: :ok | {:error, term()}
  def deliver(signal, opts) do
    with {:ok, opts} <- validate_opts(opts) do
      Jido.Distributed.send(opts[:target], signal, message_format: opts[:message_format])
    end
  end

  defp validate_target(pid) when is_pid(pid), do: :ok
  defp validate_target({name, node}) when is_atom(name) and is_atom(node), do: :ok

  defp validate_target(target),
    do: {:error, "the :target option must be a pid or {name, node}, got: #{inspect(target)}"}
end

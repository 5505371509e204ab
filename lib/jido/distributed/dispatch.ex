defmodule Jido.Distributed.Dispatch do
  @target_shape "a pid or {name, node} with a well-formed node name"

  @schema [
    target: [
      type: {:custom, &__MODULE__.target?/1, @target_shape},
      default: nil,
      doc: "Required: a pid (local or remote) or `{name, node}` with a well-formed node name."
    ],
    message_format: Jido.Distributed.message_format_option()
  ]

  @moduledoc """
  A dispatch adapter in jido_signal's shape (`validate_opts/1`, `deliver/2`),
  so a Jido app can route signals through jido_distributed's batched links:

      dispatch: {Jido.Distributed.Dispatch, target: {:orders, :"app@host2"}}

  ## Options

  #{Jido.Distributed.Options.docs(@schema)}
  """

  alias Jido.Distributed.Options
  alias Jido.Distributed.Transport.NodeCheck

  @doc """
  Validates dispatch options: `{:ok, opts}` with the defaults filled in, or
  `{:error, message}` naming the option and the bad value.

      iex> Jido.Distributed.Dispatch.validate_opts(target: {:svc, :"a@h"})
      {:ok, [target: {:svc, :"a@h"}, message_format: :signal]}
      iex> Jido.Distributed.Dispatch.validate_opts(target: "nope")
      {:error, "the :target option must be a pid or {name, node} with a well-formed node name, got: \\"nope\\""}
      iex> Jido.Distributed.Dispatch.validate_opts(target: {:svc, :"a@b@c"})
      {:error, "the :target option must be a pid or {name, node} with a well-formed node name, got: {:svc, :a@b@c}"}
  """
  @spec validate_opts(keyword()) :: {:ok, keyword()} | {:error, String.t()}
  def validate_opts(opts) do
    opts = Options.validate!(opts, @schema)

    # Required: the schema leaves a missing key nil.
    if opts[:target] == nil,
      do: {:error, "the :target option must be #{@target_shape}, got: nil"},
      else: {:ok, opts}
  rescue
    error in ArgumentError -> {:error, Exception.message(error)}
  end

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

  @doc false
  # The :target option's check (for the schema).
  @spec target?(term()) :: boolean()
  def target?(pid) when is_pid(pid), do: true

  def target?({name, node}) when is_atom(name) and is_atom(node),
    do: node == node() or NodeCheck.valid_name?(node)

  def target?(_other), do: false
end

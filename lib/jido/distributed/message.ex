defmodule Jido.Distributed.Message do
  @moduledoc """
  The message a target receives for a signal.

  By default a target receives `{:signal, signal}`, the message
  `Jido.AgentServer` handles. The `:message_format` option changes it:

    * `:signal` (default) - `{:signal, signal}`
    * `:raw` - the signal itself
    * `{:tag, tag}` - `{tag, signal}`
    * a 1-arity function - its result (applied on the sending node)
  """

  @typedoc "A message format, see the module doc."
  @type format :: :signal | :raw | {:tag, atom()} | (term() -> term())

  @doc """
  Formats `signal` for delivery.

      iex> Jido.Distributed.Message.format(%{id: "1"}, :signal)
      {:signal, %{id: "1"}}
      iex> Jido.Distributed.Message.format(%{id: "1"}, {:tag, :event})
      {:event, %{id: "1"}}
  """
  @spec format(term(), format()) :: term()
  def format(signal, :signal), do: {:signal, signal}
  def format(signal, :raw), do: signal
  def format(signal, {:tag, tag}) when is_atom(tag), do: {tag, signal}
  def format(signal, fun) when is_function(fun, 1), do: fun.(signal)

  def format(_signal, other), do: raise(ArgumentError, invalid(other))

  @doc """
  Checks a message format: `:ok`, or `{:error, message}` naming the option
  and the bad value.

      iex> Jido.Distributed.Message.validate(:raw)
      :ok
      iex> Jido.Distributed.Message.validate(:xml)
      {:error, "the :message_format option must be :signal, :raw, {:tag, atom} or a 1-arity function, got: :xml"}
  """
  @spec validate(term()) :: :ok | {:error, String.t()}
  def validate(format), do: if(valid?(format), do: :ok, else: {:error, invalid(format)})

  @doc "Like `validate/1`, but raises `ArgumentError`."
  @spec validate!(term()) :: :ok
  def validate!(format),
    do: if(valid?(format), do: :ok, else: raise(ArgumentError, invalid(format)))

  defp invalid(format) do
    "the :message_format option must be :signal, :raw, {:tag, atom} or a 1-arity function, " <>
      "got: #{inspect(format)}"
  end

  @doc "True when `format` is a valid message format."
  @spec valid?(term()) :: boolean()
  def valid?(format) do
    format in [:signal, :raw] or match?({:tag, t} when is_atom(t), format) or
      is_function(format, 1)
  end
end

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

  def format(_signal, other) do
    raise ArgumentError,
          "the :message_format option must be :signal, :raw, {:tag, atom} or a 1-arity function, got: #{inspect(other)}"
  end

  @doc "True when `format` is a valid message format."
  @spec valid?(term()) :: boolean()
  def valid?(format) do
    format in [:signal, :raw] or match?({:tag, t} when is_atom(t), format) or
      is_function(format, 1)
  end
end

defmodule Jido.Distributed.Signal do
  @moduledoc """
  What this library accepts as a signal: a map or struct with at least `:id`
  and `:type` (jido_signal's `Jido.Signal` has these and more). Nothing else
  is looked at: other keys, and the values of `:id` and `:type`, are the
  application's.

  The one check used by `Jido.Distributed.send/3`, `dispatch/2`,
  `route_and_send/2`, `broadcast/2` and `Jido.Distributed.Dispatch.deliver/2`,
  which refuse anything else with `{:error, {:invalid_signal, term}}`.
  `Jido.Distributed.TreeBroadcast.broadcast/2` accepts the same signals and
  raises `ArgumentError` with `message/1` for others.
  """

  @typedoc "A map or struct with at least `:id` and `:type`."
  @type t :: %{required(:id) => term(), required(:type) => term(), optional(term()) => term()}

  @doc """
  True for a signal; usable in guards.

      iex> import Jido.Distributed.Signal, only: [is_signal: 1]
      iex> is_signal(%{id: "1", type: "t"})
      true
      iex> is_signal("t")
      false
  """
  defguard is_signal(term)
           when is_map(term) and is_map_key(term, :id) and is_map_key(term, :type)

  @doc """
  `:ok` for a signal, otherwise `{:error, {:invalid_signal, term}}`.

      iex> Jido.Distributed.Signal.check(%{id: "1", type: "t", data: %{}})
      :ok
      iex> Jido.Distributed.Signal.check(%{id: "1"})
      {:error, {:invalid_signal, %{id: "1"}}}
      iex> Jido.Distributed.Signal.check(nil)
      {:error, {:invalid_signal, nil}}
  """
  @spec check(term()) :: :ok | {:error, {:invalid_signal, term()}}
  def check(signal) when is_signal(signal), do: :ok
  def check(other), do: {:error, {:invalid_signal, other}}

  @doc """
  The message for a term that is not a signal.

      iex> Jido.Distributed.Signal.message(42)
      "expected a signal (a map or struct with :id and :type), got: 42"
  """
  @spec message(term()) :: String.t()
  def message(other),
    do: "expected a signal (a map or struct with :id and :type), got: #{inspect(other)}"
end

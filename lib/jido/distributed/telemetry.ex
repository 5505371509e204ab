defmodule Jido.Distributed.Telemetry do
  @moduledoc """
  Emits `[:jido, :distributed, ...]` telemetry events.

  Calls `:telemetry.execute/3` only when the `:telemetry` application is
  loaded (Jido apps have it; this library does not depend on it), so emitting
  costs one cached check otherwise.
  """

  @doc """
  Emits `[:jido, :distributed | suffix]` with `measurements` and `metadata`.

      iex> Jido.Distributed.Telemetry.emit([:test], %{count: 1}, %{})
      :ok
  """
  @spec emit([atom()], map(), map()) :: :ok
  def emit(suffix, measurements, metadata) when is_list(suffix) do
    if available?() do
      # credo:disable-for-next-line
      apply(:telemetry, :execute, [[:jido, :distributed | suffix], measurements, metadata])
    end

    :ok
  end

  @doc "True when `:telemetry` can be called."
  @spec available?() :: boolean()
  def available? do
    case :persistent_term.get({__MODULE__, :available}, :unknown) do
      :unknown ->
        available = Code.ensure_loaded?(:telemetry)
        :persistent_term.put({__MODULE__, :available}, available)
        available

      available ->
        available
    end
  end
end

defmodule Jido.Distributed.Malformed do
  @moduledoc """
  How every subsystem reports input it refused from another node (a
  message of the wrong shape, a frame that does not decode, a forged
  datagram): one `[:jido, :distributed, component, :malformed]` telemetry
  event per refusal, with the `reason` as metadata, and one warning in the
  log for the first refusal of each reason only, so a node fed garbage in
  a loop does not flood its log. Counting is the caller's (each subsystem
  keeps its own counters).

      iex> alias Jido.Distributed.Malformed
      iex> logged = Malformed.report(MapSet.new(), :test, :bad_shape, {:garbage}, "test")
      iex> MapSet.to_list(Malformed.report(logged, :test, :bad_shape, {:garbage}, "test"))
      [:bad_shape]
  """

  require Logger

  alias Jido.Distributed.Telemetry

  @doc """
  Reports one refused `message` of `component` for `reason`; `who` names
  the receiver in the log line. `logged` holds the reasons logged so far;
  returns it with `reason` added.
  """
  @spec report(MapSet.t(), atom(), term(), term(), String.t()) :: MapSet.t()
  def report(logged, component, reason, message, who) when is_atom(component) do
    Telemetry.emit([component, :malformed], %{count: 1}, %{reason: reason})

    if MapSet.member?(logged, reason) do
      logged
    else
      Logger.warning(
        "#{who} dropped a malformed message (#{describe(reason)}): " <>
          "#{inspect(message, limit: 8, printable_limit: 256)}; " <>
          "further ones for this reason are only counted"
      )

      MapSet.put(logged, reason)
    end
  end

  defp describe(reason) when is_atom(reason), do: Atom.to_string(reason)
  defp describe(reason), do: inspect(reason)
end

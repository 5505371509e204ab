defmodule Jido.Distributed.Monitor.Traffic do
  @moduledoc """
  Traffic rates per node, from the running totals of this node's Links
  (signals and compressed bytes sent) and Receiver (signals and bytes
  delivered), between two samples.
  """

  require Jido.Distributed.Transport.LinkRow

  alias Jido.Distributed.Transport.{LinkBuffer, LinkRow, LinkStore, Receiver}

  @typedoc "Totals per node at a time: `{at_ms, %{node => {out, out_bytes, in, in_bytes}}}`."
  @type sample :: {integer(), %{node() => tuple()}} | nil

  @doc """
  Takes a new sample at `now_ms`; returns it and the rates since `last`
  (`rates` unchanged when there is no earlier sample, or the transport is
  restarting).
  """
  @spec sample(sample(), map(), integer()) :: {sample(), map()}
  def sample(last, rates, now_ms) do
    totals = totals()
    {{now_ms, totals}, rates(last, totals, now_ms) || rates}
  catch
    _, _ -> {last, rates}
  end

  @doc """
  Rates between two totals.

      iex> alias Jido.Distributed.Monitor.Traffic
      iex> Traffic.rates({0, %{n: {0, 0, 10, 100}}}, %{n: {20, 2_000, 10, 300}}, 2_000)
      %{n: %{signals_out_per_s: 10.0, bytes_out_per_s: 1000.0, signals_in_per_s: 0.0, bytes_in_per_s: 100.0}}
  """
  @spec rates(sample(), map(), integer()) :: map() | nil
  def rates({at, last}, totals, now_ms) when now_ms > at do
    secs = (now_ms - at) / 1_000

    Map.new(totals, fn {node, {so, bo, si, bi} = now} ->
      {so0, bo0, si0, bi0} = Map.get(last, node, now)

      {node,
       %{
         signals_out_per_s: rate(so - so0, secs),
         bytes_out_per_s: rate(bo - bo0, secs),
         signals_in_per_s: rate(si - si0, secs),
         bytes_in_per_s: rate(bi - bi0, secs)
       }}
    end)
  end

  def rates(_last, _totals, _now_ms), do: nil

  defp rate(delta, secs), do: Float.round(max(delta, 0) / secs, 1)

  defp totals do
    out =
      for LinkRow.link_row(node: node, buffer: buffer, counters: counters) <- LinkStore.rows(),
          into: %{} do
        sent = LinkRow.read_counters(counters)
        {node, {LinkBuffer.stats(buffer).pushed_entries, sent.wire_bytes, 0, 0}}
      end

    Enum.reduce(Receiver.traffic(), out, fn {node, t}, acc ->
      {so, bo, _, _} = Map.get(acc, node, {0, 0, 0, 0})
      Map.put(acc, node, {so, bo, t.signals, t.wire_bytes})
    end)
  end
end

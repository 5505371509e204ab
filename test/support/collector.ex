defmodule Jido.Distributed.Test.Collector do
  @moduledoc """
  A target process for delivery tests and benchmarks: it receives
  `{:signal, signal}` messages and checks them.

  Signals should carry `data: %{sender: term, seq: integer}` (otherwise
  they are told apart by `:id` and order is not checked); the collector
  counts what it received, counts distinct `{sender, seq}` pairs, and counts
  order violations (a seq not greater than the last one from the same
  sender), so exactly-once in-order delivery is `received == distinct ==
  expected` with no violations. For signals whose data has `:sent_at`
  (`:os.system_time(:microsecond)` when sent; the OS clock is shared by all
  nodes on one host) it records the latency in microseconds.

  Started with `arrivals: true`, it also records every arrival as
  `{sender, seq, os_time_ms}` (in arrival order, in the report's
  `:arrivals`), for checks that need to know when each signal came (the
  chaos run).
  """

  @doc """
  Starts a collector on `node` (default: this node); returns its pid.

  ## Options

    * `:name` - register it under this name;
    * `:arrivals` - record each arrival (see the module doc; default `false`).
  """
  @spec start(node(), keyword()) :: pid()
  def start(node \\ node(), opts \\ []) do
    name = opts[:name]
    arrivals = if opts[:arrivals], do: [], else: nil

    Node.spawn(node, fn ->
      if name, do: Process.register(self(), name)

      loop(%{
        received: 0,
        seen: MapSet.new(),
        last: %{},
        violations: 0,
        latencies: [],
        arrivals: arrivals,
        notify: nil
      })
    end)
  end

  @doc """
  Asks a collector to send `{:collected, collector}` to `target` once it
  has received `count` signals in all (at once if it already has). One
  request at a time: a new one replaces the last.
  """
  @spec notify_at(pid(), non_neg_integer(), pid()) :: :ok
  def notify_at(pid, count, target \\ self()) do
    send(pid, {:notify_at, count, target})
    :ok
  end

  @doc "Asks a collector for its report."
  @spec report(pid(), timeout()) :: map()
  def report(pid, timeout \\ 5_000) do
    ref = make_ref()
    send(pid, {:report, self(), ref})

    receive do
      {^ref, report} -> report
    after
      timeout -> raise "collector #{inspect(pid)} did not answer"
    end
  end

  @doc "How many signals a collector has received (a cheap `report/2`)."
  @spec received(pid(), timeout()) :: non_neg_integer()
  def received(pid, timeout \\ 5_000) do
    ref = make_ref()
    send(pid, {:received, self(), ref})

    receive do
      {^ref, count} -> count
    after
      timeout -> raise "collector #{inspect(pid)} did not answer"
    end
  end

  @doc "Waits until the collectors together received `count` signals (or times out); returns the reports."
  @spec await_total([pid()], non_neg_integer(), timeout()) :: {:ok | :timeout, [map()]}
  def await_total(pids, count, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout
    do_await(pids, count, deadline)
  end

  defp do_await(pids, count, deadline) do
    reports = Enum.map(pids, &report/1)
    total = reports |> Enum.map(& &1.received) |> Enum.sum()

    cond do
      total >= count -> {:ok, reports}
      System.monotonic_time(:millisecond) > deadline -> {:timeout, reports}
      true -> Process.sleep(20) && do_await(pids, count, deadline)
    end
  end

  @doc "Stops a collector."
  @spec stop(pid()) :: :ok
  def stop(pid) do
    send(pid, :stop)
    :ok
  end

  defp loop(state) do
    receive do
      {:signal, signal} ->
        state |> record(signal) |> maybe_notify() |> loop()

      {:notify_at, count, target} ->
        loop(maybe_notify(%{state | notify: {count, target}}))

      {:report, from, ref} ->
        send(from, {ref, summarize(state)})
        loop(state)

      {:received, from, ref} ->
        send(from, {ref, state.received})
        loop(state)

      :stop ->
        :ok
    end
  end

  defp maybe_notify(%{notify: {count, target}, received: received} = state)
       when received >= count do
    send(target, {:collected, self()})
    %{state | notify: nil}
  end

  defp maybe_notify(state), do: state

  defp record(state, signal) do
    now = :os.system_time(:microsecond)
    data = Map.get(signal, :data, %{})
    sender = Map.get(data, :sender)
    seq = Map.get(data, :seq)
    key = if seq, do: {sender, seq}, else: Map.get(signal, :id)

    violations =
      case state.last do
        %{^sender => last} when seq != nil and seq <= last -> state.violations + 1
        _ -> state.violations
      end

    latencies =
      case Map.get(data, :sent_at) do
        sent when is_integer(sent) -> [now - sent | state.latencies]
        _ -> state.latencies
      end

    arrivals =
      case state.arrivals do
        nil -> nil
        list -> [{sender, seq, div(now, 1_000)} | list]
      end

    %{
      state
      | received: state.received + 1,
        arrivals: arrivals,
        seen: MapSet.put(state.seen, key),
        last: Map.put(state.last, sender, seq),
        violations: violations,
        latencies: latencies
    }
  end

  defp summarize(state) do
    %{
      received: state.received,
      distinct: MapSet.size(state.seen),
      violations: state.violations,
      senders: map_size(state.last),
      latencies_us: state.latencies,
      arrivals: if(state.arrivals, do: Enum.reverse(state.arrivals), else: [])
    }
  end
end

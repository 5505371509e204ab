defmodule Jido.Distributed.Test.RoutingLoad do
  @moduledoc """
  What runs on an origin node in routing benchmarks and the demo: routes
  signals with `Jido.Router.route_with_locality/1` or with a locality-blind
  router (uniform among capable agents), sends them, counts cross-node
  sends, starts idle agent processes and times routes.
  """

  @doc "Routes each signal with locality; returns the chosen agent's node (nil when none)."
  @spec route_nodes([map()]) :: [node() | nil]
  def route_nodes(signals) do
    Enum.map(signals, fn signal ->
      case Jido.Router.route_with_locality(signal) do
        {:error, _} -> nil
        {_where, agent} -> agent.node
      end
    end)
  end

  @doc "A uniform random choice among the capable agents (the locality-blind router)."
  @spec blind_pick(map()) :: map() | nil
  def blind_pick(signal) do
    case Jido.Router.capable_agents(signal) do
      [] -> nil
      agents -> Enum.random(agents)
    end
  end

  @doc "The nodes the blind router picks for `signals`, seeded."
  @spec blind_nodes([map()], integer()) :: [node() | nil]
  def blind_nodes(signals, seed) do
    :rand.seed(:exsss, {seed, 1, 2})
    Enum.map(signals, &(blind_pick(&1) |> then(fn a -> a && a.node end)))
  end

  @doc "Routes with locality and sends every signal; flushes the Links."
  @spec send_locality([map()]) :: :ok
  def send_locality(signals) do
    Enum.each(signals, fn s -> {:ok, _} = Jido.Distributed.route_and_send(s) end)
    Jido.Distributed.flush(:all)
  end

  @doc "Sends every signal to the blind router's choice; flushes the Links."
  @spec send_blind([map()], integer()) :: :ok
  def send_blind(signals, seed) do
    :rand.seed(:exsss, {seed, 3, 4})
    Enum.each(signals, fn s -> :ok = Jido.Distributed.send(blind_pick(s).pid, s) end)
    Jido.Distributed.flush(:all)
  end

  @doc "Signals this node has handed to its Links so far (cross-node sends)."
  @spec link_signals() :: non_neg_integer()
  def link_signals do
    Jido.Distributed.stats().links |> Map.values() |> Enum.map(& &1.signals) |> Enum.sum()
  end

  # Packets and bytes sent to the other peers (not to the benchmark node,
  # which polls the agents for their counts meanwhile).
  @doc "Packets and bytes this node sent so far on its distribution sockets to `peers`."
  @spec dist_counters([node()]) :: {non_neg_integer(), non_neg_integer()}
  def dist_counters(peers) do
    for {node, port} <- :erlang.system_info(:dist_ctrl),
        is_port(port),
        node in peers,
        reduce: {0, 0} do
      {cnt, oct} ->
        case :inet.getstat(port, [:send_cnt, :send_oct]) do
          {:ok, stats} -> {cnt + stats[:send_cnt], oct + stats[:send_oct]}
          _ -> {cnt, oct}
        end
    end
  end

  @doc "Agents this node's Directory knows (local and replicated)."
  @spec agent_count() :: non_neg_integer()
  def agent_count, do: :ets.info(Jido.Distributed.Directory.Store.agents(), :size)

  @doc "Spawns one idle process per `{id, pattern}` and registers it in this node's Directory."
  @spec start_agents([{String.t(), String.t()}]) :: [pid()]
  def start_agents(specs) do
    for {id, pattern} <- specs do
      pid = spawn(fn -> receive do: (:stop -> :ok) end)
      :ok = Jido.Distributed.Directory.register(id, [pattern], pid: pid)
      pid
    end
  end

  @doc "Stops agents started by `start_agents/1`."
  @spec stop_agents([pid()]) :: :ok
  def stop_agents(pids), do: Enum.each(pids, &send(&1, :stop))

  @doc "Per-call times in ns of `route_with_locality/1`, after a warm-up pass, with where each went."
  @spec time_routes([map()]) :: [{non_neg_integer(), atom()}]
  def time_routes(signals) do
    Enum.each(signals, &Jido.Router.route_with_locality/1)
    :erlang.garbage_collect()

    Enum.map(signals, fn signal ->
      t0 = :erlang.monotonic_time(:nanosecond)
      route = Jido.Router.route_with_locality(signal)
      t1 = :erlang.monotonic_time(:nanosecond)
      {t1 - t0, elem(route, 0)}
    end)
  end

  @doc "Per-call times in ns of the blind router, after a warm-up pass."
  @spec time_blind([map()]) :: [non_neg_integer()]
  def time_blind(signals) do
    Enum.each(signals, &blind_pick/1)
    :erlang.garbage_collect()

    Enum.map(signals, fn signal ->
      t0 = :erlang.monotonic_time(:nanosecond)
      blind_pick(signal)
      :erlang.monotonic_time(:nanosecond) - t0
    end)
  end

  # For the runner on this node: each call routes the next signal.
  @doc "Stores signals for `route_next/0` and `blind_next/0` (one signal per call)."
  @spec setup_cycle([map()]) :: :ok
  def setup_cycle(signals) do
    :persistent_term.put({__MODULE__, :signals}, List.to_tuple(signals))
  end

  @doc "Routes the next stored signal with locality."
  @spec route_next() :: term()
  def route_next, do: Jido.Router.route_with_locality(next())
  @doc "Routes the next stored signal blindly."
  @spec blind_next() :: map() | nil
  def blind_next, do: blind_pick(next())

  defp next do
    signals = :persistent_term.get({__MODULE__, :signals})
    i = Process.get(:cycle, 0)
    Process.put(:cycle, i + 1)
    elem(signals, rem(i, tuple_size(signals)))
  end
end

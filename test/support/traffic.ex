defmodule Jido.Distributed.Test.Traffic do
  @moduledoc """
  Workloads for benchmarks and the demo, run on a sending node: the same
  signals sent either with plain per-signal `send/2` (the baseline) or with
  `Jido.Distributed.send/3`, paced or at full speed; an echo target for
  round-trip latency; and counters read from the distribution sockets.
  """

  @typedoc "How signals travel: plain `send/2` per signal, or through jido_distributed."
  @type mode :: :plain | :ours

  @doc """
  Sends `signals` round-robin to `targets` at `rate` signals per second (in
  bursts once per millisecond), stamping `data.sent_at` with the OS clock.
  Returns `{elapsed_us, refused}`.
  """
  @spec paced([pid()], [map()], pos_integer(), mode()) :: {non_neg_integer(), non_neg_integer()}
  def paced(targets, signals, rate, mode) do
    targets = List.to_tuple(targets)
    start = System.monotonic_time(:microsecond)
    per_ms = max(div(rate, 1000), 1)

    refused =
      signals
      |> Enum.chunk_every(per_ms)
      |> Enum.with_index()
      |> Enum.reduce(0, fn {chunk, tick}, refused ->
        wait_until(start + tick * 1_000)
        refused + send_chunk(chunk, targets, tick * per_ms, mode)
      end)

    Jido.Distributed.flush(:all)
    {System.monotonic_time(:microsecond) - start, refused}
  end

  @doc "Sends `signals` round-robin to `targets` as fast as possible. Returns `{elapsed_us, refused}`."
  @spec burst([pid()], [map()], mode()) :: {non_neg_integer(), non_neg_integer()}
  def burst(targets, signals, mode) do
    start = System.monotonic_time(:microsecond)
    refused = send_chunk(signals, List.to_tuple(targets), 0, mode)
    if mode == :ours, do: Jido.Distributed.flush(:all)
    {System.monotonic_time(:microsecond) - start, refused}
  end

  defp send_chunk(signals, targets, offset, mode) do
    size = tuple_size(targets)

    {_, refused} =
      Enum.reduce(signals, {offset, 0}, fn signal, {i, refused} ->
        target = elem(targets, rem(i, size))
        signal = put_in(signal, [:data, :sent_at], :os.system_time(:microsecond))
        {i + 1, refused + deliver(mode, target, signal)}
      end)

    refused
  end

  defp deliver(:plain, target, signal) do
    send(target, {:signal, signal})
    0
  end

  defp deliver(:ours, target, signal) do
    case Jido.Distributed.send(target, signal) do
      :ok -> 0
      {:error, _} -> 1
    end
  end

  defp wait_until(deadline_us) do
    now = System.monotonic_time(:microsecond)

    if deadline_us - now > 1_000 do
      Process.sleep(div(deadline_us - now, 1_000))
      wait_until(deadline_us)
    end
  end

  @doc "Starts on `node` a target that answers `{:signal, %{data: %{reply_to: pid}}}` with `{:echo, id}`."
  @spec start_echo(node()) :: pid()
  def start_echo(node), do: Node.spawn(node, __MODULE__, :echo_loop, [])

  @doc false
  def echo_loop do
    receive do
      {:signal, %{id: id, data: %{reply_to: pid}}} ->
        send(pid, {:echo, id})
        echo_loop()

      :stop ->
        :ok

      _ ->
        echo_loop()
    end
  end

  @doc """
  Runs `trials` lone-signal round trips to `echo`, `gap_ms` apart (so the
  link is idle before each), the request by `mode`, the reply by plain
  send. Returns the round-trip times in microseconds.
  """
  @spec idle_round_trips(pid(), map(), mode(), pos_integer(), non_neg_integer()) :: [
          non_neg_integer()
        ]
  def idle_round_trips(echo, signal, mode, trials, gap_ms) do
    for trial <- 1..trials do
      Process.sleep(gap_ms)
      id = "#{signal.id}-#{mode}-#{trial}"
      signal = %{signal | id: id, data: Map.put(signal.data, :reply_to, self())}
      start = System.monotonic_time(:microsecond)
      0 = deliver(mode, echo, signal)

      receive do
        {:echo, ^id} -> System.monotonic_time(:microsecond) - start
      after
        5_000 -> raise "echo #{id} timed out"
      end
    end
  end

  @doc """
  Packets and bytes sent so far on this node's distribution sockets to
  `nodes` (`:inet.getstat/2` `send_cnt` and `send_oct`), summed.
  """
  @spec dist_sent([node()]) :: %{packets: non_neg_integer(), bytes: non_neg_integer()}
  def dist_sent(nodes) do
    :erlang.system_info(:dist_ctrl)
    |> Enum.filter(fn {node, _} -> node in nodes end)
    |> Enum.reduce(%{packets: 0, bytes: 0}, fn {_node, port}, acc ->
      case :inet.getstat(port, [:send_cnt, :send_oct]) do
        {:ok, stats} ->
          %{packets: acc.packets + stats[:send_cnt], bytes: acc.bytes + stats[:send_oct]}

        _ ->
          acc
      end
    end)
  end

  @doc """
  Runs one paced phase from the calling node: starts `per_node` collectors
  on each receiver, has `sender` send `signals` to them at `rate` per
  second by `mode`, waits for every delivery, checks exactly-once delivery,
  and returns what crossed the network between the sender and the receivers:
  distribution packets and bytes (both directions, so acks count), remote
  sends, and send-to-delivery latencies (sorted, microseconds). In `:ours`
  mode the sender's Links are started before timing starts.
  """
  @spec run_paced(node(), [node()], [map()], pos_integer(), mode(), keyword()) :: map()
  def run_paced(sender, receivers, signals, rate, mode, opts \\ []) do
    alias Jido.Distributed.Test.{Cluster, Collector}

    count = length(signals)

    targets =
      for node <- receivers, _ <- 1..Keyword.get(opts, :per_node, 10), do: Collector.start(node)

    # Links start on first use; start them before timing, as the plain
    # baseline's connections are up already: steady state is measured.
    if mode == :ours do
      for node <- receivers do
        Cluster.rpc(sender, Jido.Distributed.Transport.Link, :ensure_started, [node])
        Cluster.rpc(sender, Jido.Distributed, :flush, [node])
      end
    end

    before_dist = cluster_dist_sent(sender, receivers)
    before_sends = our_remote_sends(sender, receivers)

    {elapsed_us, refused} =
      Cluster.rpc(sender, __MODULE__, :paced, [targets, signals, rate, mode], 300_000)

    {status, _} = Collector.await_total(targets, count, 120_000)
    # Let late duplicates, if any, arrive before counting.
    Process.sleep(100)
    reports = Enum.map(targets, &Collector.report/1)
    Enum.each(targets, &Collector.stop/1)
    after_dist = cluster_dist_sent(sender, receivers)
    sum = fn key -> reports |> Enum.map(&Map.fetch!(&1, key)) |> Enum.sum() end

    %{
      mode: mode,
      signals: count,
      delivered: sum.(:received),
      distinct: sum.(:distinct),
      exactly_once: status == :ok and sum.(:received) == count and sum.(:distinct) == count,
      refused: refused,
      elapsed_us: elapsed_us,
      packets: after_dist.packets - before_dist.packets,
      bytes: after_dist.bytes - before_dist.bytes,
      remote_sends:
        if(mode == :plain, do: count, else: our_remote_sends(sender, receivers) - before_sends),
      latencies_us: reports |> Enum.flat_map(& &1.latencies_us) |> Enum.sort()
    }
  end

  @doc "Distribution packets and bytes sent between `sender` and `receivers`, both ways."
  @spec cluster_dist_sent(node(), [node()]) :: %{
          packets: non_neg_integer(),
          bytes: non_neg_integer()
        }
  def cluster_dist_sent(sender, receivers) do
    alias Jido.Distributed.Test.Cluster

    [Cluster.rpc(sender, __MODULE__, :dist_sent, [receivers])]
    |> Enum.concat(Enum.map(receivers, &Cluster.rpc(&1, __MODULE__, :dist_sent, [[sender]])))
    |> Enum.reduce(%{packets: 0, bytes: 0}, fn a, acc ->
      %{packets: acc.packets + a.packets, bytes: acc.bytes + a.bytes}
    end)
  end

  @doc "Frames (first sends and retransmits) from `sender` plus acks from `receivers`, so far."
  @spec our_remote_sends(node(), [node()]) :: non_neg_integer()
  def our_remote_sends(sender, receivers) do
    alias Jido.Distributed.Test.Cluster

    links = Cluster.rpc(sender, Jido.Distributed, :stats, []).links

    frames =
      receivers
      |> Enum.map(fn node ->
        case links do
          %{^node => link} -> link.frames + link.retransmits
          _ -> 0
        end
      end)
      |> Enum.sum()

    acks =
      receivers
      |> Enum.map(&Cluster.rpc(&1, Jido.Distributed, :stats, []).receiver.counters.acks_sent)
      |> Enum.sum()

    frames + acks
  end
end

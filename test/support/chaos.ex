defmodule Jido.Distributed.Test.Chaos do
  @moduledoc """
  The chaos run: five testbed hosts, four senders on two of them sending
  numbered signals through `Jido.Distributed.send/3` and `dispatch/2` to 40
  targets on the other three, under a seeded random schedule of silent
  partitions, partial partitions, one-way cuts and host pauses
  (`Jido.Distributed.Test.Chaos.Schedule`). At the end it checks that every
  accepted signal arrived exactly once and in order per (sender, target), and
  measures, per event, how long until the backlog was delivered after the
  heal and when (if at all) a node noticed (`nodedown_after_ms`: the first
  nodedown between hosts the event cut off from each other, from the
  event's start, looked for until the next event starts; it can come after
  the heal; `backlog_outlived_next_event` tells when the backlog was still
  not delivered when the next event began, which then may have held it up
  too).

  Used by the short run in `make test` and by `bench/chaos.exs`
  (`make chaos`). Hosts: `:s1`, `:s2` (senders, two each: one using
  `send/3`, one `dispatch/2`), `:t1`, `:t2`, `:t3` (targets:
  `Jido.Distributed.Test.Collector`s recording arrivals).
  """

  alias Jido.Distributed.Test.{Cluster, Collector, Testbed}
  alias Jido.Distributed.Test.Chaos.{Checker, Schedule, Sender}

  @senders [:s1, :s2]
  @targets [:t1, :t2, :t3]

  @doc """
  Runs the chaos scenario and returns the result (a JSON-friendly map: the
  settings, the schedule as run, per-event recovery and detection, delivery
  counts, signals delivered per second per target host and accepted per
  second by all senders).

  ## Options

    * `:seed` - the schedule's seed (default: a random one; it is in the result).
    * `:signals` - total signals over all senders (default 20_000).
    * `:duration_ms` - length of the fault schedule; sending is paced to
      end with it (default 40_000).
    * `:net_ticktime` - the peers' `net_ticktime` (default: OTP's).
    * `:targets` - number of targets (default 40).
    * `:schedule` - options for `Schedule.generate/2` (`:partition_ms`, ...).
    * `:drain_timeout_ms` - how long to wait for the last deliveries after
      the schedule (default 120_000).
    * `:env` - `:jido_distributed` app env for every host.
    * `:log` - a one-argument function called with progress lines (default: none).
  """
  @spec run(keyword()) :: map()
  def run(opts \\ []) do
    seed = Keyword.get_lazy(opts, :seed, fn -> :rand.uniform(1_000_000_000) end)
    signals = Keyword.get(opts, :signals, 20_000)
    duration = Keyword.get(opts, :duration_ms, 40_000)
    ticktime = Keyword.get(opts, :net_ticktime)
    log = Keyword.get(opts, :log, fn _ -> :ok end)

    schedule =
      Schedule.generate(
        seed,
        [duration_ms: duration, senders: @senders, targets: @targets] ++
          Keyword.get(opts, :schedule, [])
      )

    log.("chaos seed #{seed}: #{length(schedule)} events over #{duration} ms, #{signals} signals")

    {:ok, tb} =
      Testbed.start_link(
        hosts: @senders ++ @targets,
        net_ticktime: ticktime,
        env: Keyword.get(opts, :env, [])
      )

    try do
      run_on(tb, seed, schedule, signals, duration, ticktime, opts, log)
    after
      Testbed.stop(tb)
    end
  end

  defp run_on(tb, seed, schedule, signals, duration, ticktime, opts, log) do
    target_count = Keyword.get(opts, :targets, 40)
    target_hosts = for i <- 0..(target_count - 1), do: Enum.at(@targets, rem(i, length(@targets)))

    collectors =
      for host <- target_hosts,
          do:
            Testbed.call(tb, host, Collector, :start, [Testbed.node(tb, host), [arrivals: true]])

    sender_specs = for host <- @senders, mode <- [:send, :dispatch], do: {host, mode}
    per_sender = div(signals, length(sender_specs))
    rate = per_sender * 1_000 / max(duration - 1_000, 1_000)
    start_ms = :os.system_time(:millisecond)

    senders =
      for {host, mode} <- sender_specs do
        id = "#{host}-#{mode}"
        args = [id, collectors, [count: per_sender, rate: rate, mode: mode]]
        {id, host, Testbed.call(tb, host, Sender, :start, args)}
      end

    ran = Enum.map(schedule, &apply_event(tb, &1, start_ms, log))
    log.("schedule done; waiting for senders and deliveries")

    wait_senders(tb, senders, Keyword.get(opts, :drain_timeout_ms, 120_000))
    sent_ms = :os.system_time(:millisecond)
    expected = per_sender * length(senders)

    drained =
      wait_drained(
        tb,
        collectors,
        target_hosts,
        expected,
        Keyword.get(opts, :drain_timeout_ms, 120_000)
      )

    drained_ms = :os.system_time(:millisecond)
    # Late duplicates, if any, would show up now.
    Process.sleep(1_000)

    accepted =
      for {id, host, pid} <- senders,
          {t, times} <- Testbed.call(tb, host, Sender, :report, [pid], 60_000).accepted,
          into: %{},
          do: {{id, t}, times}

    arrivals =
      collectors
      |> Enum.zip(target_hosts)
      |> Enum.with_index()
      |> Enum.flat_map(fn {{pid, host}, t} ->
        report = Testbed.call(tb, host, Collector, :report, [pid, 60_000], 90_000)

        report.arrivals
        |> Enum.group_by(&elem(&1, 0), fn {_, seq, at} -> {seq, at} end)
        |> Enum.map(fn {sender, list} -> {{sender, t}, list} end)
      end)
      |> Map.new()

    node_events = Map.new(@senders ++ @targets, &{&1, Testbed.node_events(tb, &1)})
    nodes = Map.new(@senders ++ @targets, &{Testbed.node(tb, &1), &1})
    delivery = Checker.delivery(accepted, arrivals)

    # A node may notice a cut after its heal (a tick timeout that was
    # already under way): look for nodedowns until the next event starts.
    window_ends = Enum.map(tl(ran), & &1.started_ms) ++ [drained_ms]

    events =
      Enum.zip_with(ran, window_ends, fn event, window_end ->
        recovery = Checker.recovery(accepted, arrivals, event.healed_ms)

        detection =
          Checker.first_nodedown(node_events, event.started_ms, window_end, fn host, node ->
            cut_between?(event, host, nodes[node])
          end)

        # The backlog was still there when the next fault began: that fault
        # may have held it up too (TCP backs off over consecutive cuts).
        outlived =
          is_integer(recovery.recovery_ms) and recovery.recovery_ms > 0 and
            event.healed_ms + recovery.recovery_ms > window_end

        event
        |> Map.merge(recovery)
        |> Map.put(:backlog_outlived_next_event, outlived)
        |> Map.put(:nodedown_after_ms, detection)
        |> Map.update!(:started_ms, &(&1 - start_ms))
        |> Map.update!(:healed_ms, &(&1 - start_ms))
        |> Map.update!(:cut, &(&1 && Tuple.to_list(&1)))
      end)

    # Accepted signals in the arrivals' shape, to count them per second too.
    accepted_as_arrivals =
      Map.new(accepted, fn {pair, times} -> {pair, Enum.with_index(times, &{&2 + 1, &1})} end)

    %{
      seed: seed,
      schedule_options:
        Keyword.get(opts, :schedule, [])
        |> Map.new(fn {k, v} -> {k, if(is_tuple(v), do: Tuple.to_list(v), else: v)} end),
      settings: %{
        hosts: %{senders: @senders, targets: @targets},
        senders: length(senders),
        targets: target_count,
        signals: expected,
        rate_per_sender: Float.round(rate * 1.0, 1),
        duration_ms: duration,
        net_ticktime: Testbed.call(tb, hd(@senders), :net_kernel, :get_net_ticktime, []),
        net_ticktime_source: if(ticktime, do: "set", else: "OTP default")
      },
      drained: drained,
      senders_done_ms: sent_ms - start_ms,
      drained_ms: drained_ms - start_ms,
      delivery: delivery,
      events: events,
      throughput: %{
        bucket_ms: 1_000,
        per_target_host: Checker.throughput(arrivals, start_ms, &Enum.at(target_hosts, &1)),
        accepted_per_second:
          accepted_as_arrivals
          |> Checker.throughput(start_ms, fn _ -> :all end)
          |> Map.get(:all, [])
      }
    }
  end

  defp apply_event(tb, event, start_ms, log) do
    sleep_until(start_ms + event.at_ms)
    started = :os.system_time(:millisecond)

    case event.kind do
      :pause ->
        :ok = Testbed.pause(tb, event.host, event.duration_ms)
        Cluster.await(fn -> not Testbed.paused?(tb, event.host) end, event.duration_ms + 30_000)

      :one_way ->
        {a, b} = event.cut
        :ok = Testbed.cut_one_way(tb, a, b)
        sleep_until(started + event.duration_ms)
        :ok = Testbed.heal(tb)

      _ ->
        :ok = Testbed.partition(tb, event.groups)
        sleep_until(started + event.duration_ms)
        :ok = Testbed.heal(tb)
    end

    healed = :os.system_time(:millisecond)
    log.("  #{describe(event)} at #{started - start_ms} ms for #{healed - started} ms")
    Map.merge(event, %{started_ms: started, healed_ms: healed})
  end

  @doc "A one-line description of a schedule event."
  @spec describe(Schedule.event()) :: String.t()
  def describe(%{kind: :pause, host: host}), do: "pause #{host}"
  def describe(%{kind: :one_way, cut: {a, b}}), do: "one-way cut #{a} -> #{b}"
  def describe(%{kind: kind, groups: groups}), do: "#{kind} partition #{inspect(groups)}"

  # Whether the event cut `host` off from `other` (a pause cuts the paused host from everyone).
  defp cut_between?(_event, _host, nil), do: false
  defp cut_between?(%{kind: :pause, host: p}, host, other), do: p in [host, other]

  defp cut_between?(%{kind: :one_way, cut: {a, b}}, host, other),
    do: {host, other} in [{a, b}, {b, a}]

  defp cut_between?(%{groups: groups}, host, other) do
    side = fn h -> Enum.find_index(groups, &(h in &1)) end
    side.(host) != nil and side.(other) != nil and side.(host) != side.(other)
  end

  defp wait_senders(tb, senders, timeout) do
    ok =
      Cluster.await(
        fn ->
          Enum.all?(senders, fn {_, host, pid} ->
            Testbed.call(tb, host, Sender, :progress, [pid]).done
          end)
        end,
        timeout,
        250
      )

    unless ok, do: raise("chaos senders did not finish within #{timeout} ms")
  end

  defp wait_drained(tb, collectors, hosts, expected, timeout) do
    Cluster.await(
      fn ->
        collectors
        |> Enum.zip(hosts)
        |> Enum.map(fn {pid, host} -> Testbed.call(tb, host, Collector, :received, [pid]) end)
        |> Enum.sum()
        |> Kernel.>=(expected)
      end,
      timeout,
      250
    )
  end

  defp sleep_until(at_ms) do
    wait = at_ms - :os.system_time(:millisecond)
    if wait > 0, do: Process.sleep(wait)
  end
end

defmodule Jido.Distributed.Bench.Runner do
  @moduledoc """
  The project's small benchmark runner (benchee is unavailable).

  A benchmark script loads the support files, builds its inputs, and hands
  the runner a list of named zero-arity functions:

      Code.require_file("support/load.exs", __DIR__)
      alias Jido.Distributed.Bench.{Result, Runner, Signals}

      opts = Runner.parse_args!(System.argv())
      signals = Signals.batch(1000, 1)

      results =
        Runner.run(
          [
            {"plain encode", fn -> :erlang.term_to_binary(signals) end},
            {"frame encode", fn -> Jido.Distributed.Frame.encode(signals) end}
          ],
          opts
        )

      Runner.print_table(results, title: "codec")
      frame = Runner.fetch!(results, "frame encode")
      Runner.write_json!("codec", results, %{"encode_us" => Result.median_us(frame)}, opts)

  ## How a job is measured

  Jobs are interleaved in `:rounds` rounds (job A, B, C, then A, B, C
  again, ...), so load from elsewhere on a shared machine spreads over all
  of them. In each round a job runs in a fresh process of its own (the
  function's captured inputs are copied there before anything is timed):

    1. **warm-up** - the function is called repeatedly for its share of
       `:warmup_ms`; this also estimates the time per call;
    2. **batching** - if a call takes less than 50 µs, each sample times
       `inner` calls in a row so one sample lasts about 50 µs and clock
       overhead stays small (chosen in the first round, then kept; reported);
    3. **samples** - after a garbage collection, samples are taken for the
       round's share of `:time_ms` (and of `:min_samples`, or up to
       `:max_samples`), each timed with the monotonic clock in nanoseconds;
    4. **memory** - after all rounds, unless `memory: false`, the function
       is called once in each of `:memory_runs` further fresh processes
       whose garbage collections are traced; see
       `Jido.Distributed.Bench.Result` for what is and is not counted.

  Reported: median, p99 (nearest rank), mean, min, max, standard deviation,
  ops/s (from the median), reductions per call, memory per call.

  Functions written in a `.exs` script are interpreted: their body costs a
  few microseconds (and some heap) of `:erl_eval` per call. That is noise for
  millisecond-scale work; for sub-microsecond work, put the body in a module
  (a `defmodule` in the script is compiled) and call that.

  ## Options

    * `:quick` - shorter defaults so a whole script stays under a minute
      (`--quick` on the command line); default `false`.
    * `:warmup_ms` - warm-up per job; default 1000 (200 when quick).
    * `:time_ms` - sampling time per job; default 5000 (1000 when quick).
    * `:rounds` - how many interleaved rounds (see `run/2`); default 5 (2 when quick).
    * `:min_samples` - at least this many samples per job over all rounds;
      default 10 (4 when quick).
    * `:max_samples` - default 200_000.
    * `:memory` - measure memory; default `true`.
    * `:memory_runs` - default 3 (1 when quick).
    * `:progress` - print a line to stderr as each round and each memory
      measurement starts; default `true`.
    * `:dir` - where `write_json!/4` writes; default `bench/results`.
  """

  alias Jido.Distributed.Bench.{JSON, Result, Stats}

  @batch_ns 50_000
  @results_dir Path.expand("../results", __DIR__)
  @root Path.expand("../..", __DIR__)

  @typedoc "A named benchmark job."
  @type job :: {String.t(), (() -> term())}

  @typedoc "Runner options (see the module doc)."
  @type option ::
          {:quick, boolean()}
          | {:warmup_ms, non_neg_integer()}
          | {:time_ms, non_neg_integer()}
          | {:rounds, pos_integer()}
          | {:min_samples, pos_integer()}
          | {:max_samples, pos_integer()}
          | {:memory, boolean()}
          | {:memory_runs, pos_integer()}
          | {:progress, boolean()}
          | {:dir, Path.t()}

  @doc """
  Parses a script's command line with `OptionParser`.

  Always knows `--quick`, `--warmup MS`, `--time MS`, `--rounds N` and
  `--no-memory`;
  `extra` adds switches in `OptionParser`'s `:strict` form (for example
  `[seed: :integer]`). Returns a keyword list usable as runner options, with
  `:quick` always present. Unknown switches or stray arguments raise.

      iex> Jido.Distributed.Bench.Runner.parse_args!(["--quick", "--seed", "7"], seed: :integer)
      [quick: true, seed: 7]
  """
  @spec parse_args!([String.t()], keyword()) :: keyword()
  def parse_args!(argv, extra \\ []) when is_list(argv) and is_list(extra) do
    strict =
      [quick: :boolean, warmup: :integer, time: :integer, rounds: :integer, memory: :boolean] ++
        extra

    case OptionParser.parse!(argv, strict: strict) do
      {parsed, []} ->
        {warmup, parsed} = Keyword.pop(parsed, :warmup)
        {time, parsed} = Keyword.pop(parsed, :time)

        parsed
        |> Keyword.put_new(:quick, false)
        |> put_if(:warmup_ms, warmup)
        |> put_if(:time_ms, time)
        |> Keyword.new()

      {_, rest} ->
        raise OptionParser.ParseError, "unexpected arguments: #{Enum.join(rest, " ")}"
    end
  end

  @doc """
  Resolves options into the full configuration, with quick or full defaults.

      iex> Jido.Distributed.Bench.Runner.config(quick: true, time_ms: 10).time_ms
      10
  """
  @spec config(keyword()) :: %{atom() => term()}
  def config(opts \\ []) when is_list(opts) do
    quick = Keyword.get(opts, :quick, false)

    defaults =
      if quick,
        do: %{warmup_ms: 200, time_ms: 1000, rounds: 2, min_samples: 4, memory_runs: 1},
        else: %{warmup_ms: 1000, time_ms: 5000, rounds: 5, min_samples: 10, memory_runs: 3}

    config =
      Map.merge(defaults, %{
        quick: quick,
        max_samples: 200_000,
        memory: true,
        progress: true,
        dir: @results_dir
      })

    Enum.reduce(Map.keys(config), config, fn key, acc ->
      case Keyword.fetch(opts, key) do
        {:ok, value} -> Map.put(acc, key, check!(key, value))
        :error -> acc
      end
    end)
  end

  @doc """
  Runs the jobs and returns one `Jido.Distributed.Bench.Result` per job, in
  the jobs' order. Job names must be unique.

  The jobs are interleaved: each of the `:rounds` rounds runs every job in
  turn, in a fresh process, with `1/rounds` of the warm-up and sampling time,
  so a burst of load from elsewhere on the machine is spread over all jobs
  instead of falling on one. The samples of all rounds are pooled.
  """
  @spec run([job()], keyword()) :: [Result.t()]
  def run(jobs, opts \\ []) when is_list(jobs) and is_list(opts) do
    config = config(opts)
    Enum.each(jobs, &check_job!/1)
    names = Enum.map(jobs, &elem(&1, 0))

    if dup = Enum.find(names, &(Enum.count(names, fn n -> n == &1 end) > 1)) do
      raise ArgumentError, "job names must be unique, got #{inspect(dup)} twice"
    end

    rounds = config.rounds

    round_config = %{
      config
      | warmup_ms: div(config.warmup_ms, rounds),
        time_ms: div(config.time_ms, rounds),
        min_samples: ceil_div(config.min_samples, rounds),
        max_samples: ceil_div(config.max_samples, rounds)
    }

    timings =
      Enum.reduce(1..rounds, %{}, fn round, acc ->
        progress(config, "  round #{round}/#{rounds}")

        Enum.reduce(jobs, acc, fn {name, fun}, acc ->
          inner = acc[name] && acc[name].inner
          timing = in_fresh_process(name, fn -> sample(fun, round_config, inner) end)
          Map.update(acc, name, timing, &merge_timing(&1, timing))
        end)
      end)

    for {name, fun} <- jobs do
      progress(config, "  memory #{name}")
      result(name, fun, timings[name], config)
    end
  end

  defp check_job!({name, fun}) when is_binary(name) and is_function(fun, 0), do: :ok

  defp check_job!(other) do
    raise ArgumentError, "a job must be {name, zero-arity fun}, got: #{inspect(other)}"
  end

  defp progress(%{progress: true}, line), do: IO.write(:stderr, line <> "\n")
  defp progress(_config, _line), do: :ok

  defp merge_timing(a, b) do
    %{
      a
      | samples: a.samples ++ b.samples,
        calls: a.calls + b.calls,
        reductions: a.reductions + b.reductions
    }
  end

  defp result(name, fun, timing, config) do
    stats = Stats.summarize(timing.samples)

    memory =
      if config.memory do
        runs = for _ <- 1..config.memory_runs, do: memory_once(name, fun)
        median_memory(runs)
      end

    %Result{
      name: name,
      samples: timing.samples,
      inner: timing.inner,
      calls: timing.calls,
      stats: stats,
      ops_per_second: Stats.ops_per_second(max(stats.median, 1.0e-3)),
      reductions_per_call: timing.reductions / timing.calls,
      memory: memory
    }
  end

  @doc """
  The result named `name`; raises if there is none.
  """
  @spec fetch!([Result.t()], String.t()) :: Result.t()
  def fetch!(results, name) do
    Enum.find(results, &(&1.name == name)) ||
      raise ArgumentError, "no benchmark result named #{inspect(name)}"
  end

  @doc """
  Prints `format_table/2` to stdout.
  """
  @spec print_table([Result.t()], keyword()) :: :ok
  def print_table(results, opts \\ []), do: IO.write(format_table(results, opts))

  @doc """
  Formats results as an aligned text table (one row per job).

  ## Options

    * `:title` - a line printed above the table.
  """
  @spec format_table([Result.t()], keyword()) :: String.t()
  def format_table(results, opts \\ []) when is_list(results) do
    header = ["name", "median", "p99", "mean", "ops/s", "memory", "reds", "samples"]

    rows =
      Enum.map(results, fn r ->
        [
          r.name,
          format_ns(r.stats.median),
          format_ns(r.stats.p99),
          format_ns(r.stats.mean),
          format_number(r.ops_per_second),
          if(r.memory, do: format_bytes(r.memory.total_bytes), else: "-"),
          format_number(r.reductions_per_call),
          if(r.inner > 1, do: "#{r.stats.n}x#{r.inner}", else: "#{r.stats.n}")
        ]
      end)

    title = if t = opts[:title], do: [t, "\n"], else: []
    IO.iodata_to_binary([title, align([header | rows])])
  end

  @doc """
  Formats a map of summary values as aligned `key  value` lines, keys sorted.
  """
  @spec format_summary(map()) :: String.t()
  def format_summary(summary) when is_map(summary) do
    summary
    |> Enum.map(fn {k, v} -> [to_string(k), format_value(v)] end)
    |> Enum.sort()
    |> align()
  end

  @doc """
  Writes `bench/results/NAME.json` (or under `:dir`) and returns its path.

  The JSON object holds `summary`'s keys at the top level (the numbers other
  tools read), plus `"benchmark"` (the name), `"metadata"` (see
  `metadata/1`), `"config"` (the resolved runner configuration) and
  `"results"` (`Jido.Distributed.Bench.Result.to_map/1` per job). The file
  is written to a temporary name and renamed into place.
  """
  @spec write_json!(String.t(), [Result.t()], map(), keyword()) :: Path.t()
  def write_json!(name, results, summary \\ %{}, opts \\ [])
      when is_binary(name) and is_list(results) and is_map(summary) do
    config = config(opts)
    reserved = ["benchmark", "metadata", "config", "results"]

    summary = Map.new(summary, fn {k, v} -> {to_string(k), v} end)

    if clash = Enum.find(reserved, &Map.has_key?(summary, &1)) do
      raise ArgumentError, "summary key #{inspect(clash)} is reserved"
    end

    document =
      Map.merge(summary, %{
        "benchmark" => name,
        "metadata" => metadata(config),
        "config" => config |> Map.drop([:dir, :progress]) |> stringify_keys(),
        "results" => Enum.map(results, &Result.to_map/1)
      })

    File.mkdir_p!(config.dir)
    path = Path.join(config.dir, name <> ".json")
    tmp = path <> ".#{System.unique_integer([:positive])}.tmp"
    File.write!(tmp, JSON.encode!(document, pretty: true))
    File.rename!(tmp, path)
    path
  end

  @doc """
  Describes the run: date, versions, machine, git commit, quick or not.

  `git_dirty` is `true` when tracked files other than `bench/results/`
  differ from the commit.
  """
  @spec metadata(map() | keyword()) :: %{String.t() => term()}
  def metadata(config \\ %{}) do
    config = if is_list(config), do: config(config), else: config

    %{
      "date" => DateTime.utc_now() |> DateTime.truncate(:second) |> DateTime.to_iso8601(),
      "quick" => Map.get(config, :quick, false),
      "otp_release" => System.otp_release(),
      "erts_version" => to_string(:erlang.system_info(:version)),
      "elixir_version" => System.version(),
      "mix_env" => if(Code.ensure_loaded?(Mix), do: to_string(Mix.env())),
      "system_architecture" => to_string(:erlang.system_info(:system_architecture)),
      "logical_processors" => integer_or_nil(:erlang.system_info(:logical_processors)),
      "logical_processors_available" =>
        integer_or_nil(:erlang.system_info(:logical_processors_available)),
      "schedulers_online" => System.schedulers_online(),
      "dirty_cpu_schedulers_online" => :erlang.system_info(:dirty_cpu_schedulers_online),
      "cpu_model" => cpu_model(),
      "loadavg_1m_at_end" => loadavg(),
      "word_size" => :erlang.system_info(:wordsize),
      "git_commit" => git(["rev-parse", "HEAD"]),
      "git_dirty" => git_dirty?()
    }
  end

  ## Measuring

  # `inner` is nil in the first round, then the first round's choice.
  defp sample(fun, config, inner) do
    per_call = warm_up(fun, config.warmup_ms)
    inner = inner || if per_call >= @batch_ns, do: 1, else: ceil_div(@batch_ns, max(per_call, 1))
    :erlang.garbage_collect()

    {:reductions, r0} = Process.info(self(), :reductions)
    deadline = now() + config.time_ms * 1_000_000
    samples = take_samples(fun, inner, deadline, config, 0, [])
    {:reductions, r1} = Process.info(self(), :reductions)

    %{
      samples: Enum.reverse(samples),
      inner: inner,
      calls: length(samples) * inner,
      reductions: r1 - r0
    }
  end

  defp warm_up(fun, warmup_ms) do
    start = now()
    deadline = start + warmup_ms * 1_000_000
    calls = warm_up_loop(fun, deadline, 0)
    div(now() - start, calls)
  end

  defp warm_up_loop(fun, deadline, calls) do
    fun.()
    calls = calls + 1
    if now() < deadline, do: warm_up_loop(fun, deadline, calls), else: calls
  end

  defp take_samples(fun, inner, deadline, config, n, acc) do
    t0 = now()
    repeat(fun, inner)
    t1 = now()
    sample = if inner == 1, do: t1 - t0, else: (t1 - t0) / inner
    n = n + 1
    acc = [sample | acc]

    cond do
      n >= config.max_samples -> acc
      n < config.min_samples -> take_samples(fun, inner, deadline, config, n, acc)
      t1 >= deadline -> acc
      true -> take_samples(fun, inner, deadline, config, n, acc)
    end
  end

  defp repeat(_fun, 0), do: :ok

  defp repeat(fun, n) do
    fun.()
    repeat(fun, n - 1)
  end

  # Calls `fun` once in a fresh process whose garbage collections are traced.
  # Allocation = growth of the used heap (plus heap fragments) between
  # collections, summed; binaries likewise from the binary virtual heap.
  defp memory_once(name, fun) do
    parent = self()

    {pid, mref} =
      spawn_monitor(fn ->
        receive do
          :go -> :ok
        end

        before = gc_info()
        result = fun.()
        after_call = gc_info()
        send(parent, {:memory_done, self(), before, after_call})
        # Keep the result alive until after the measurement.
        _ = :erlang.phash2(result, 1)
      end)

    :erlang.trace(pid, true, [:garbage_collection, tracer: self()])
    send(pid, :go)

    {before, after_call} =
      receive do
        {:memory_done, ^pid, before, after_call} ->
          {before, after_call}

        {:DOWN, ^mref, :process, ^pid, reason} ->
          raise "benchmark #{inspect(name)} crashed: #{Exception.format_exit(reason)}"
      end

    ref = :erlang.trace_delivered(pid)

    receive do
      {:trace_delivered, ^pid, ^ref} -> :ok
    end

    events = drain_gc_events(pid, [])
    Process.demonitor(mref, [:flush])

    word = :erlang.system_info(:wordsize)
    heap = allocated(before, events, after_call, &(&1[:heap_size] + &1[:mbuf_size]))
    binary = allocated(before, events, after_call, & &1[:bin_vheap_size])
    %{heap_bytes: heap * word, binary_bytes: binary * word, total_bytes: (heap + binary) * word}
  end

  defp gc_info do
    {:garbage_collection_info, info} = Process.info(self(), :garbage_collection_info)
    info
  end

  defp drain_gc_events(pid, acc) do
    receive do
      {:trace, ^pid, event, info} -> drain_gc_events(pid, [{event, info} | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end

  defp allocated(before, events, after_call, used) do
    {total, last} =
      Enum.reduce(events, {0, used.(before)}, fn
        {event, info}, {total, last} when event in [:gc_minor_start, :gc_major_start] ->
          {total + max(used.(info) - last, 0), last}

        {event, info}, {total, _last} when event in [:gc_minor_end, :gc_major_end] ->
          {total, used.(info)}

        _, acc ->
          acc
      end)

    total + max(used.(after_call) - last, 0)
  end

  defp median_memory(runs) do
    Enum.at(Enum.sort_by(runs, & &1.total_bytes), div(length(runs), 2))
  end

  defp in_fresh_process(name, fun) do
    parent = self()
    ref = make_ref()
    # Errors are sent back rather than left to crash the process, so they are
    # reported once, by the caller, and not logged as a process crash too.
    {pid, mref} =
      spawn_monitor(fn ->
        reply =
          try do
            {:ok, fun.()}
          catch
            kind, reason -> {:error, Exception.format(kind, reason, __STACKTRACE__)}
          end

        send(parent, {ref, reply})
      end)

    receive do
      {^ref, {:ok, result}} ->
        Process.demonitor(mref, [:flush])
        result

      {^ref, {:error, formatted}} ->
        Process.demonitor(mref, [:flush])
        raise "benchmark #{inspect(name)} crashed: #{formatted}"

      {:DOWN, ^mref, :process, ^pid, reason} ->
        raise "benchmark #{inspect(name)} crashed: #{Exception.format_exit(reason)}"
    end
  end

  defp now, do: :erlang.monotonic_time(:nanosecond)

  defp ceil_div(a, b), do: div(a + b - 1, b)

  ## Options

  defp put_if(opts, _key, nil), do: opts
  defp put_if(opts, key, value), do: Keyword.put(opts, key, value)

  defp check!(key, value) when key in [:quick, :memory, :progress] and is_boolean(value),
    do: value

  defp check!(key, value)
       when key in [:warmup_ms, :time_ms] and is_integer(value) and value >= 0,
       do: value

  defp check!(key, value)
       when key in [:rounds, :min_samples, :max_samples, :memory_runs] and is_integer(value) and
              value > 0,
       do: value

  defp check!(:dir, value) when is_binary(value), do: value

  defp check!(key, value) do
    raise ArgumentError, "the #{inspect(key)} option has an invalid value, got: #{inspect(value)}"
  end

  defp stringify_keys(map), do: Map.new(map, fn {k, v} -> {Atom.to_string(k), v} end)

  ## Formatting

  defp align(rows) do
    widths =
      rows
      |> Enum.zip_with(& &1)
      |> Enum.map(fn column -> column |> Enum.map(&String.length/1) |> Enum.max() end)

    Enum.map(rows, fn row ->
      [first | rest] = row
      [first_width | rest_widths] = widths

      cells =
        [String.pad_trailing(first, first_width)] ++
          Enum.zip_with(rest, rest_widths, &String.pad_leading/2)

      [Enum.join(cells, "  ") |> String.trim_trailing(), "\n"]
    end)
    |> IO.iodata_to_binary()
  end

  defp format_ns(ns) when ns < 1_000, do: "#{fixed(ns, 1)} ns"
  defp format_ns(ns) when ns < 1_000_000, do: "#{fixed(ns / 1_000, 2)} µs"
  defp format_ns(ns) when ns < 1_000_000_000, do: "#{fixed(ns / 1_000_000, 2)} ms"
  defp format_ns(ns), do: "#{fixed(ns / 1_000_000_000, 2)} s"

  defp format_bytes(b) when b < 1024, do: "#{b} B"
  defp format_bytes(b) when b < 1024 * 1024, do: "#{fixed(b / 1024, 1)} KiB"
  defp format_bytes(b), do: "#{fixed(b / (1024 * 1024), 2)} MiB"

  defp format_number(nil), do: "-"
  defp format_number(x) when x >= 100, do: Integer.to_string(round(x))
  defp format_number(x), do: fixed(x, 2)

  defp format_value(v) when is_float(v), do: fixed(v, 3)
  defp format_value(v) when is_binary(v), do: v
  defp format_value(v), do: inspect(v)

  defp fixed(x, decimals), do: :erlang.float_to_binary(x / 1, decimals: decimals)

  defp integer_or_nil(n) when is_integer(n), do: n
  defp integer_or_nil(_), do: nil

  defp cpu_model do
    with {:ok, text} <- File.read("/proc/cpuinfo"),
         [_, model] <- Regex.run(~r/^model name\s*:\s*(.+)$/m, text) do
      String.trim(model)
    else
      _ -> nil
    end
  end

  defp loadavg do
    with {:ok, text} <- File.read("/proc/loadavg"),
         [one | _] <- String.split(text),
         {value, _} <- Float.parse(one) do
      value
    else
      _ -> nil
    end
  end

  defp git(args) do
    case System.cmd("git", args, cd: @root, stderr_to_stdout: true) do
      {out, 0} -> String.trim(out)
      _ -> nil
    end
  rescue
    ErlangError -> nil
  end

  defp git_dirty? do
    case git(["status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"]) do
      nil -> nil
      out -> out != ""
    end
  end
end

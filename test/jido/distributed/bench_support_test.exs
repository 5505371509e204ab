# The bench support modules live outside elixirc_paths. They are compiled to
# a temporary directory (rather than with Code.require_file) so their .beam
# files, and with them the doctests, are available.
bench_support_dir =
  Path.join(System.tmp_dir!(), "jido_bench_support_#{System.unique_integer([:positive])}")

File.mkdir_p!(bench_support_dir)
# Test files are compiled without docs; the doctests need them.
docs? = Code.get_compiler_option(:docs)
Code.put_compiler_option(:docs, true)

{:ok, _modules, _warnings} =
  "../../../bench/support/*.ex"
  |> Path.expand(__DIR__)
  |> Path.wildcard()
  |> Kernel.ParallelCompiler.compile_to_path(bench_support_dir)

Code.put_compiler_option(:docs, docs?)
Code.prepend_path(bench_support_dir)
ExUnit.after_suite(fn _ -> File.rm_rf(bench_support_dir) end)

defmodule Jido.Distributed.BenchSupportTest do
  use ExUnit.Case, async: true

  doctest Jido.Distributed.Bench.Stats
  doctest Jido.Distributed.Bench.JSON
  doctest Jido.Distributed.Bench.Signals
  doctest Jido.Distributed.Bench.Runner

  alias Jido.Distributed.Bench.{JSON, Result, Runner, Signals, Stats}

  describe "Stats" do
    test "median of odd and even counts, unsorted input" do
      assert Stats.median([5]) == 5
      assert Stats.median([3, 1, 2]) == 2
      assert Stats.median([4, 1, 3, 2]) == 2.5
      assert Stats.median([10, 1, 1, 10]) == 5.5
      assert Stats.median([2.5, 0.5]) == 1.5
    end

    test "percentiles by nearest rank are always a measured value" do
      assert Stats.percentile(Enum.to_list(1..100), 99) == 99
      assert Stats.percentile(Enum.to_list(1..1000), 99) == 990
      assert Stats.percentile(Enum.to_list(1..200), 99) == 198
      assert Stats.percentile(Enum.shuffle(Enum.to_list(1..10)), 50) == 5
      assert Stats.percentile(Enum.to_list(1..10), 100) == 10
      assert Stats.percentile(Enum.to_list(1..10), 1) == 1
      assert Stats.percentile(Enum.to_list(1..1000), 99.9) == 999
      assert Stats.percentile([7], 99) == 7
    end

    test "with fewer than 100 samples p99 is the maximum" do
      samples = [3, 9, 1, 4]
      assert Stats.percentile(samples, 99) == 9
      assert Stats.summarize(samples).p99 == 9
    end

    test "p99 of 1000 samples is the 990th smallest: the 10 worst are ignored" do
      samples = Enum.shuffle(List.duplicate(1, 989) ++ Enum.to_list(100..110))
      assert Stats.percentile(samples, 99) == 100
    end

    test "mean, stddev and summarize" do
      assert Stats.mean([1, 2, 3, 4]) == 2.5
      assert Stats.stddev([5]) == 0.0
      assert_in_delta Stats.stddev([2, 4, 4, 4, 5, 5, 7, 9]), 2.138, 0.001

      assert %{n: 3, min: 1, max: 10, median: 2, p99: 10, mean: mean} =
               Stats.summarize([10, 2, 1])

      assert_in_delta mean, 13 / 3, 1.0e-12
    end

    test "ops per second" do
      assert Stats.ops_per_second(1_000_000_000) == 1.0
      assert Stats.ops_per_second(500) == 2.0e6
    end

    test "empty input and bad percentiles are rejected" do
      assert_raise FunctionClauseError, fn -> Stats.median([]) end
      assert_raise FunctionClauseError, fn -> Stats.percentile([], 99) end
      assert_raise FunctionClauseError, fn -> Stats.percentile([1], 0) end
      assert_raise FunctionClauseError, fn -> Stats.percentile([1], 101) end
      assert_raise FunctionClauseError, fn -> Stats.summarize([]) end
    end
  end

  describe "JSON" do
    test "scalars" do
      assert JSON.encode!(nil) == "null"
      assert JSON.encode!(true) == "true"
      assert JSON.encode!(false) == "false"
      assert JSON.encode!(:quick) == ~s("quick")
      assert JSON.encode!(42) == "42"
      assert JSON.encode!(-7) == "-7"
      assert JSON.encode!(123_456_789_012_345_678_901) == "123456789012345678901"
    end

    test "floats use the shortest form that reads back exactly" do
      assert JSON.encode!(1.5) == "1.5"
      assert JSON.encode!(0.1) == "0.1"
      assert JSON.encode!(2.0) == "2.0"
      assert JSON.encode!(-0.25) == "-0.25"
      assert JSON.encode!(1.0e-7) == "1.0e-7"
      assert JSON.encode!(1.0e20) == "1.0e20"

      for x <- [0.1, 1 / 3, 2.5e-300, 1.7976931348623157e308, 123.456] do
        assert String.to_float(JSON.encode!(x)) == x
      end
    end

    test "strings escape quotes, backslashes and control characters" do
      assert JSON.encode!("plain") == ~s("plain")
      assert JSON.encode!("") == ~s("")
      assert JSON.encode!(~s(say "hi")) == ~S("say \"hi\"")
      assert JSON.encode!("a\\b") == ~S("a\\b")
      assert JSON.encode!("l1\nl2\r\t\b\f") == ~S("l1\nl2\r\t\b\f")
      assert JSON.encode!(<<0, 1, 0x1F>>) == ~S("\u0000\u0001\u001F")
      assert JSON.encode!("x\ey") == ~S("x\u001By")
      assert JSON.encode!("\"\"") == ~S("\"\"")
    end

    test "non-ASCII text and DEL pass through unescaped" do
      assert JSON.encode!("µs ✓ é \x7F") == ~s("µs ✓ é \x7F")
    end

    test "binaries that are not UTF-8 are rejected" do
      assert_raise ArgumentError, ~r/not UTF-8/, fn -> JSON.encode!(<<0xFF, 0xFE>>) end
      assert_raise ArgumentError, ~r/not UTF-8/, fn -> JSON.encode!(%{<<0xC3>> => 1}) end
    end

    test "nested maps and lists, keys sorted whatever the insertion order" do
      value = %{z: [1, %{b: nil, a: [true]}], a: %{}, m: []}
      expected = ~s({"a":{},"m":[],"z":[1,{"a":[true],"b":null}]})
      assert JSON.encode!(value) == expected

      shuffled =
        Enum.reduce(Enum.shuffle(Enum.to_list(1..50)), %{}, fn i, acc ->
          Map.put(acc, "k#{i}", i)
        end)

      keys = Regex.scan(~r/"(k\d+)"/, JSON.encode!(shuffled), capture: :all_but_first)
      assert List.flatten(keys) == Enum.sort(Enum.map(1..50, &"k#{&1}"))
    end

    test "atom, string and integer keys; clashes are rejected" do
      assert JSON.encode!(%{1 => "a", :b => 2, "c" => 3}) == ~s({"1":"a","b":2,"c":3})
      assert JSON.encode!(%{"a\"b" => 1}) == ~S({"a\"b":1})
      assert_raise ArgumentError, ~r/duplicate/, fn -> JSON.encode!(%{:a => 1, "a" => 2}) end
    end

    test "terms JSON cannot represent are rejected" do
      for bad <- [{1, 2}, self(), make_ref(), fn -> :ok end, DateTime.utc_now(), [1, {:x}]] do
        assert_raise ArgumentError, fn -> JSON.encode!(bad) end
      end

      assert_raise ArgumentError, fn -> JSON.encode!(%{{:k} => 1}) end
      assert_raise ArgumentError, fn -> JSON.encode!(%{nil => 1}) end
    end

    test "pretty output" do
      value = %{"b" => [1, 2], "a" => %{"x" => "y"}, "e" => [], "f" => %{}}

      assert JSON.encode!(value, pretty: true) == """
             {
               "a": {
                 "x": "y"
               },
               "b": [
                 1,
                 2
               ],
               "e": [],
               "f": {}
             }
             """

      assert JSON.encode!(3, pretty: true) == "3\n"
    end
  end

  describe "Signals" do
    test "standard signals are deterministic per (index, seed)" do
      assert Signals.standard(3) == Signals.standard(3, 1)
      assert Signals.standard(3, 9) == Signals.standard(3, 9)
      refute Signals.standard(3, 9) == Signals.standard(3, 10)
      refute Signals.standard(3) == Signals.standard(4)
      assert Signals.batch(20, 5) == Enum.map(0..19, &Signals.standard(&1, 5))
      assert Enum.take(Signals.stream(5), 20) == Signals.batch(20, 5)
      assert Signals.batch(0) == []
    end

    test "standard signals have the CloudEvents shape and size" do
      signals = Signals.batch(500, 2)

      for {s, i} <- Enum.with_index(signals) do
        assert s.id =~ ~r/\A[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\z/
        assert s.source == "/agents/" <> Signals.agent_id(rem(i, 100))
        assert s.type =~ ~r/\A[a-z]+(\.[a-z]+)+\z/
        assert {:ok, _, 0} = DateTime.from_iso8601(s.time)
        assert s.specversion == "1.0.2"
        assert s.datacontenttype == "application/json"
        assert map_size(s.data) in 8..12
        assert Signals.external_size(s) in 300..1000
      end

      assert length(Enum.uniq_by(signals, & &1.id)) == 500
      assert length(Enum.uniq_by(signals, & &1.type)) > 5
    end

    test "times increase with the index" do
      times = Enum.map(Signals.batch(50), &elem(DateTime.from_iso8601(&1.time), 1))
      assert times == Enum.sort(times, DateTime)
    end

    test "the :agents option" do
      sources = Signals.batch(30, 1, agents: 3) |> Enum.map(& &1.source) |> Enum.uniq()
      assert sources == ["/agents/agent-0000", "/agents/agent-0001", "/agents/agent-0002"]
      assert_raise ArgumentError, ~r/:agents/, fn -> Signals.batch(1, 1, agents: 0) end
    end
  end

  describe "Runner" do
    test "parse_args!" do
      assert Runner.parse_args!([]) == [quick: false]
      assert Runner.parse_args!(["--quick"]) == [quick: true]

      assert Runner.parse_args!(["--time", "50", "--warmup", "5", "--no-memory"]) |> Enum.sort() ==
               [memory: false, quick: false, time_ms: 50, warmup_ms: 5]

      assert Runner.parse_args!(["--seed", "3"], seed: :integer) == [quick: false, seed: 3]
      assert Runner.parse_args!(["--rounds", "2"]) |> Keyword.fetch!(:rounds) == 2
      assert_raise OptionParser.ParseError, fn -> Runner.parse_args!(["--bogus"]) end
      assert_raise OptionParser.ParseError, fn -> Runner.parse_args!(["stray"]) end
    end

    test "config: quick and full defaults, overrides, validation" do
      full = Runner.config([])
      quick = Runner.config(quick: true)
      assert quick.time_ms < full.time_ms and quick.warmup_ms < full.warmup_ms
      assert Runner.config(quick: true, time_ms: 7).time_ms == 7
      assert_raise ArgumentError, ~r/:time_ms/, fn -> Runner.config(time_ms: -1) end
      assert_raise ArgumentError, ~r/:min_samples/, fn -> Runner.config(min_samples: 0) end
    end

    test "measures a function: samples, stats, memory" do
      opts = [warmup_ms: 2, time_ms: 20, min_samples: 3, memory_runs: 1, progress: false]
      [result] = Runner.run([{"alloc", fn -> :binary.copy(<<1>>, 100_000) end}], opts)

      assert %Result{name: "alloc", inner: 1} = result
      assert result.stats.n == length(result.samples) and result.stats.n >= 3
      assert result.stats.min <= result.stats.median and result.stats.median <= result.stats.p99
      assert result.ops_per_second > 0
      # 100 kB off-heap binary, nothing much on the heap.
      assert result.memory.binary_bytes in 100_000..101_000
      assert result.memory.heap_bytes < 1_000
    end

    test "short calls are batched, crashes are reported" do
      [result] =
        Runner.run([{"tiny", fn -> :ok end}],
          warmup_ms: 2,
          time_ms: 5,
          memory: false,
          progress: false
        )

      assert result.inner > 1
      assert result.memory == nil

      assert_raise RuntimeError, ~r/"boom" crashed/, fn ->
        Runner.run([{"boom", fn -> raise "no" end}], warmup_ms: 1, time_ms: 1, progress: false)
      end
    end

    test "rounds pool their samples; job names must be unique" do
      opts = [rounds: 3, warmup_ms: 3, time_ms: 3, min_samples: 6, memory: false, progress: false]
      [a, b] = Runner.run([{"a", fn -> :a end}, {"b", fn -> :b end}], opts)
      assert a.stats.n >= 6 and b.stats.n >= 6
      assert length(a.samples) == a.stats.n and a.calls == a.stats.n * a.inner

      assert_raise ArgumentError, ~r/unique/, fn ->
        Runner.run([{"a", fn -> :a end}, {"a", fn -> :b end}], opts)
      end

      assert_raise ArgumentError, ~r/a job must be/, fn ->
        Runner.run([{:a, fn -> :a end}], opts)
      end
    end

    test "format_table aligns columns" do
      result = %Result{
        name: "a much longer name",
        samples: [1500, 2500],
        inner: 1,
        calls: 2,
        stats: Stats.summarize([1500, 2500]),
        ops_per_second: 500_000.0,
        reductions_per_call: 3.0,
        memory: %{heap_bytes: 0, binary_bytes: 2048, total_bytes: 2048}
      }

      lines = String.split(Runner.format_table([result, %{result | name: "x"}]), "\n", trim: true)
      assert [header, row, _] = lines
      assert String.length(header) == String.length(row)
      assert row =~ "2.00 µs"
      assert row =~ "2.0 KiB"
    end

    test "write_json! writes summary keys, metadata and results" do
      dir = Path.join(System.tmp_dir!(), "jido_bench_#{System.unique_integer([:positive])}")
      on_exit(fn -> File.rm_rf!(dir) end)

      [result] =
        Runner.run([{"noop", fn -> nil end}],
          warmup_ms: 1,
          time_ms: 2,
          memory: false,
          progress: false
        )

      path = Runner.write_json!("t", [result], %{"speedup" => 2.5}, quick: true, dir: dir)

      text = File.read!(path)
      assert path == Path.join(dir, "t.json")
      assert text =~ ~s("speedup": 2.5)
      assert text =~ ~s("quick": true)
      assert text =~ ~s("otp_release": "#{System.otp_release()}")
      assert text =~ ~s("name": "noop")
      assert File.ls!(dir) == ["t.json"]

      assert_raise ArgumentError, ~r/reserved/, fn ->
        Runner.write_json!("t", [], %{"results" => 1}, dir: dir)
      end
    end
  end
end

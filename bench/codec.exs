# Frame codec against the original sketch's encoding, in the same run.
#
#     MIX_ENV=dev mix run bench/codec.exs [--quick] [--seed N] [--count N]
#
# Encodes and decodes `count` (default 1000) standard signals three ways:
#
#   * frame     - Jido.Distributed.Frame.encode/1 (lz4, one entry per signal)
#                 and Frame.decode/1 (checksum, bounds checks, safe terms);
#   * baseline  - :erlang.term_to_binary(signals, [:compressed]) |> Base.encode64(),
#                 decoded with Base.decode64!/1 |> :erlang.binary_to_term(&1, [:safe]);
#   * plain     - :erlang.term_to_binary(signals), decoded with
#                 :erlang.binary_to_term(&1, [:safe]).
#
# Two more frame rows split the encode cost: the frame without lz4
# (compression: :none), and Frame.encode_binaries/1 on entries already in
# external term format (lz4 + checksum + framing only).
#
# Prints a table and writes bench/results/codec.json.
Code.require_file("support/load.exs", __DIR__)

alias Jido.Distributed.Bench.{Result, Runner, Signals}
alias Jido.Distributed.Frame

defmodule CodecBench do
  @moduledoc false
  # Compiled (not interpreted) bodies, so the timings do not include erl_eval.

  def frame_encode(signals) do
    {:ok, frame} = Frame.encode(signals)
    frame
  end

  def frame_encode_uncompressed(signals) do
    {:ok, frame} = Frame.encode(signals, compression: :none)
    frame
  end

  def frame_encode_binaries(entries) do
    {:ok, frame} = Frame.encode_binaries(entries)
    frame
  end

  def frame_decode(frame) do
    {:ok, signals} = Frame.decode(frame)
    signals
  end

  def baseline_encode(signals),
    do: signals |> :erlang.term_to_binary([:compressed]) |> Base.encode64()

  def baseline_decode(text), do: text |> Base.decode64!() |> :erlang.binary_to_term([:safe])

  def plain_encode(signals), do: :erlang.term_to_binary(signals)
  def plain_decode(binary), do: :erlang.binary_to_term(binary, [:safe])
end

opts = Runner.parse_args!(System.argv(), seed: :integer, count: :integer)
seed = Keyword.get(opts, :seed, 1)
count = Keyword.get(opts, :count, 1000)
signals = Signals.batch(count, seed)

frame = CodecBench.frame_encode(signals)
baseline = CodecBench.baseline_encode(signals)
plain = CodecBench.plain_encode(signals)

# The three encodings must round-trip before anything is timed.
^signals = CodecBench.frame_decode(frame)
^signals = CodecBench.baseline_decode(baseline)
^signals = CodecBench.plain_decode(plain)
{:ok, header} = Frame.header(frame)
entries = Enum.map(signals, &:erlang.term_to_binary/1)
^frame = CodecBench.frame_encode_binaries(entries)

mode = if opts[:quick], do: "quick", else: "full"
IO.puts("codec: #{count} standard signals, seed #{seed} (#{mode} run)")

results =
  Runner.run(
    [
      {"frame encode", fn -> CodecBench.frame_encode(signals) end},
      {"frame decode", fn -> CodecBench.frame_decode(frame) end},
      {"frame encode, no lz4", fn -> CodecBench.frame_encode_uncompressed(signals) end},
      {"frame encode_binaries (pre-encoded)",
       fn -> CodecBench.frame_encode_binaries(entries) end},
      {"baseline encode (t2b compressed + base64)",
       fn -> CodecBench.baseline_encode(signals) end},
      {"baseline decode (base64 + b2t safe)", fn -> CodecBench.baseline_decode(baseline) end},
      {"plain encode (t2b)", fn -> CodecBench.plain_encode(signals) end},
      {"plain decode (b2t safe)", fn -> CodecBench.plain_decode(plain) end}
    ],
    opts
  )

per_1000 = fn name -> Result.median_us(Runner.fetch!(results, name)) * 1000 / count end
p99_per_1000 = fn name -> Result.p99_us(Runner.fetch!(results, name)) * 1000 / count end
per_signal = fn binary -> byte_size(binary) / count end

encode = per_1000.("frame encode")
decode = per_1000.("frame decode")
baseline_encode = per_1000.("baseline encode (t2b compressed + base64)")
baseline_decode = per_1000.("baseline decode (base64 + b2t safe)")

summary = %{
  "signals" => count,
  "seed" => seed,
  "signal_external_bytes_mean" =>
    Float.round(Enum.sum(Enum.map(signals, &Signals.external_size/1)) / count, 1),
  "encode_us_per_1000" => Float.round(encode, 1),
  "decode_us_per_1000" => Float.round(decode, 1),
  "encode_p99_us_per_1000" => Float.round(p99_per_1000.("frame encode"), 1),
  "decode_p99_us_per_1000" => Float.round(p99_per_1000.("frame decode"), 1),
  "bytes_per_signal" => Float.round(per_signal.(frame), 2),
  "frame_raw_bytes_per_signal" => Float.round(header.raw_size / count, 2),
  "uncompressed_encode_us_per_1000" => Float.round(per_1000.("frame encode, no lz4"), 1),
  "encode_binaries_us_per_1000" =>
    Float.round(per_1000.("frame encode_binaries (pre-encoded)"), 1),
  "baseline_encode_us_per_1000" => Float.round(baseline_encode, 1),
  "baseline_decode_us_per_1000" => Float.round(baseline_decode, 1),
  "baseline_bytes_per_signal" => Float.round(per_signal.(baseline), 2),
  "plain_encode_us_per_1000" => Float.round(per_1000.("plain encode (t2b)"), 1),
  "plain_decode_us_per_1000" => Float.round(per_1000.("plain decode (b2t safe)"), 1),
  "plain_bytes_per_signal" => Float.round(per_signal.(plain), 2),
  "speedup_vs_baseline" => Float.round(baseline_encode / encode, 3),
  "decode_speedup_vs_baseline" => Float.round(baseline_decode / decode, 3),
  "size_ratio_vs_baseline" => Float.round(byte_size(frame) / byte_size(baseline), 3),
  "notes" => [
    "times are medians per call, scaled to 1000 signals; p99 by nearest rank",
    "speedup_vs_baseline = baseline encode time / frame encode time (decode likewise); > 1 means the frame is faster",
    "size_ratio_vs_baseline = frame bytes / baseline bytes; < 1 means the frame is smaller",
    "uncompressed_encode = Frame.encode(signals, compression: :none); encode_binaries = Frame.encode_binaries/1 on entries already term_to_binary'd (their encoding not timed)",
    "baseline = term_to_binary(signals, [:compressed]) |> Base.encode64(); plain = term_to_binary(signals); both decoded with binary_to_term(_, [:safe])",
    "memory_bytes per result = process heap allocation (GC-traced) + off-heap binaries created, for one call"
  ]
}

IO.puts("")
Runner.print_table(results)
IO.puts("")
IO.write(Runner.format_summary(Map.delete(summary, "notes")))
path = Runner.write_json!("codec", results, summary, opts)
IO.puts("\nwrote #{Path.relative_to_cwd(path)}")

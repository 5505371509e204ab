defmodule Jido.Distributed.Frame do
  @moduledoc """
  The wire frame: many terms in one checked, lz4-compressed binary.

  A frame is a 24-byte header (magic `"JDFR"`, version, flags, entry count,
  raw length, payload length, crc32 checksum) followed by a payload of
  length-prefixed entries, each one term in external term format. The codec
  lives in Rust (`native/jido_core/src/frame.rs`).

  Decoding treats every byte as hostile: truncated, corrupted, oversized or
  non-frame binaries return `{:error, reason}`, and every decoded term goes
  through the equivalent of `:erlang.binary_to_term(bin, [:safe])`, so a frame
  cannot create atoms or functions that do not exist yet.

  Large frames are encoded and decoded on dirty CPU schedulers so the normal
  schedulers are never blocked (the sizes are set once, in
  `native/jido_core/src/schedule.rs`).

      iex> {:ok, frame} = Jido.Distributed.Frame.encode([%{id: "1", type: "a.b"}, :hello])
      iex> Jido.Distributed.Frame.decode(frame)
      {:ok, [%{id: "1", type: "a.b"}, :hello]}

      iex> Jido.Distributed.Frame.decode("not a frame")
      {:error, :bad_magic}
  """

  alias Jido.Distributed.{Native, Options}
  require Native

  # The NIF names each reason from its Rust error enum
  # (`jido_core::FrameError`, plus `bad_term`); frame_test checks this type
  # against `Native.error_names/0`.
  @typedoc "Why a frame could not be decoded (or encoded)."
  @type error_reason ::
          :truncated
          | :bad_magic
          | :bad_version
          | :bad_flags
          | :trailing_bytes
          | :checksum_mismatch
          | :too_large
          | :corrupt_payload
          | :bad_entry
          | :bad_term

  @typedoc "How the payload is stored: `:auto` compresses unless that does not make it smaller."
  @type compression :: :auto | :lz4 | :none

  @default_max_decoded 64 * 1024 * 1024

  @encode_schema [
    compression: [
      type: {:in, [:auto, :lz4, :none]},
      default: :auto,
      doc:
        "How the payload is stored: `:auto` compresses with lz4 unless that does " <>
          "not make it smaller, `:lz4` always, `:none` never."
    ]
  ]

  @decode_schema [
    max_decoded_size: [
      type: :non_neg_integer,
      default: nil,
      doc:
        "Largest accepted uncompressed payload in bytes. Defaults to the " <>
          "`:max_frame_size` application setting (64 MiB)."
    ]
  ]

  @doc """
  Encodes a list of terms into one frame.

  ## Options

  #{Options.docs(@encode_schema)}
  """
  @spec encode([term()], keyword()) :: {:ok, binary()} | {:error, error_reason()}
  def encode(terms, opts \\ []) when is_list(terms) and is_list(opts) do
    Native.scheduled(Native.frame_encode(terms, compression!(opts)))
  end

  @doc """
  Encodes a list of terms into one frame, like `encode/2`, and also returns
  the distinct atoms they contain (see `atoms/2`; in no particular order),
  found while encoding rather than by decoding the frame again. Takes the
  options of `encode/2`.

      iex> {:ok, frame, atoms} = Jido.Distributed.Frame.encode_with_atoms([%{id: "1", type: :created}])
      iex> {Jido.Distributed.Frame.decode(frame), atoms}
      {{:ok, [%{id: "1", type: :created}]}, [:id, :type, :created]}
  """
  @spec encode_with_atoms([term()], keyword()) ::
          {:ok, binary(), [atom()]} | {:error, error_reason()}
  def encode_with_atoms(terms, opts \\ []) when is_list(terms) and is_list(opts) do
    case Native.scheduled(Native.frame_encode_atoms(terms, compression!(opts))) do
      {:ok, {frame, atoms, []}} ->
        {:ok, frame, atoms}

      {:ok, {frame, atoms, names}} ->
        {:ok, frame, atoms ++ Enum.map(names, &String.to_existing_atom/1)}

      {:error, _} = error ->
        error
    end
  end

  @doc """
  Encodes a list of binaries, each already in external term format (for
  example from `:erlang.term_to_binary/1`), into one frame.

  Lets a caller that already holds encoded entries avoid encoding them twice.
  Takes the same options as `encode/2`.
  """
  @spec encode_binaries([binary()], keyword()) :: {:ok, binary()} | {:error, error_reason()}
  def encode_binaries(entries, opts \\ []) when is_list(entries) and is_list(opts) do
    Native.scheduled(Native.frame_encode_binaries(entries, compression!(opts)))
  end

  @doc """
  Decodes a frame back into its list of terms.

  ## Options

  #{Options.docs(@decode_schema)}
  """
  @spec decode(binary(), keyword()) :: {:ok, [term()]} | {:error, error_reason()}
  def decode(frame, opts \\ [])

  def decode(frame, opts) when is_binary(frame) and is_list(opts) do
    Native.scheduled(Native.frame_decode(frame, max_decoded!(opts)))
  end

  def decode(other, _opts) when not is_binary(other), do: {:error, :bad_magic}

  @doc """
  The distinct atoms in a frame's entries, in order of first appearance.

  A node that receives a frame over distribution can only decode (safely)
  the atoms it already has. Sending this list in the same message as the
  frame makes the receiving node's distribution layer create them first,
  exactly as a plain `send/2` of the terms would. Meant for frames encoded
  on this node: an atom this node does not have raises `ArgumentError`.
  Takes the `:max_decoded_size` option of `decode/2`.

      iex> {:ok, frame} = Jido.Distributed.Frame.encode([%{id: "1", type: "a.b"}, :hello])
      iex> Jido.Distributed.Frame.atoms(frame)
      {:ok, [:id, :type, :hello]}
  """
  @spec atoms(binary(), keyword()) :: {:ok, [atom()]} | {:error, error_reason()}
  def atoms(frame, opts \\ []) when is_binary(frame) and is_list(opts) do
    with {:ok, names} <- Native.scheduled(Native.frame_atoms(frame, max_decoded!(opts))) do
      {:ok, Enum.map(names, &String.to_existing_atom/1)}
    end
  end

  @doc """
  Reads a frame's header without decoding its payload.

      iex> {:ok, frame} = Jido.Distributed.Frame.encode([1, 2, 3], compression: :none)
      iex> {:ok, info} = Jido.Distributed.Frame.header(frame)
      iex> {info.count, info.compressed}
      {3, false}
  """
  @spec header(binary()) ::
          {:ok,
           %{
             count: non_neg_integer(),
             raw_size: non_neg_integer(),
             payload_size: non_neg_integer(),
             compressed: boolean()
           }}
          | {:error, error_reason()}
  def header(frame) when is_binary(frame) do
    with {:ok, {count, raw, payload, compressed}} <- Native.frame_header(frame) do
      {:ok, %{count: count, raw_size: raw, payload_size: payload, compressed: compressed}}
    end
  end

  # The options are checked by their schemas; the common calls (no options,
  # or the one option with a valid value) skip building the keyword list.
  defp compression!([]), do: :auto
  defp compression!(compression: mode) when mode in [:auto, :lz4, :none], do: mode
  defp compression!(opts), do: Options.validate!(opts, @encode_schema)[:compression]

  defp max_decoded!([]), do: default_max_decoded()

  defp max_decoded!(max_decoded_size: max) when is_integer(max) and max >= 0, do: max

  defp max_decoded!(opts) do
    case Options.validate!(opts, @decode_schema)[:max_decoded_size] do
      nil -> default_max_decoded()
      max -> max
    end
  end

  defp default_max_decoded do
    Application.get_env(:jido_distributed, :max_frame_size, @default_max_decoded)
  end
end

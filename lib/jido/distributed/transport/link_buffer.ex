defmodule Jido.Distributed.Transport.LinkBuffer do
  @moduledoc """
  The bounded send buffer of one link, stored in Rust (`jido_core::buffer`).

  Holds entries (each one `{destination, message}` in external term format)
  until they are framed, and frames until the receiving node acknowledges
  them. Each frame comes with the atoms its entries contain (see
  `jido_core::etf`): the Link sends them in the same distribution message,
  so the receiving node knows every atom before it decodes the frame with
  `binary_to_term(_, [:safe])`, as plain distribution would. Because the storage is a NIF resource, it outlives the Link process
  that drains it: a crashed Link loses no accepted entry and no unacked frame.

  Bounds count pending entries and unacked frames together, by uncompressed
  size. When full, the `:reject` policy refuses new entries with
  `{:error, :buffer_full}`; `:drop_oldest` drops the oldest data (unacked
  frames first) and reports how many entries went.
  """

  alias Jido.Distributed.Native
  require Native

  @enforce_keys [:ref]
  defstruct [:ref]

  @typedoc "A link buffer. Opaque."
  @opaque t :: %__MODULE__{ref: reference()}

  @typedoc "What `take/3` returns for one frame."
  @type taken :: %{
          seq: pos_integer(),
          base: pos_integer(),
          frame: binary(),
          atoms: [atom()],
          entries: pos_integer(),
          raw_bytes: non_neg_integer()
        }

  @doc """
  Creates an empty buffer.

      iex> buf = Jido.Distributed.Transport.LinkBuffer.new(10, 1_000, :reject)
      iex> Jido.Distributed.Transport.LinkBuffer.stats(buf).pending_entries
      0
  """
  @spec new(pos_integer(), pos_integer(), :reject | :drop_oldest) :: t()
  def new(max_entries, max_bytes, overflow)
      when is_integer(max_entries) and max_entries > 0 and is_integer(max_bytes) and
             max_bytes > 0 and overflow in [:reject, :drop_oldest] do
    %__MODULE__{ref: Native.buffer_new(max_entries, max_bytes, overflow)}
  end

  @doc """
  Accepts encoded entries, all or none. Returns the number of pending
  entries afterwards and how many older entries were dropped to make room.

      iex> buf = Jido.Distributed.Transport.LinkBuffer.new(2, 1_000, :reject)
      iex> Jido.Distributed.Transport.LinkBuffer.push(buf, ["a", "b"])
      {:ok, 2, 0}
      iex> Jido.Distributed.Transport.LinkBuffer.push(buf, ["c"])
      {:error, :buffer_full}
  """
  @spec push(t(), [binary()]) ::
          {:ok, non_neg_integer(), non_neg_integer()} | {:error, :buffer_full | :too_large}
  def push(%__MODULE__{ref: ref}, [entry]) when is_binary(entry) do
    case Native.buffer_push_one(ref, entry) do
      {:ok, {pending, dropped}} -> {:ok, pending, dropped}
      {:error, _} = error -> error
    end
  end

  def push(%__MODULE__{ref: ref}, entries) when is_list(entries) do
    case Native.buffer_push(ref, entries) do
      {:ok, {pending, dropped}} -> {:ok, pending, dropped}
      {:error, _} = error -> error
    end
  end

  @doc """
  Frames up to `max_entries` pending entries (at most `max_bytes` of them,
  but at least one) under the next sequence number. `:empty` when nothing is
  pending. Large takes run on a dirty scheduler: the buffer measures what
  it is about to frame, so `_pending_bytes` (kept for callers that pass it)
  is not needed.
  """
  @spec take(t(), pos_integer(), pos_integer(), non_neg_integer()) :: {:ok, taken()} | :empty
  def take(%__MODULE__{ref: ref}, max_entries, max_bytes, _pending_bytes \\ 0) do
    case Native.scheduled(Native.buffer_take(ref, max_entries, max_bytes)) do
      {:ok, :empty} ->
        :empty

      {:ok, {seq, base, frame, atoms, entries, raw}} ->
        {:ok,
         %{
           seq: seq,
           base: base,
           frame: frame,
           atoms: to_atoms(atoms),
           entries: entries,
           raw_bytes: raw
         }}
    end
  end

  @doc "Releases frames up to `upto`; returns the entries released and the new base."
  @spec ack(t(), non_neg_integer()) :: {non_neg_integer(), pos_integer()}
  def ack(%__MODULE__{ref: ref}, upto) when is_integer(upto) and upto >= 0,
    do: Native.buffer_ack(ref, upto)

  @doc "The unacknowledged frames, oldest first, as `{seq, frame, atoms}`."
  @spec unacked(t()) :: [{pos_integer(), binary(), [atom()]}]
  def unacked(%__MODULE__{ref: ref}) do
    {:ok, frames} = Native.buffer_unacked(ref)
    for {seq, frame, atoms} <- frames, do: {seq, frame, to_atoms(atoms)}
  end

  # The NIF looks the atoms up; names it cannot (UTF-8 beyond Latin-1 on
  # this NIF version) come as binaries. They come from entries encoded on
  # this node, so the atoms exist.
  defp to_atoms({atoms, []}), do: atoms
  defp to_atoms({atoms, names}), do: atoms ++ Enum.map(names, &String.to_existing_atom/1)

  @doc "Counters: pending and unacked entries and bytes, sequence numbers, drops."
  @spec stats(t()) :: %{
          pending_entries: non_neg_integer(),
          pending_bytes: non_neg_integer(),
          unacked_frames: non_neg_integer(),
          unacked_entries: non_neg_integer(),
          unacked_bytes: non_neg_integer(),
          next_seq: pos_integer(),
          acked_seq: non_neg_integer(),
          base_seq: pos_integer(),
          dropped_entries: non_neg_integer(),
          pushed_entries: non_neg_integer()
        }
  def stats(%__MODULE__{ref: ref}), do: Native.buffer_stats(ref)
end

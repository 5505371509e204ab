defmodule Jido.Distributed.Transport.Inbound do
  @moduledoc """
  The receiving side's sequencing state, kept in Rust NIF memory outside
  the Receiver process: per origin node a session (sender epoch, last frame
  delivered in full, entries delivered of a frame cut short) and the
  receiver's counters.

  `deliver/3` decodes a frame, sends each entry `{destination, message}` to
  its local destination and records the progress *in the same NIF call*,
  under the origin's lock (`jido_core::inbound` holds the rules). Progress is
  recorded after every entry, so a Receiver killed at any instant neither
  loses nor repeats a signal: the frame is sent again by its Link (no ack
  came), and delivery resumes at the first entry not yet delivered.

  The store is created once by `Jido.Distributed.Transport.LinkStore` and
  outlives Receiver restarts; a restarted Receiver finds every session and
  counter as it was.
  """

  alias Jido.Distributed.Native
  require Native

  @typedoc "The store (a NIF resource)."
  @opaque t :: reference()

  @typedoc "A frame's sequencing header, as the Link sent it."
  @type header :: %{
          origin: node(),
          epoch: pos_integer(),
          seq: pos_integer(),
          base: pos_integer()
        }

  @typedoc """
  What `deliver/3` did: `:ok` (delivered, or the rest of it), `:duplicate`
  (delivered before), `:gap` (an earlier frame is missing), each with the
  last frame of the origin's epoch delivered in full; `:busy` when a
  delivery by a previous Receiver still holds the origin's lock (try again);
  `{:error, reason}` when the frame does not decode (nothing changed).
  """
  @type outcome ::
          {:ok | :duplicate | :gap, non_neg_integer()}
          | {:busy, 0}
          | {:error, Jido.Distributed.Frame.error_reason() | :invalid}

  @counter_names [
    :frames,
    :signals,
    :duplicates,
    :gaps,
    :skipped,
    :malformed,
    :undeliverable,
    :acks_sent
  ]

  @doc "A new, empty store."
  @spec new() :: t()
  def new, do: Native.inbound_new()

  @doc """
  Delivers `frame` from `header.origin` exactly once, in order; see
  `t:outcome/0`. `max_decoded` bounds the decoded size in bytes. A frame
  whose header does not parse is counted malformed and changes nothing;
  large frames are delivered on a dirty CPU scheduler (the NIF reads the
  header and decides).
  """
  @spec deliver(t(), header(), binary(), pos_integer()) :: outcome()
  def deliver(store, %{origin: origin, epoch: epoch, seq: seq, base: base}, frame, max_decoded)
      when is_atom(origin) and is_binary(frame) do
    case Native.scheduled(
           Native.inbound_deliver(store, origin, epoch, seq, base, frame, max_decoded)
         ) do
      {:invalid, _} -> {:error, :invalid}
      other -> other
    end
  end

  @doc "The last frame of `origin`'s `epoch` delivered in full (0 if none)."
  @spec delivered(t(), node(), pos_integer()) :: non_neg_integer()
  def delivered(store, origin, epoch), do: Native.inbound_delivered(store, origin, epoch)

  @doc "Every session, by origin."
  @spec sessions(t()) :: %{
          node() => %{epoch: pos_integer(), delivered: non_neg_integer()}
        }
  def sessions(store) do
    Map.new(Native.inbound_sessions(store), fn {origin, epoch, delivered} ->
      {origin, %{epoch: epoch, delivered: delivered}}
    end)
  end

  @doc "Marks `origin` as down since `now_ms` (or up again), for `expire/4`."
  @spec mark(t(), node(), :down | :up, integer()) :: :ok
  def mark(store, origin, state, now_ms) when state in [:down, :up],
    do: Native.inbound_mark(store, origin, state == :down, max(now_ms, 0))

  @doc """
  Forgets the sessions of origins down for at least `grace_ms` whose every
  delivered frame the origin had confirmed (its later frames start above
  them), and of origins down for at least `ttl_ms` in any case. Returns the
  origins forgotten.
  """
  @spec expire(t(), integer(), non_neg_integer(), non_neg_integer()) :: [node()]
  def expire(store, now_ms, grace_ms, ttl_ms),
    do: Native.inbound_expire(store, max(now_ms, 0), grace_ms, ttl_ms)

  @doc "Adds `n` to the counter `name` (one of `counter_names/0`)."
  @spec count(t(), atom(), non_neg_integer()) :: :ok
  def count(store, name, n \\ 1) when name in @counter_names,
    do: Native.inbound_count(store, name, n)

  @doc "The counter names."
  @spec counter_names() :: [atom()]
  def counter_names, do: @counter_names

  @doc "Every counter, as a map."
  @spec counters(t()) :: %{atom() => non_neg_integer()}
  def counters(store) do
    Map.new(Native.inbound_counters(store), fn {name, value} ->
      {String.to_existing_atom(name), value}
    end)
  end
end

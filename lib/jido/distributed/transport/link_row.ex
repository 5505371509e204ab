defmodule Jido.Distributed.Transport.LinkRow do
  @moduledoc """
  The row of one remote node in the links table (owned by
  `Jido.Distributed.Transport.LinkStore`): everything about the node's link
  that must outlive its Link process, as an Erlang record with named fields.

    * `node` - the remote node (the table key);
    * `buffer` - its `Jido.Distributed.Transport.LinkBuffer`;
    * `epoch` - random per buffer; the receiving node resets its sequence
      state when it sees a new one (this node restarted);
    * `flags` - a small `:atomics` array shared by callers and the Link, read
      and written only through `claim_wake/1`, `clear_wake/1`,
      `batch_size/1` and `put_batch_size/2`;
    * `counters` - the link's `:counters` (see `counter/1`);
    * `pid` - the Link process serving the node, `nil` before it starts.

  Use the `link_row/1,2` macros (`require Jido.Distributed.Transport.LinkRow`)
  to build, match and read rows by field name.
  """
  require Record

  alias Jido.Distributed.Counters
  alias Jido.Distributed.Transport.LinkBuffer

  Record.defrecord(:link_row,
    node: nil,
    buffer: nil,
    epoch: nil,
    flags: nil,
    counters: nil,
    pid: nil
  )

  @typedoc "A link row."
  @type t ::
          record(:link_row,
            node: node(),
            buffer: LinkBuffer.t(),
            epoch: pos_integer(),
            flags: :atomics.atomics_ref(),
            counters: :counters.counters_ref(),
            pid: pid() | nil
          )

  # The slots of `flags`.
  @wake 1
  @batch_size 2

  @counter_names [:frames, :raw_bytes, :wire_bytes, :acks, :retransmits, :dropped, :rejected]

  @doc "The ETS key position of a row (for `:ets.new/2`)."
  @spec keypos() :: pos_integer()
  def keypos, do: link_row(:node) + 1

  @doc "The ETS position of the `pid` field (for `:ets.update_element/3`)."
  @spec pid_pos() :: pos_integer()
  def pid_pos, do: link_row(:pid) + 1

  @doc """
  A new row for `node`: an empty buffer with the `link` settings, a random
  epoch, fresh flags and counters, no Link yet.
  """
  @spec new(node(), keyword()) :: t()
  def new(node, link) do
    buffer = LinkBuffer.new(link[:max_buffer_entries], link[:max_buffer_bytes], link[:overflow])
    flags = :atomics.new(2, signed: false)
    put_batch_size(flags, link[:batch_size])
    <<epoch::unsigned-56>> = :crypto.strong_rand_bytes(7)

    link_row(
      node: node,
      buffer: buffer,
      epoch: epoch + 1,
      flags: flags,
      counters: Counters.new(@counter_names, [:write_concurrency])
    )
  end

  @doc """
  Claims the wake-up flag: true if the caller set it (and so should wake
  the Link with one message), false if a wake-up is already outstanding.
  """
  @spec claim_wake(:atomics.atomics_ref()) :: boolean()
  def claim_wake(flags), do: :atomics.compare_exchange(flags, @wake, 0, 1) == :ok

  @doc "Clears the wake-up flag (the Link does, before draining the buffer)."
  @spec clear_wake(:atomics.atomics_ref()) :: :ok
  def clear_wake(flags), do: :atomics.put(flags, @wake, 0)

  @doc "The link's current batch size (signals per frame)."
  @spec batch_size(:atomics.atomics_ref()) :: pos_integer()
  def batch_size(flags), do: :atomics.get(flags, @batch_size)

  @doc "Sets the link's batch size."
  @spec put_batch_size(:atomics.atomics_ref(), pos_integer()) :: :ok
  def put_batch_size(flags, size), do: :atomics.put(flags, @batch_size, size)

  @doc "Index of a named counter in a row's `counters`."
  @spec counter(atom()) :: pos_integer()
  for {name, index} <- Enum.with_index(@counter_names, 1) do
    def counter(unquote(name)), do: unquote(index)
  end

  @doc "Reads a row's counters into a map."
  @spec read_counters(:counters.counters_ref()) :: %{atom() => non_neg_integer()}
  def read_counters(counters), do: Counters.read(counters, @counter_names)
end

defmodule Jido.Distributed.Directory.Deltas do
  @moduledoc """
  Pure: the changes of this node's agents waiting to go to the subscribed
  Directories, batched.

  Puts and deletes are kept in order; load changes are coalesced per agent
  to the last value and sent after them (a put carries the current load,
  so a load queued before a put of the same agent is dropped). `due?/4`
  says when to send: when the server's mailbox is empty (so a burst goes
  as one batch), when `max_batch` changes wait, or when the oldest has
  waited `max_delay` ms; `take/2` returns them in chunks of `max_batch`.

      iex> alias Jido.Distributed.Directory.Deltas
      iex> d = Deltas.new() |> Deltas.load("a", 1, 0) |> Deltas.op({:put, "b", :pid, [], 0}, "b", 0)
      iex> d = Deltas.load(d, "a", 2, 5)
      iex> {chunks, d} = Deltas.take(d, 10)
      iex> chunks
      [[{:put, "b", :pid, [], 0}, {:load, "a", 2}]]
      iex> Deltas.empty?(d)
      true
  """

  defstruct ops: [], count: 0, loads: %{}, since: nil

  @typedoc "Queued changes: `ops` newest first, `loads` per id, `since` the oldest's time."
  @type t :: %__MODULE__{
          ops: [tuple()],
          count: non_neg_integer(),
          loads: map(),
          since: integer() | nil
        }

  @doc "Nothing queued."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc "Queues a put or delete of the agent `id` at time `now`."
  @spec op(t(), tuple(), term(), integer()) :: t()
  def op(d, op, id, now) do
    %{
      d
      | ops: [op | d.ops],
        count: d.count + 1,
        loads: Map.delete(d.loads, id),
        since: d.since || now
    }
  end

  @doc "Queues a load change of the agent `id` at time `now`."
  @spec load(t(), term(), number(), integer()) :: t()
  def load(d, id, load, now),
    do: %{d | loads: Map.put(d.loads, id, load), count: d.count + 1, since: d.since || now}

  @doc "True when nothing is queued."
  @spec empty?(t()) :: boolean()
  def empty?(d), do: d.count == 0

  @doc "True when the queued changes should go now (see the module doc)."
  @spec due?(t(), boolean(), integer(), {pos_integer(), non_neg_integer()}) :: boolean()
  def due?(%__MODULE__{count: 0}, _idle, _now, _limits), do: false

  def due?(d, idle, now, {max_batch, max_delay}),
    do: idle or d.count >= max_batch or now - d.since >= max_delay

  @doc "The queued changes in chunks of at most `max_batch`, and an empty queue."
  @spec take(t(), pos_integer()) :: {[[tuple()]], t()}
  def take(%__MODULE__{count: 0} = d, _max_batch), do: {[], d}

  def take(d, max_batch) do
    ops = Enum.reverse(d.ops, for({id, load} <- d.loads, do: {:load, id, load}))
    {Enum.chunk_every(ops, max_batch), new()}
  end
end

defmodule Jido.Distributed.Broadcast.Batch do
  @moduledoc """
  Forms a batch of broadcasts in the broadcast process (see "Batches" in
  `Jido.Distributed.TreeBroadcast`): with the start it took, it takes the
  starts already queued in its mailbox behind it, without waiting, while
  they are for the same tree, timeout and fanout, up to `max_batch/0`
  broadcasts and `max_batch_bytes/0` bytes of signals (in external term
  format), so a batch's frame is encoded and decoded on a normal scheduler
  (see `Jido.Distributed.Frame`).

  Starts arrive as calls (`{:"$gen_call", from, start}`, awaited) or casts;
  the first one that does not fit ends the batch and is returned, to start
  the next batch, so batches leave in the order their broadcasts were
  started. Runs in the process whose mailbox it reads.
  """

  alias Jido.Distributed.Broadcast.Wire

  @max_batch 64
  @max_batch_bytes 64 * 1024

  @typedoc "A broadcast of a batch: its id, signal, and the awaiting caller (or nil)."
  @type entry :: {Wire.id(), map(), GenServer.from() | nil}

  @doc "Most broadcasts in one batch."
  @spec max_batch() :: pos_integer()
  def max_batch, do: @max_batch

  @doc "Most bytes of signals in one batch (a larger lone signal still goes alone)."
  @spec max_batch_bytes() :: pos_integer()
  def max_batch_bytes, do: @max_batch_bytes

  @doc """
  The batch that begins with `start` (checked by `Wire.check_start/2`),
  awaited by `waiter` or nil: its entries in order, and the first queued
  start that did not fit, with its waiter, or nil.
  """
  @spec collect(tuple(), GenServer.from() | nil) ::
          {[entry()], {tuple(), GenServer.from() | nil} | nil}
  def collect({:start, id, signal, size, tree, timeout, fanout}, waiter),
    do: collect({tree, timeout, fanout}, 1, size, [{id, signal, waiter}])

  defp collect(_key, n, _bytes, acc) when n >= @max_batch, do: {Enum.reverse(acc), nil}

  defp collect(key, n, bytes, acc) do
    receive do
      {:"$gen_cast", {:start, _, _, _, _, _, _} = start} ->
        take(key, n, bytes, acc, start, nil)

      {:"$gen_call", {_, _} = from, {:start, _, _, _, _, _, _} = start} ->
        take(key, n, bytes, acc, start, from)
    after
      0 -> {Enum.reverse(acc), nil}
    end
  end

  # A start joins if it is for the batch's tree, timeout and fanout (so
  # those are checked already) and the rest of it is right too.
  defp take({tree, timeout, fanout} = key, n, bytes, acc, start, waiter) do
    case start do
      {:start, id, %{id: _, type: _} = signal, size, ^tree, ^timeout, ^fanout}
      when is_integer(size) and size >= 0 and bytes + size <= @max_batch_bytes ->
        if Wire.id?(id),
          do: collect(key, n + 1, bytes + size, [{id, signal, waiter} | acc]),
          else: {Enum.reverse(acc), {start, waiter}}

      _ ->
        {Enum.reverse(acc), {start, waiter}}
    end
  end
end

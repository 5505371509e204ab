defmodule Jido.Distributed.Transport.LinkPolicy do
  @moduledoc """
  The decisions of a `Jido.Distributed.Transport.Link`, as pure functions of
  time and counts: when callers wake the Link, when it flushes, when it
  sends unacked frames again and how often it checks. The Link process does
  what they answer; nothing here reads a clock or sends a message.

  ## Flush

    * A signal on an idle link (nothing flushed within the linger time)
      goes out at once: idle links add no delay.
    * On a busy link, signals gather for up to the linger time after the
      last flush, or until a batch is full, whichever comes first.
    * A caller that finds four batches pending waits for the Link to flush
      (backpressure), so mailboxes and buffers cannot grow without bound.

  ## Retransmission

  Unacked frames are sent again after a reconnect, when the receiver
  reports a gap (at most once per gap position within `gap_window_ms/0`),
  or after `retransmit_ms` without progress, checked every quarter of it.
  """

  # Callers wait for a flush when this many batches are pending.
  @saturation_batches 4
  # A gap report at the same position within this window is not acted on
  # again (the frames sent for the first one are still on their way).
  @gap_window_ms 100

  @typedoc "What a caller that pushed entries does to the Link."
  @type wake :: :wait_flush | :flush_full | :hint

  @typedoc "What the Link does on a wake-up hint."
  @type on_hint :: :flush | :keep_waiting | {:linger, pos_integer()}

  @doc """
  What a caller does after pushing `count` entries that left `pending`
  entries in a buffer of batch size `batch`: `:wait_flush` when saturated,
  `:flush_full` when its push filled a batch (only the push that crossed
  the line says so), else `:hint` (wake the Link if no wake-up is
  outstanding).

      iex> alias Jido.Distributed.Transport.LinkPolicy
      iex> LinkPolicy.wake(1, 1, 256)
      :hint
      iex> LinkPolicy.wake(256, 10, 256)
      :flush_full
      iex> LinkPolicy.wake(300, 10, 256)
      :hint
      iex> LinkPolicy.wake(1024, 1, 256)
      :wait_flush
  """
  @spec wake(non_neg_integer(), pos_integer(), pos_integer()) :: wake()
  def wake(pending, count, batch) do
    cond do
      pending >= batch * @saturation_batches -> :wait_flush
      pending >= batch and pending - count < batch -> :flush_full
      true -> :hint
    end
  end

  @doc """
  What the Link does on a wake-up hint at `now_us`, having last flushed at
  `last_flush_us`, with a linger time of `linger_us` and a linger timer
  armed or not: `:flush` at once (the link was idle), `:keep_waiting` (the
  armed timer will flush), or `{:linger, ms}` (arm a timer for `ms`,
  rounded to the nearest whole millisecond, at least 1).

      iex> alias Jido.Distributed.Transport.LinkPolicy
      iex> LinkPolicy.on_hint(10_000, 0, 3_000, false)
      :flush
      iex> LinkPolicy.on_hint(1_000, 0, 3_000, false)
      {:linger, 2}
      iex> LinkPolicy.on_hint(1_000, 0, 3_000, true)
      :keep_waiting
  """
  @spec on_hint(integer(), integer(), non_neg_integer(), boolean()) :: on_hint()
  def on_hint(now_us, last_flush_us, linger_us, timer_armed?) do
    elapsed = now_us - last_flush_us

    cond do
      elapsed >= linger_us -> :flush
      timer_armed? -> :keep_waiting
      true -> {:linger, max(div(linger_us - elapsed + 500, 1_000), 1)}
    end
  end

  @doc """
  True when unacked frames are due to be sent again for lack of progress:
  some are unacked, the node is connected, and nothing was acked (and no
  retransmission happened) for `retransmit_ms`.

      iex> alias Jido.Distributed.Transport.LinkPolicy
      iex> LinkPolicy.retransmit_due?(3, true, 2_000, 500, 1_000)
      true
      iex> LinkPolicy.retransmit_due?(3, true, 1_400, 500, 1_000)
      false
      iex> LinkPolicy.retransmit_due?(0, true, 2_000, 500, 1_000)
      false
      iex> LinkPolicy.retransmit_due?(3, false, 2_000, 500, 1_000)
      false
  """
  @spec retransmit_due?(non_neg_integer(), boolean(), integer(), integer(), pos_integer()) ::
          boolean()
  def retransmit_due?(unacked, connected?, now_ms, last_progress_ms, retransmit_ms),
    do: unacked > 0 and connected? and now_ms - last_progress_ms >= retransmit_ms

  @doc """
  How often the Link checks for lack of progress while frames are unacked:
  a quarter of `retransmit_ms`, at least 10 ms; `nil` when nothing is
  unacked (no check).

      iex> Jido.Distributed.Transport.LinkPolicy.check_interval(5, 1_000)
      250
      iex> Jido.Distributed.Transport.LinkPolicy.check_interval(5, 20)
      10
      iex> Jido.Distributed.Transport.LinkPolicy.check_interval(0, 1_000)
      nil
  """
  @spec check_interval(non_neg_integer(), pos_integer()) :: pos_integer() | nil
  def check_interval(0, _retransmit_ms), do: nil
  def check_interval(_unacked, retransmit_ms), do: max(div(retransmit_ms, 4), 10)

  @doc """
  Whether a gap report at `upto`, arriving at `now_ms`, is acted on, given
  the last one acted on (`{upto, at_ms}` or `nil`). Returns `{true,
  last_gap}` with the position to remember, or `false` for a repeat of the
  same position within `gap_window_ms/0`.

      iex> alias Jido.Distributed.Transport.LinkPolicy
      iex> LinkPolicy.gap_retransmit(4, 1_000, nil)
      {true, {4, 1_000}}
      iex> LinkPolicy.gap_retransmit(4, 1_050, {4, 1_000})
      false
      iex> LinkPolicy.gap_retransmit(4, 1_100, {4, 1_000})
      {true, {4, 1_100}}
      iex> LinkPolicy.gap_retransmit(5, 1_010, {4, 1_000})
      {true, {5, 1_010}}
  """
  @spec gap_retransmit(non_neg_integer(), integer(), {non_neg_integer(), integer()} | nil) ::
          {true, {non_neg_integer(), integer()}} | false
  def gap_retransmit(upto, now_ms, last_gap) do
    case last_gap do
      {^upto, at} when now_ms - at < @gap_window_ms -> false
      _ -> {true, {upto, now_ms}}
    end
  end

  @doc "The window in which repeated gap reports at one position are ignored, in ms."
  @spec gap_window_ms() :: pos_integer()
  def gap_window_ms, do: @gap_window_ms

  @doc """
  What the Link does when its reconnect timer fires: `:resume` when the
  node is connected again, `:connect` (start a background attempt and try
  again later) while it holds data for the node, else `:idle` (wait for
  the next signal or a nodeup).

      iex> alias Jido.Distributed.Transport.LinkPolicy
      iex> {LinkPolicy.on_reconnect(true, false), LinkPolicy.on_reconnect(false, true), LinkPolicy.on_reconnect(false, false)}
      {:resume, :connect, :idle}
  """
  @spec on_reconnect(boolean(), boolean()) :: :resume | :connect | :idle
  def on_reconnect(true, _holds_data?), do: :resume
  def on_reconnect(false, true), do: :connect
  def on_reconnect(false, false), do: :idle
end

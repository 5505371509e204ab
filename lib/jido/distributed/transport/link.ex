defmodule Jido.Distributed.Transport.Link do
  @moduledoc """
  One process per remote node: turns the signals callers put in the node's
  `Jido.Distributed.Transport.LinkBuffer` into sequenced, compressed frames,
  sends them to the node's `Jido.Distributed.Transport.Receiver`, and keeps
  them until acknowledged.

  ## Flush policy

    * A signal on an idle link (nothing flushed within `linger_ms`) goes out
      at once: idle links add no delay.
    * On a busy link, signals gather for up to `linger_ms` after the last
      flush, or until a batch is full (the batch size follows the node's
      distance class), whichever comes first.

  ## Reliability

  Frames carry consecutive sequence numbers per buffer epoch. The Receiver
  acks cumulatively; frames stay in the buffer until acked and are sent again
  after a reconnect, when the receiver reports a gap, or after
  `retransmit_ms` without progress. While the node is unreachable nothing is
  sent and signals wait in the bounded buffer; the Link tries to reconnect
  every `reconnect_ms`.

  Callers never wait for the Link on the normal path: `enqueue/2` pushes
  into the buffer and wakes the Link with at most one message. When a link
  is saturated (much more pending than a batch), callers wait for the Link
  to flush, so mailboxes and buffers cannot grow without bound.
  """
  use GenServer, restart: :permanent

  require Logger

  alias Jido.Distributed.Location
  alias Jido.Distributed.Optimizer
  alias Jido.Distributed.Options
  alias Jido.Distributed.Telemetry
  alias Jido.Distributed.Transport.{LinkBuffer, LinkStore, NodeCheck, Receiver}

  @registry Jido.Distributed.LinkRegistry
  @supervisor Jido.Distributed.LinkSupervisor
  # Callers wait for a flush when this many batches are pending.
  @saturation_batches 4

  @doc false
  def start_link(node), do: GenServer.start_link(__MODULE__, node, name: via(node))

  @doc """
  Accepts encoded entries (`:erlang.term_to_binary({dest, message})`) for
  `node`, starting its Link if needed. All or none are accepted.

  Only a known node gets a Link (see `Jido.Distributed.Transport.NodeCheck`):
  a malformed node name is refused with `{:invalid_node, node}`, a node
  this node has never been connected to (and that is not in the
  `:known_nodes` setting) with `{:unknown_node, node}`, after starting one
  background connection attempt.
  """
  @spec enqueue(node(), [binary()]) ::
          :ok
          | {:error,
             :buffer_full
             | :too_large
             | :not_distributed
             | {:invalid_node | :unknown_node, term()}}
  def enqueue(node, entries) when is_atom(node) and is_list(entries) do
    case LinkStore.lookup(node) do
      {_, _, _, _, _, pid} = row when is_pid(pid) ->
        if Node.alive?(), do: push(row, entries), else: {:error, :not_distributed}

      _ ->
        with :ok <- NodeCheck.check(node), do: push(ensure_started(node), entries)
    end
  end

  @doc """
  Starts the Link for `node` unless it runs; returns the link row. Does not
  check `node` (`enqueue/2` does).
  """
  @spec ensure_started(node()) :: LinkStore.row()
  def ensure_started(node) when is_atom(node) do
    case LinkStore.lookup(node) do
      {_, _, _, _, _, pid} = row when is_pid(pid) ->
        row

      _ ->
        case DynamicSupervisor.start_child(@supervisor, {__MODULE__, node}) do
          {:ok, _} -> :ok
          {:error, {:already_started, _}} -> :ok
        end

        LinkStore.lookup(node)
    end
  end

  def ensure_started(node), do: raise(ArgumentError, node_message(node))

  @doc "Flushes everything pending for `node` now and waits for it."
  @spec flush(node(), timeout()) :: :ok
  def flush(node, timeout \\ 5_000)

  def flush(node, timeout) when is_atom(node) do
    case LinkStore.lookup(node) do
      {_, _, _, _, _, pid} when is_pid(pid) -> GenServer.call(pid, :flush_sync, timeout)
      _ -> :ok
    end
  end

  def flush(node, _timeout), do: raise(ArgumentError, node_message(node))

  defp node_message(node),
    do: "the node argument must be a node name (an atom), got: #{inspect(node)}"

  defp via(node), do: {:via, Registry, {@registry, node}}

  defp push({node, buffer, _epoch, notify, counters, pid}, entries) do
    count = length(entries)

    case LinkBuffer.push(buffer, entries) do
      {:ok, pending, dropped} ->
        if dropped > 0, do: report_overflow(node, counters, :dropped, dropped)
        wake(pid, notify, pending, count)

      {:error, reason} = error ->
        report_overflow(node, counters, :rejected, count)
        Telemetry.emit([:link, :reject], %{signals: count}, %{node: node, reason: reason})
        error
    end
  end

  defp wake(pid, notify, pending, count) do
    batch = :atomics.get(notify, 2)

    cond do
      pending >= batch * @saturation_batches ->
        # Saturated: feel the backpressure by waiting for the Link.
        try do
          GenServer.call(pid, :flush_sync, 5_000)
        catch
          :exit, _ -> :ok
        end

      pending >= batch and pending - count < batch ->
        send(pid, :flush_full)
        :ok

      :atomics.compare_exchange(notify, 1, 0, 1) == :ok ->
        send(pid, :flush_hint)
        :ok

      true ->
        :ok
    end
  end

  defp report_overflow(node, counters, kind, count) do
    :counters.add(counters, LinkStore.counter(kind), count)
    Telemetry.emit([:link, :overflow], %{signals: count}, %{node: node, kind: kind})
  end

  ## Server

  @impl true
  def init(node) do
    {^node, buffer, epoch, notify, counters, _} = LinkStore.fetch_or_create(node)
    LinkStore.set_pid(node, self())
    opts = Options.get(:link)

    state = %{
      node: node,
      buffer: buffer,
      epoch: epoch,
      notify: notify,
      counters: counters,
      batch_size: opts[:batch_size],
      batch_bytes: opts[:batch_bytes],
      linger_us: opts[:linger_ms] * 1_000,
      retransmit_ms: opts[:retransmit_ms],
      reconnect_ms: opts[:reconnect_ms],
      connected: node in Node.list([:visible, :hidden]),
      last_flush: now_us() - opts[:linger_ms] * 1_000,
      last_progress: now_ms(),
      linger_timer: nil,
      check_timer: nil,
      reconnect_timer: nil,
      last_gap: nil
    }

    {:ok, state, {:continue, :start}}
  end

  @impl true
  def handle_continue(:start, state) do
    if state.connected, do: learn_batch_size(state)
    {:noreply, resume(state)}
  end

  @impl true
  def handle_call(:flush_sync, _from, state), do: {:reply, :ok, do_flush(state, :flush)}

  @impl true
  def handle_info(:flush_hint, %{connected: false} = state),
    do: {:noreply, schedule_reconnect(state)}

  def handle_info(:flush_hint, state) do
    elapsed = now_us() - state.last_flush

    cond do
      elapsed >= state.linger_us ->
        {:noreply, do_flush(state, :idle)}

      state.linger_timer ->
        {:noreply, state}

      true ->
        # Timers count whole milliseconds: round to the nearest.
        wait = max(div(state.linger_us - elapsed + 500, 1_000), 1)
        {:noreply, %{state | linger_timer: Process.send_after(self(), :linger, wait)}}
    end
  end

  def handle_info(:flush_full, state), do: {:noreply, do_flush(state, :size)}

  def handle_info({:distance_class, node, class}, %{node: node} = state) do
    size = Optimizer.batch_size(class, Options.get(:batch_sizes))
    :atomics.put(state.notify, 2, size)
    {:noreply, %{state | batch_size: size}}
  end

  def handle_info(:linger, state),
    do: {:noreply, do_flush(%{state | linger_timer: nil}, :timeout)}

  def handle_info({:ack, epoch, upto, gap?}, %{epoch: epoch} = state) do
    {released, _base} = LinkBuffer.ack(state.buffer, upto)
    :counters.add(state.counters, LinkStore.counter(:acks), 1)

    state =
      if released > 0,
        do: %{state | last_progress: now_ms()},
        else: state

    Telemetry.emit([:link, :ack], %{signals: released}, %{node: state.node, seq: upto})
    state = if gap?, do: retransmit_after_gap(state, upto), else: state
    {:noreply, state}
  end

  def handle_info({:ack, _stale_epoch, _upto, _gap?}, state), do: {:noreply, state}

  def handle_info(:check, state) do
    state = %{state | check_timer: nil}
    %{unacked_frames: unacked} = LinkBuffer.stats(state.buffer)

    state =
      if unacked > 0 and state.connected and
           now_ms() - state.last_progress >= state.retransmit_ms,
         do: retransmit(%{state | last_progress: now_ms()}, :timeout),
         else: state

    {:noreply, arm_check(state)}
  end

  def handle_info({:nodeup, node}, %{node: node} = state) do
    state = %{state | connected: true}
    learn_batch_size(state)
    {:noreply, resume(state)}
  end

  def handle_info({:nodedown, node}, %{node: node} = state) do
    {:noreply, schedule_reconnect(%{state | connected: false})}
  end

  def handle_info(:reconnect, state) do
    state = %{state | reconnect_timer: nil}
    connected = state.node in Node.list([:visible, :hidden])

    cond do
      connected ->
        {:noreply, resume(%{state | connected: true})}

      holds_data?(state) ->
        # Connecting can block for the whole setup time on a dead network:
        # never block the Link on it, and never start a second attempt
        # while one is under way.
        NodeCheck.connect(state.node, :unbounded)
        {:noreply, schedule_reconnect(state)}

      true ->
        # Nothing to deliver: wait for the next signal or a nodeup.
        {:noreply, state}
    end
  end

  def handle_info(msg, state) do
    Logger.debug("#{inspect(__MODULE__)} ignoring #{inspect(msg)}")
    {:noreply, state}
  end

  ## Internals

  # After (re)connecting: everything unacked again, then whatever is pending.
  defp resume(%{connected: false} = state), do: schedule_reconnect(state)

  defp resume(state) do
    state
    |> retransmit(:reconnect)
    |> do_flush(:reconnect)
  end

  # The batch size follows the node's distance class. Learning the class
  # may ask the node for its labels: do it aside, so the first signals on
  # a new link do not wait for that round trip.
  defp learn_batch_size(state) do
    link = self()
    node = state.node
    spawn(fn -> send(link, {:distance_class, node, Location.class_of(node)}) end)
  end

  defp do_flush(%{connected: false} = state, _trigger), do: state

  defp do_flush(state, trigger) do
    if state.linger_timer, do: Process.cancel_timer(state.linger_timer)
    # Clear the wake-up flag before draining: a push after this point sends
    # a new hint, so nothing pushed is left waiting.
    :atomics.put(state.notify, 1, 0)
    %{pending_bytes: pending_bytes, unacked_frames: unacked} = LinkBuffer.stats(state.buffer)
    state = if unacked == 0, do: %{state | last_progress: now_ms()}, else: state

    case drain(state, pending_bytes, {0, 0, 0, 0}) do
      # Nothing went out: the link stays idle, so the next signal goes at once.
      {0, _, _, _} ->
        arm_check(%{state | linger_timer: nil})

      {frames, signals, raw, wire} ->
        Telemetry.emit(
          [:link, :flush],
          %{frames: frames, signals: signals, raw_bytes: raw, wire_bytes: wire},
          %{node: state.node, trigger: trigger}
        )

        arm_check(%{state | linger_timer: nil, last_flush: now_us()})
    end
  end

  defp drain(state, pending_bytes, {frames, signals, raw, wire} = acc) do
    case LinkBuffer.take(state.buffer, state.batch_size, state.batch_bytes, pending_bytes) do
      :empty ->
        acc

      {:ok, taken} ->
        send_frame(state, taken.seq, taken.base, taken.frame, taken.atoms)
        c = state.counters
        :counters.add(c, LinkStore.counter(:frames), 1)
        :counters.add(c, LinkStore.counter(:raw_bytes), taken.raw_bytes)
        :counters.add(c, LinkStore.counter(:wire_bytes), byte_size(taken.frame))

        drain(
          state,
          pending_bytes - taken.raw_bytes,
          {frames + 1, signals + taken.entries, raw + taken.raw_bytes,
           wire + byte_size(taken.frame)}
        )
    end
  end

  defp send_frame(state, seq, base, frame, atoms) do
    :erlang.send(
      {Receiver, state.node},
      {:jido_frame, node(), state.epoch, seq, base, frame, atoms},
      [:noconnect]
    )
  end

  defp retransmit(%{connected: false} = state, _why), do: state

  defp retransmit(state, why) do
    case LinkBuffer.unacked(state.buffer) do
      [] ->
        state

      frames ->
        %{base_seq: base} = LinkBuffer.stats(state.buffer)

        Enum.each(frames, fn {seq, frame, atoms} -> send_frame(state, seq, base, frame, atoms) end)

        :counters.add(state.counters, LinkStore.counter(:retransmits), length(frames))

        Telemetry.emit([:link, :retransmit], %{frames: length(frames)}, %{
          node: state.node,
          reason: why
        })

        arm_check(state)
    end
  end

  # A gap report names the last frame the receiver delivered; everything
  # after it is sent again, at most once per gap position in a short window.
  defp retransmit_after_gap(state, upto) do
    now = now_ms()

    case state.last_gap do
      {^upto, at} when now - at < 100 -> state
      _ -> retransmit(%{state | last_gap: {upto, now}}, :gap)
    end
  end

  defp arm_check(%{check_timer: nil} = state) do
    %{unacked_frames: unacked} = LinkBuffer.stats(state.buffer)

    if unacked > 0 do
      interval = max(div(state.retransmit_ms, 4), 10)
      %{state | check_timer: Process.send_after(self(), :check, interval)}
    else
      state
    end
  end

  defp arm_check(state), do: state

  defp schedule_reconnect(%{reconnect_timer: nil} = state) do
    %{state | reconnect_timer: Process.send_after(self(), :reconnect, state.reconnect_ms)}
  end

  defp schedule_reconnect(state), do: state

  defp holds_data?(state) do
    %{pending_entries: pending, unacked_frames: unacked} = LinkBuffer.stats(state.buffer)
    pending + unacked > 0
  end

  defp now_us, do: System.monotonic_time(:microsecond)
  defp now_ms, do: System.monotonic_time(:millisecond)
end

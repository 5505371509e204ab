defmodule Jido.Distributed.Transport.Link do
  @moduledoc """
  One process per remote node: turns the signals callers put in the node's
  `Jido.Distributed.Transport.LinkBuffer` into sequenced, compressed frames,
  sends them to the node's `Jido.Distributed.Transport.Receiver`, and keeps
  them until acknowledged.

  The flush and retransmit decisions are pure functions in
  `Jido.Distributed.Transport.LinkPolicy` (idle links add no delay, busy
  ones linger up to `linger_ms` or until a batch is full; the batch size
  follows the node's distance class); this process carries them out.

  ## Reliability

  Frames carry consecutive sequence numbers per buffer epoch and this
  Link's pid (see `Jido.Distributed.Transport.Wire`), so the Receiver acks
  cumulatively straight back to it; frames stay in the buffer until acked.
  A restarted Link sends every unacked frame again at start, which also
  covers acks sent to its predecessor. While the node is unreachable
  nothing is sent and signals wait in the bounded buffer; the Link tries to
  reconnect every `reconnect_ms`.

  Callers never wait for the Link on the normal path: `enqueue/2` pushes
  into the buffer and wakes the Link with at most one message. When a link
  is saturated (much more pending than a batch), callers wait for the Link
  to flush, so mailboxes and buffers cannot grow without bound.
  """
  use GenServer, restart: :permanent

  require Logger
  require Jido.Distributed.Transport.LinkRow

  import Jido.Distributed.Transport.LinkRow, only: [link_row: 1]
  import Jido.Distributed.Transport.Wire, only: [is_ack_message: 1]

  alias Jido.Distributed.Routing.Location
  alias Jido.Distributed.Optimizer
  alias Jido.Distributed.Options
  alias Jido.Distributed.Telemetry

  alias Jido.Distributed.Transport.{
    Inbound,
    LinkBuffer,
    LinkPolicy,
    LinkRow,
    LinkStore,
    NodeCheck,
    Receiver,
    Wire
  }

  @registry Jido.Distributed.LinkRegistry
  @supervisor Jido.Distributed.LinkSupervisor

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
      link_row(pid: pid) = row when is_pid(pid) ->
        if Node.alive?(), do: push(row, entries), else: {:error, :not_distributed}

      _ ->
        with :ok <- NodeCheck.check(node), do: push(ensure_started(node), entries)
    end
  end

  @doc """
  Starts the Link for `node` unless it runs; returns the link row. Does not
  check `node` (`enqueue/2` does).
  """
  @spec ensure_started(node()) :: LinkRow.t()
  def ensure_started(node) when is_atom(node) do
    case LinkStore.lookup(node) do
      link_row(pid: pid) = row when is_pid(pid) ->
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

  @doc """
  Tells the Link of `node` (if one runs) whether the Monitor can reach the
  node: while it cannot, the Link sends nothing and keeps every signal;
  when it can again, the Link sends what is unacked and pending at once.
  """
  @spec reachability(node(), boolean()) :: :ok
  def reachability(node, reachable?) when is_atom(node) and is_boolean(reachable?) do
    case Registry.lookup(@registry, node) do
      [{pid, _}] -> send(pid, {:reachability, node, reachable?})
      [] -> :ok
    end

    :ok
  rescue
    # No registry while the transport (re)starts: no Link to tell.
    ArgumentError -> :ok
  end

  def reachability(node, reachable?) do
    raise ArgumentError,
          "expected a node (atom) and a boolean, got: #{inspect(node)}, #{inspect(reachable?)}"
  end

  @doc "Flushes everything pending for `node` now and waits for it."
  @spec flush(node(), timeout()) :: :ok
  def flush(node, timeout \\ 5_000)

  def flush(node, timeout) when is_atom(node) do
    case LinkStore.link_pid(node) do
      pid when is_pid(pid) -> GenServer.call(pid, :flush_sync, timeout)
      nil -> :ok
    end
  end

  def flush(node, _timeout), do: raise(ArgumentError, node_message(node))

  defp node_message(node),
    do: "the node argument must be a node name (an atom), got: #{inspect(node)}"

  defp via(node), do: {:via, Registry, {@registry, node}}

  defp push(row, entries) do
    link_row(node: node, buffer: buffer, flags: flags, counters: counters, pid: pid) = row
    count = length(entries)

    case LinkBuffer.push(buffer, entries) do
      {:ok, pending, dropped} ->
        if dropped > 0, do: report_overflow(node, counters, :dropped, dropped)
        wake(pid, flags, pending, count)

      {:error, reason} = error ->
        report_overflow(node, counters, :rejected, count)
        Telemetry.emit([:link, :reject], %{signals: count}, %{node: node, reason: reason})
        error
    end
  end

  defp wake(pid, flags, pending, count) do
    case LinkPolicy.wake(pending, count, LinkRow.batch_size(flags)) do
      :wait_flush ->
        # Saturated: feel the backpressure by waiting for the Link.
        try do
          GenServer.call(pid, :flush_sync, 5_000)
        catch
          :exit, _ -> :ok
        end

      :flush_full ->
        send(pid, :flush_full)
        :ok

      :hint ->
        if LinkRow.claim_wake(flags), do: send(pid, :flush_hint)
        :ok
    end
  end

  defp report_overflow(node, counters, kind, count) do
    :counters.add(counters, LinkRow.counter(kind), count)
    Telemetry.emit([:link, :overflow], %{signals: count}, %{node: node, kind: kind})
  end

  ## Server

  @impl true
  def init(node) do
    opts = Options.get(:link)

    link_row(buffer: buffer, epoch: epoch, flags: flags, counters: counters) =
      LinkStore.fetch_or_create(node, opts)

    LinkStore.set_pid(node, self())

    state = %{
      node: node,
      buffer: buffer,
      epoch: epoch,
      flags: flags,
      counters: counters,
      batch_size: opts[:batch_size],
      batch_bytes: opts[:batch_bytes],
      linger_us: opts[:linger_ms] * 1_000,
      retransmit_ms: opts[:retransmit_ms],
      reconnect_ms: opts[:reconnect_ms],
      connected: node in Node.list([:visible, :hidden]),
      # False while the Monitor finds the node unreachable over a connection
      # that is still up (a silent partition): nothing is sent, all is kept.
      reachable: Jido.Distributed.Monitor.status(node) != :unreachable,
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

  def handle_info(:flush_hint, %{reachable: false} = state), do: {:noreply, state}

  def handle_info(:flush_hint, state) do
    case LinkPolicy.on_hint(
           now_us(),
           state.last_flush,
           state.linger_us,
           state.linger_timer != nil
         ) do
      :flush ->
        {:noreply, do_flush(state, :idle)}

      :keep_waiting ->
        {:noreply, state}

      {:linger, wait} ->
        {:noreply, %{state | linger_timer: Process.send_after(self(), :linger, wait)}}
    end
  end

  def handle_info(:flush_full, state), do: {:noreply, do_flush(state, :size)}

  def handle_info({:distance_class, node, class}, %{node: node} = state) do
    size = Optimizer.batch_size(class, Options.get(:batch_sizes))
    LinkRow.put_batch_size(state.flags, size)
    {:noreply, %{state | batch_size: size}}
  end

  def handle_info(:linger, state),
    do: {:noreply, do_flush(%{state | linger_timer: nil}, :timeout)}

  def handle_info(msg, state) when is_ack_message(msg) do
    case Wire.parse_ack(msg) do
      {:ok, %{epoch: epoch} = ack} when epoch == state.epoch -> {:noreply, on_ack(state, ack)}
      # An ack of a previous buffer (this node restarted since): stale.
      {:ok, _stale} -> {:noreply, state}
      :error -> {:noreply, malformed(state, msg)}
    end
  end

  def handle_info(:check, state) do
    state = %{state | check_timer: nil}
    %{unacked_frames: unacked} = LinkBuffer.stats(state.buffer)
    now = now_ms()

    state =
      if LinkPolicy.retransmit_due?(
           unacked,
           state.connected and state.reachable,
           now,
           state.last_progress,
           state.retransmit_ms
         ),
         do: retransmit(%{state | last_progress: now}, :timeout),
         else: state

    {:noreply, arm_check(state)}
  end

  def handle_info({:nodeup, node}, %{node: node} = state) do
    state = %{state | connected: true}
    learn_batch_size(state)
    {:noreply, resume(state)}
  end

  def handle_info({:reachability, node, reachable?}, %{node: node} = state)
      when is_boolean(reachable?) do
    state = %{state | reachable: reachable?}
    {:noreply, if(reachable?, do: resume(state), else: state)}
  end

  def handle_info({:nodedown, node}, %{node: node} = state) do
    {:noreply, schedule_reconnect(%{state | connected: false})}
  end

  def handle_info(:reconnect, state) do
    state = %{state | reconnect_timer: nil}
    connected = state.node in Node.list([:visible, :hidden])

    case LinkPolicy.on_reconnect(connected, holds_data?(state)) do
      :resume ->
        {:noreply, resume(%{state | connected: true})}

      :connect ->
        # Connecting can block for the whole setup time on a dead network:
        # never block the Link on it, and never start a second attempt
        # while one is under way.
        NodeCheck.connect(state.node, :unbounded)
        {:noreply, schedule_reconnect(state)}

      :idle ->
        # Nothing to deliver: wait for the next signal or a nodeup.
        {:noreply, state}
    end
  end

  def handle_info(msg, state) do
    Logger.debug("#{inspect(__MODULE__)} ignoring #{inspect(msg)}")
    {:noreply, state}
  end

  ## Internals

  defp on_ack(state, %{upto: upto, gap?: gap?}) do
    {released, _base} = LinkBuffer.ack(state.buffer, upto)
    :counters.add(state.counters, LinkRow.counter(:acks), 1)
    state = if released > 0, do: %{state | last_progress: now_ms()}, else: state
    Telemetry.emit([:link, :ack], %{signals: released}, %{node: state.node, seq: upto})
    if gap?, do: retransmit_after_gap(state, upto), else: state
  end

  # Acks come from other nodes: a malformed one is counted with the
  # Receiver's malformed messages, never a crash.
  defp malformed(state, msg) do
    Inbound.count(LinkStore.inbound(), :malformed)
    Logger.warning("#{inspect(__MODULE__)} dropped a malformed ack: #{inspect(msg, limit: 5)}")
    Telemetry.emit([:receiver, :malformed], %{count: 1}, %{reason: :bad_message})
    state
  end

  # After (re)connecting: everything unacked again, then whatever is pending.
  defp resume(%{connected: false} = state), do: schedule_reconnect(state)
  defp resume(%{reachable: false} = state), do: state

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
  defp do_flush(%{reachable: false} = state, _trigger), do: state

  defp do_flush(state, trigger) do
    if state.linger_timer, do: Process.cancel_timer(state.linger_timer)
    # Clear the wake-up flag before draining: a push after this point sends
    # a new hint, so nothing pushed is left waiting.
    LinkRow.clear_wake(state.flags)
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
        :counters.add(c, LinkRow.counter(:frames), 1)
        :counters.add(c, LinkRow.counter(:raw_bytes), taken.raw_bytes)
        :counters.add(c, LinkRow.counter(:wire_bytes), byte_size(taken.frame))

        drain(
          state,
          pending_bytes - taken.raw_bytes,
          {frames + 1, signals + taken.entries, raw + taken.raw_bytes,
           wire + byte_size(taken.frame)}
        )
    end
  end

  defp send_frame(state, seq, base, frame, atoms),
    do: Wire.send_frame(Receiver, state.node, self(), state.epoch, seq, base, frame, atoms)

  defp retransmit(%{connected: false} = state, _why), do: state
  defp retransmit(%{reachable: false} = state, _why), do: state

  defp retransmit(state, why) do
    case LinkBuffer.unacked(state.buffer) do
      [] ->
        state

      frames ->
        %{base_seq: base} = LinkBuffer.stats(state.buffer)

        Enum.each(frames, fn {seq, frame, atoms} -> send_frame(state, seq, base, frame, atoms) end)

        :counters.add(state.counters, LinkRow.counter(:retransmits), length(frames))

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
    case LinkPolicy.gap_retransmit(upto, now_ms(), state.last_gap) do
      {true, last_gap} -> retransmit(%{state | last_gap: last_gap}, :gap)
      false -> state
    end
  end

  defp arm_check(%{check_timer: nil} = state) do
    %{unacked_frames: unacked} = LinkBuffer.stats(state.buffer)

    case LinkPolicy.check_interval(unacked, state.retransmit_ms) do
      nil -> state
      interval -> %{state | check_timer: Process.send_after(self(), :check, interval)}
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

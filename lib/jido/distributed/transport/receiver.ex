defmodule Jido.Distributed.Transport.Receiver do
  @moduledoc """
  One per node, registered under this module's name: receives frames from
  other nodes' Links, delivers their signals once and in order, and acks
  straight to the Link that sent them (the frame carries its pid; see
  `Jido.Distributed.Transport.Wire` for both messages). It only receives:
  it never sends frames nor relays acks.

  Sequencing and delivery happen in `Jido.Distributed.Transport.Inbound`,
  whose state (per origin node: sender epoch, last frame delivered, entries
  delivered of a frame cut short; and the counters) lives in NIF memory
  owned by `Jido.Distributed.Transport.LinkStore`. Each frame is decoded,
  its entries sent and the progress recorded in one NIF call, so a
  Receiver killed at any instant forgets nothing and repeats nothing:

    * a frame already delivered is a duplicate: dropped, re-acked;
    * the next frame is delivered, from its first entry not yet delivered
      (large frames on a dirty CPU scheduler);
    * a frame beyond the next means frames were lost in flight: it is
      dropped and a gap ack asks the sender to resend;
    * a frame whose `base` is above the next one tells that the sender
      dropped older frames (buffer overflow under `:drop_oldest`); they are
      skipped and counted;
    * a new epoch means the sender's buffer is new (its node restarted):
      the sequence starts again from the frame's base.

  Acks are cumulative and batched: one per origin per `ack_delay_ms`, or at
  once after `ack_every` frames. Anything malformed (a message of the wrong
  shape, a frame that does not decode, an entry that is not
  `{destination, message}`) is counted and logged, never a crash. An ack
  to a Link that has restarted meanwhile is lost; the new Link sends its
  unacked frames again at start, and their acks go to it.

  The session of an origin that went down is forgotten after
  `session_grace_ms` if the origin had confirmed (by the `base` of its
  frames) every frame delivered, else after `session_ttl_ms`: forgetting
  earlier could deliver again a frame whose ack the origin never got.
  """
  use GenServer

  require Logger

  alias Jido.Distributed.{Frame, Options}
  alias Jido.Distributed.Telemetry
  alias Jido.Distributed.Transport.{Inbound, LinkStore, Wire}

  # How often (1 ms apart) a frame is tried again while a killed
  # Receiver's delivery still holds the origin's lock.
  @busy_retries 2_000

  @doc "Starts the Receiver, registered under the module name."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  Receiver counters (frames, signals, duplicates, gaps, skipped, malformed,
  undeliverable, acks_sent) and per-origin sessions. Both survive Receiver
  restarts.
  """
  @spec stats() :: %{
          counters: %{atom() => non_neg_integer()},
          origins: %{node() => %{epoch: pos_integer(), delivered: non_neg_integer()}}
        }
  def stats do
    store = LinkStore.inbound()
    %{counters: Inbound.counters(store), origins: Inbound.sessions(store)}
  end

  @impl true
  def init(_opts) do
    :ok = :net_kernel.monitor_nodes(true, node_type: :all)
    store = LinkStore.inbound()
    opts = Options.get(:receiver)

    # Origins that went down while no Receiver ran start their grace now.
    connected = Node.list([:visible, :hidden])

    for origin <- Map.keys(Inbound.sessions(store)),
        origin not in connected,
        do: Inbound.mark(store, origin, :down, now_ms())

    {:ok,
     %{
       store: store,
       max_frame_size: Options.get(:max_frame_size),
       ack_delay_ms: opts[:ack_delay_ms],
       ack_every: opts[:ack_every],
       session_grace_ms: opts[:session_grace_ms],
       session_ttl_ms: opts[:session_ttl_ms],
       # origin => {epoch, frames since last ack, gap?, link to ack}
       unacked: %{},
       ack_timer: nil,
       last_gap: %{}
     }, {:continue, :expire}}
  end

  @impl true
  def handle_continue(:expire, state), do: {:noreply, expire_sessions(state)}

  @impl true
  def handle_info(:send_acks, state), do: {:noreply, send_acks(%{state | ack_timer: nil})}

  def handle_info(:expire_sessions, state), do: {:noreply, expire_sessions(state)}

  def handle_info({:nodedown, node, _info}, state) do
    Inbound.mark(state.store, node, :down, now_ms())
    {:noreply, state}
  end

  def handle_info({:nodeup, node, _info}, state) do
    Inbound.mark(state.store, node, :up, now_ms())
    {:noreply, state}
  end

  def handle_info(msg, state) do
    case Wire.parse_frame(msg) do
      {:ok, header, frame} -> {:noreply, receive_frame(state, header, frame, @busy_retries)}
      :error -> {:noreply, malformed(state, msg)}
    end
  end

  defp malformed(state, other) do
    Inbound.count(state.store, :malformed)

    Logger.warning(
      "#{inspect(__MODULE__)} dropped a malformed message: #{inspect(other, limit: 5)}"
    )

    Telemetry.emit([:receiver, :malformed], %{count: 1}, %{reason: :bad_message})
    state
  end

  defp receive_frame(state, header, frame, retries) do
    %{origin: origin, seq: seq} = header

    case Inbound.deliver(state.store, header, frame, state.max_frame_size) do
      {:ok, _delivered} ->
        count_traffic(origin, frame)
        schedule_ack(state, header, false)

      {:duplicate, _delivered} ->
        schedule_ack(state, header, false)

      {:gap, delivered} ->
        gap_ack(state, header, delivered)

      {:busy, _} when retries > 0 ->
        # A delivery started by a Receiver that was killed meanwhile still
        # runs on a dirty scheduler and holds the origin's lock.
        Process.sleep(1)
        receive_frame(state, header, frame, retries - 1)

      {:busy, _} ->
        # Dropped unacked: the Link sends it again.
        state

      {:error, reason} ->
        Logger.error("#{inspect(__MODULE__)} frame #{seq} from #{origin} is malformed: #{reason}")
        Telemetry.emit([:receiver, :malformed], %{count: 1}, %{origin: origin, reason: reason})
        state
    end
  end

  # Per origin, for rates (see `Jido.Distributed.Monitor.traffic/0`).
  defp count_traffic(origin, frame) do
    signals =
      case Frame.header(frame) do
        {:ok, %{count: count}} -> count
        _ -> 0
      end

    :ets.update_counter(
      LinkStore.traffic_table(),
      origin,
      [{2, signals}, {3, byte_size(frame)}, {4, 1}],
      {origin, 0, 0, 0}
    )
  end

  @doc """
  What arrived from each origin node since this node started:
  `%{origin => %{signals: n, wire_bytes: n, frames: n}}`.
  """
  @spec traffic() :: %{
          node() => %{
            signals: non_neg_integer(),
            wire_bytes: non_neg_integer(),
            frames: non_neg_integer()
          }
        }
  def traffic do
    Map.new(:ets.tab2list(LinkStore.traffic_table()), fn {origin, signals, bytes, frames} ->
      {origin, %{signals: signals, wire_bytes: bytes, frames: frames}}
    end)
  end

  defp expire_sessions(state) do
    Inbound.expire(state.store, now_ms(), state.session_grace_ms, state.session_ttl_ms)
    interval = state.session_grace_ms |> div(4) |> max(100) |> min(60_000)
    Process.send_after(self(), :expire_sessions, interval)
    state
  end

  # Milliseconds since this VM started: never negative, unlike monotonic time.
  defp now_ms do
    start = System.convert_time_unit(:erlang.system_info(:start_time), :native, :millisecond)
    System.monotonic_time(:millisecond) - start
  end

  defp schedule_ack(state, %{origin: origin, epoch: epoch, link: link}, gap?) do
    frames =
      case state.unacked do
        %{^origin => {^epoch, n, _, _}} -> n + 1
        _ -> 1
      end

    state = %{state | unacked: Map.put(state.unacked, origin, {epoch, frames, gap?, link})}

    cond do
      frames >= state.ack_every or state.ack_delay_ms == 0 -> send_ack(state, origin)
      state.ack_timer -> state
      true -> %{state | ack_timer: Process.send_after(self(), :send_acks, state.ack_delay_ms)}
    end
  end

  # Gap acks go at once, but once per gap position per 50 ms.
  defp gap_ack(state, %{origin: origin, epoch: epoch, link: link}, delivered) do
    now = System.monotonic_time(:millisecond)

    case state.last_gap do
      %{^origin => {^delivered, at}} when now - at < 50 ->
        state

      _ ->
        state = %{state | last_gap: Map.put(state.last_gap, origin, {delivered, now})}
        state = %{state | unacked: Map.put(state.unacked, origin, {epoch, 0, true, link})}
        send_ack(state, origin)
    end
  end

  defp send_acks(state) do
    Enum.reduce(Map.keys(state.unacked), state, &send_ack(&2, &1))
  end

  defp send_ack(state, origin) do
    {epoch, _frames, gap?, link} = Map.fetch!(state.unacked, origin)

    delivered = Inbound.delivered(state.store, origin, epoch)
    Wire.send_ack(link, epoch, delivered, gap?)
    Inbound.count(state.store, :acks_sent)
    %{state | unacked: Map.delete(state.unacked, origin)}
  end
end

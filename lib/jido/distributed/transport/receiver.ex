defmodule Jido.Distributed.Transport.Receiver do
  @moduledoc """
  One per node, registered under this module's name: receives frames from
  other nodes' Links, delivers their signals once and in order, and acks.

  For each origin node it keeps `{epoch, delivered}` (in an ETS table owned
  by `Jido.Distributed.Transport.LinkStore`, so a Receiver crash forgets
  nothing):

    * a frame at or below `delivered` is a duplicate: dropped, re-acked;
    * the next frame is decoded (on a dirty scheduler when large) and each
      entry `{destination, message}` is sent to its local destination;
    * a frame beyond the next means frames were lost in flight: it is
      dropped and a gap ack asks the sender to resend;
    * a frame whose `base` is above `delivered + 1` tells that the sender
      dropped older frames (buffer overflow under `:drop_oldest`); they are
      skipped and counted;
    * a new epoch means the sender's buffer is new (its node restarted):
      the sequence starts again from the frame's base.

  Acks are cumulative and batched: one per origin per `ack_delay_ms`, or at
  once after `ack_every` frames. Anything malformed (a message of the wrong
  shape, a frame that does not decode, an entry that is not
  `{destination, message}`) is counted and logged, never a crash.
  """
  use GenServer

  require Logger

  alias Jido.Distributed.Counters
  alias Jido.Distributed.Frame
  alias Jido.Distributed.Options
  alias Jido.Distributed.Telemetry
  alias Jido.Distributed.Transport.LinkStore

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

  @doc "Starts the Receiver, registered under the module name."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  Receiver counters (frames, signals, duplicates, gaps, skipped, malformed,
  undeliverable, acks_sent) and per-origin sessions.
  """
  @spec stats() :: %{
          counters: %{atom() => non_neg_integer()},
          origins: %{node() => %{epoch: pos_integer(), delivered: non_neg_integer()}}
        }
  def stats do
    counters = :persistent_term.get({__MODULE__, :counters}, nil)

    %{
      counters: Counters.read(counters, @counter_names),
      origins:
        Map.new(:ets.tab2list(LinkStore.sessions_table()), fn {origin, epoch, delivered} ->
          {origin, %{epoch: epoch, delivered: delivered}}
        end)
    }
  end

  @impl true
  def init(_opts) do
    counters = Counters.new(@counter_names, [:write_concurrency])
    :persistent_term.put({__MODULE__, :counters}, counters)
    opts = Options.get(:receiver)

    {:ok,
     %{
       counters: counters,
       max_frame_size: Options.get(:max_frame_size),
       ack_delay_ms: opts[:ack_delay_ms],
       ack_every: opts[:ack_every],
       # origin => {epoch, frames since last ack, gap?}
       unacked: %{},
       ack_timer: nil,
       last_gap: %{}
     }}
  end

  @impl true
  # `_atoms` lists the atoms in the frame; receiving the message made the
  # distribution layer create them, so the safe decode below accepts them.
  def handle_info({:jido_frame, origin, epoch, seq, base, frame, _atoms}, state)
      when is_atom(origin) and is_integer(epoch) and is_integer(seq) and seq > 0 and
             is_integer(base) and base > 0 and base <= seq and is_binary(frame) do
    {:noreply, receive_frame(state, origin, epoch, seq, base, frame)}
  end

  def handle_info({:jido_ack, from, epoch, upto, gap?}, state)
      when is_atom(from) and is_integer(epoch) and is_integer(upto) and is_boolean(gap?) do
    case LinkStore.lookup(from) do
      {_, _, _, _, _, pid} when is_pid(pid) -> send(pid, {:ack, epoch, upto, gap?})
      _ -> :ok
    end

    {:noreply, state}
  end

  def handle_info(:send_acks, state), do: {:noreply, send_acks(%{state | ack_timer: nil})}

  def handle_info(other, state) do
    count(state, :malformed)

    Logger.warning(
      "#{inspect(__MODULE__)} dropped a malformed message: #{inspect(other, limit: 5)}"
    )

    Telemetry.emit([:receiver, :malformed], %{count: 1}, %{reason: :bad_message})
    {:noreply, state}
  end

  defp receive_frame(state, origin, epoch, seq, base, frame) do
    delivered =
      case :ets.lookup(LinkStore.sessions_table(), origin) do
        [{^origin, ^epoch, delivered}] -> delivered
        _ -> base - 1
      end

    delivered =
      if base - 1 > delivered do
        count(state, :skipped, base - 1 - delivered)
        base - 1
      else
        delivered
      end

    cond do
      seq <= delivered ->
        count(state, :duplicates)
        store(origin, epoch, delivered)
        schedule_ack(state, origin, epoch, false)

      seq == delivered + 1 ->
        case Frame.decode(frame, max_decoded_size: state.max_frame_size) do
          {:ok, entries} ->
            deliver(state, entries)
            count(state, :frames)
            store(origin, epoch, seq)
            schedule_ack(state, origin, epoch, false)

          {:error, reason} ->
            count(state, :malformed)

            Logger.error(
              "#{inspect(__MODULE__)} frame #{seq} from #{origin} is malformed: #{reason}"
            )

            Telemetry.emit([:receiver, :malformed], %{count: 1}, %{origin: origin, reason: reason})

            state
        end

      true ->
        count(state, :gaps)
        gap_ack(state, origin, epoch, delivered)
    end
  end

  defp store(origin, epoch, delivered),
    do: :ets.insert(LinkStore.sessions_table(), {origin, epoch, delivered})

  defp deliver(state, entries) do
    {signals, undeliverable} =
      Enum.reduce(entries, {0, 0}, fn
        {dest, message}, {ok, bad} when is_pid(dest) ->
          send(dest, message)
          {ok + 1, bad}

        {dest, message}, {ok, bad} when is_atom(dest) ->
          if Process.whereis(dest) do
            send(dest, message)
            {ok + 1, bad}
          else
            {ok, bad + 1}
          end

        _malformed, {ok, bad} ->
          count(state, :malformed)
          {ok, bad}
      end)

    count(state, :signals, signals)
    if undeliverable > 0, do: count(state, :undeliverable, undeliverable)
  end

  defp schedule_ack(state, origin, epoch, gap?) do
    frames =
      case state.unacked do
        %{^origin => {^epoch, n, _}} -> n + 1
        _ -> 1
      end

    state = %{state | unacked: Map.put(state.unacked, origin, {epoch, frames, gap?})}

    cond do
      frames >= state.ack_every or state.ack_delay_ms == 0 -> send_ack(state, origin)
      state.ack_timer -> state
      true -> %{state | ack_timer: Process.send_after(self(), :send_acks, state.ack_delay_ms)}
    end
  end

  # Gap acks go at once, but once per gap position per 50 ms.
  defp gap_ack(state, origin, epoch, delivered) do
    now = System.monotonic_time(:millisecond)

    case state.last_gap do
      %{^origin => {^delivered, at}} when now - at < 50 ->
        state

      _ ->
        state = %{state | last_gap: Map.put(state.last_gap, origin, {delivered, now})}
        state = %{state | unacked: Map.put(state.unacked, origin, {epoch, 0, true})}
        send_ack(state, origin)
    end
  end

  defp send_acks(state) do
    Enum.reduce(Map.keys(state.unacked), state, &send_ack(&2, &1))
  end

  defp send_ack(state, origin) do
    {epoch, _frames, gap?} = Map.fetch!(state.unacked, origin)

    delivered =
      case :ets.lookup(LinkStore.sessions_table(), origin) do
        [{^origin, ^epoch, delivered}] -> delivered
        _ -> 0
      end

    :erlang.send({__MODULE__, origin}, {:jido_ack, node(), epoch, delivered, gap?}, [:noconnect])
    count(state, :acks_sent)
    %{state | unacked: Map.delete(state.unacked, origin)}
  end

  defp count(state, name, n \\ 1), do: :counters.add(state.counters, index(name), n)

  for {name, index} <- Enum.with_index(@counter_names, 1) do
    defp index(unquote(name)), do: unquote(index)
  end
end

defmodule Jido.Distributed.Test.Chaos.Sender do
  @moduledoc """
  A paced sender for the chaos run; runs on a testbed peer.

  It sends `count` signals round-robin over `targets`, at `rate` per second
  from its start (when it falls behind, it catches up as fast as the library
  lets it), through `Jido.Distributed.send/3` (`mode: :send`) or in batches
  through `Jido.Distributed.dispatch/2` (`mode: :dispatch`). Each target gets
  its own sequence `1, 2, 3, ...`: signal data is `%{sender: id, target: i,
  seq: n}`. A signal refused (`{:error, reason}`, for example
  `:buffer_full`) is retried after 5 ms until accepted, before any later
  signal, so the accepted signals of each (sender, target) pair are exactly
  `1..n` in order. It records the OS time (ms) each signal was accepted.
  """

  @typedoc "What `report/1` returns."
  @type report :: %{
          id: term(),
          done: boolean(),
          accepted: %{non_neg_integer() => [integer()]},
          retries: %{term() => non_neg_integer()}
        }

  @doc """
  Starts a sender (not linked) and returns its pid.

  `targets` are `Jido.Distributed.target()`s, indexed from 0 in the data.

  ## Options

    * `:count` (required), `:rate` (required, signals per second);
    * `:mode` - `:send` (default) or `:dispatch`;
    * `:batch` - signals per `dispatch/2` call (default 8);
    * `:pad` - bytes of padding per signal (default 200).
  """
  @spec start(term(), [Jido.Distributed.target()], keyword()) :: pid()
  def start(id, targets, opts) do
    spawn(fn -> run(id, List.to_tuple(targets), opts) end)
  end

  @doc "What a sender accepted so far, with the accept times (see the module doc)."
  @spec report(pid(), timeout()) :: report()
  def report(pid, timeout \\ 30_000), do: ask(pid, :report, timeout)

  @doc "Whether a sender is done and how many signals it had accepted; cheap to ask often."
  @spec progress(pid(), timeout()) :: %{done: boolean(), accepted: non_neg_integer()}
  def progress(pid, timeout \\ 30_000), do: ask(pid, :progress, timeout)

  defp ask(pid, what, timeout) do
    ref = make_ref()
    send(pid, {what, self(), ref})

    receive do
      {^ref, answer} -> answer
    after
      timeout -> raise "chaos sender #{inspect(pid)} did not answer"
    end
  end

  defp run(id, targets, opts) do
    count = Keyword.fetch!(opts, :count)
    rate = Keyword.fetch!(opts, :rate)

    batch =
      if Keyword.get(opts, :mode, :send) == :dispatch, do: Keyword.get(opts, :batch, 8), else: 1

    state = %{
      id: id,
      targets: targets,
      mode: Keyword.get(opts, :mode, :send),
      pad: String.duplicate("x", Keyword.get(opts, :pad, 200)),
      start: System.monotonic_time(:microsecond),
      us_per_signal: 1_000_000 / rate,
      seqs: %{},
      accepted: %{},
      retries: %{}
    }

    state =
      0..(count - 1)
      |> Stream.chunk_every(batch)
      |> Enum.reduce(state, fn indexes, state ->
        pace(state, hd(indexes))
        state = answer(state, false)
        send_batch(state, indexes)
      end)

    idle(state)
  end

  defp pace(state, i) do
    due = state.start + round(i * state.us_per_signal)
    wait = div(due - System.monotonic_time(:microsecond), 1_000)
    if wait > 0, do: Process.sleep(wait)
  end

  defp send_batch(state, indexes) do
    size = tuple_size(state.targets)

    {entries, seqs} =
      Enum.map_reduce(indexes, state.seqs, fn i, seqs ->
        t = rem(i, size)
        seq = Map.get(seqs, t, 0) + 1

        signal = %{
          id: "#{inspect(state.id)}-#{t}-#{seq}",
          type: "chaos.signal",
          source: "/chaos/#{inspect(state.id)}",
          data: %{sender: state.id, target: t, seq: seq, pad: state.pad}
        }

        {{t, signal}, Map.put(seqs, t, seq)}
      end)

    state = deliver(%{state | seqs: seqs}, entries)
    now = :os.system_time(:millisecond)

    accepted =
      Enum.reduce(entries, state.accepted, fn {t, _}, acc ->
        Map.update(acc, t, [now], &[now | &1])
      end)

    %{state | accepted: accepted}
  end

  # Returns once every entry was accepted.
  defp deliver(state, []), do: state

  defp deliver(%{mode: :send} = state, [{t, signal}]) do
    case Jido.Distributed.send(elem(state.targets, t), signal) do
      :ok -> state
      {:error, reason} -> state |> retry(reason) |> deliver([{t, signal}])
    end
  end

  defp deliver(%{mode: :dispatch} = state, entries) do
    case Jido.Distributed.dispatch(
           Enum.map(entries, fn {t, s} -> {elem(state.targets, t), s} end)
         ) do
      :ok ->
        state

      {:error, failures} ->
        failed = Map.new(failures)
        # All-or-none per node: retry exactly the entries of the nodes that refused.
        again =
          Enum.filter(entries, fn {t, _} ->
            Map.has_key?(failed, target_key(elem(state.targets, t)))
          end)

        if again == [], do: raise("dispatch refused for good: #{inspect(failures)}")
        state |> retry(failures |> hd() |> elem(1)) |> deliver(again)
    end
  end

  defp target_key(pid) when is_pid(pid), do: node(pid)
  defp target_key({_name, node}), do: node

  defp retry(state, reason) do
    Process.sleep(5)
    state = answer(state, false)
    %{state | retries: Map.update(state.retries, reason, 1, &(&1 + 1))}
  end

  defp answer(state, done) do
    receive do
      {what, from, ref} when what in [:report, :progress] ->
        send(from, {ref, summary(what, state, done)})
        answer(state, done)
    after
      0 -> state
    end
  end

  defp idle(state) do
    receive do
      {what, from, ref} when what in [:report, :progress] ->
        send(from, {ref, summary(what, state, true)})
        idle(state)

      :stop ->
        :ok
    end
  end

  defp summary(:progress, state, done),
    do: %{done: done, accepted: state.seqs |> Map.values() |> Enum.sum()}

  defp summary(:report, state, done) do
    %{
      id: state.id,
      done: done,
      accepted: Map.new(state.accepted, fn {t, times} -> {t, Enum.reverse(times)} end),
      retries: state.retries
    }
  end
end

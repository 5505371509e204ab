defmodule Jido.Distributed.Test.Load do
  @moduledoc """
  Sender processes for delivery tests and benchmarks: run on any node, send
  numbered signals through `Jido.Distributed.send/3` round-robin over
  targets, and report back.
  """

  @doc """
  Spawns a sender on `node` that sends `count` signals (`seq` 1..count,
  `sender: sender_id`) round-robin to `targets`, pausing `pause_ms` after
  every `every` signals (0 = never), retrying a signal refused with
  `:buffer_full`. Sends `{:sender_done, sender_id, %{ok: n, retries: r}}` to
  `reply_to` at the end.
  """
  @spec spawn_sender(node(), [Jido.Distributed.target()], term(), pos_integer(), pid(), keyword()) ::
          pid()
  def spawn_sender(node, targets, sender_id, count, reply_to, opts \\ []) do
    Node.spawn_link(node, __MODULE__, :run_sender, [targets, sender_id, count, reply_to, opts])
  end

  @doc false
  def run_sender(targets, sender_id, count, reply_to, opts) do
    every = Keyword.get(opts, :every, 0)
    pause = Keyword.get(opts, :pause_ms, 0)
    pad = String.duplicate("x", Keyword.get(opts, :pad, 64))
    targets = List.to_tuple(targets)
    size = tuple_size(targets)

    retries =
      Enum.reduce(1..count, 0, fn seq, retries ->
        if every > 0 and rem(seq, every) == 0, do: Process.sleep(pause)
        target = elem(targets, rem(seq, size))

        signal = %{
          id: "#{inspect(sender_id)}-#{seq}",
          type: "test.load.signal",
          data: %{sender: sender_id, seq: seq, pad: pad}
        }

        retries + send_with_retry(target, signal, 0)
      end)

    send(reply_to, {:sender_done, sender_id, %{ok: count, retries: retries}})
  end

  defp send_with_retry(target, signal, retries) do
    case Jido.Distributed.send(target, signal) do
      :ok ->
        retries

      {:error, :buffer_full} ->
        Process.sleep(5)
        send_with_retry(target, signal, retries + 1)
    end
  end
end

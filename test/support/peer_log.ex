defmodule Jido.Distributed.Test.PeerLog do
  @moduledoc """
  Turns what a peer node prints into Logger events on the calling node.

  A `:peer` node controlled over `:standard_io` prints its output (its log
  lines included) through the `:peer` control process, which writes it to its
  group leader. `Jido.Distributed.Test.Cluster` makes one of these processes
  that group leader: a minimal IO server that logs each chunk it is given
  with `Logger`, prefixed with the peer's node name, at the level found in the
  text (`[error]`, `=WARNING REPORT`, ...; `:info` otherwise).

  So peer output obeys the calling node's Logger configuration; in tests run
  with `capture_log: true` it is shown only for failing tests. The process is
  not linked to anything and exits when the `:peer` control process does.
  """
  require Logger

  @levels ~w(emergency alert critical error warning notice info debug)

  @doc "Starts the IO server for the `:peer` control process `peer` of `node`."
  @spec start(pid(), node()) :: pid()
  def start(peer, node) when is_pid(peer) and is_atom(node) do
    spawn(fn ->
      ref = Process.monitor(peer)
      loop(ref, node)
    end)
  end

  defp loop(ref, node) do
    receive do
      {:io_request, from, reply_as, request} ->
        send(from, {:io_reply, reply_as, handle(request, node)})
        loop(ref, node)

      {:DOWN, ^ref, :process, _, _} ->
        :ok

      _ ->
        loop(ref, node)
    end
  end

  defp handle({:put_chars, encoding, chars}, node), do: log(to_text(chars, encoding), node)

  defp handle({:put_chars, encoding, m, f, a}, node),
    do: log(to_text(apply(m, f, a), encoding), node)

  defp handle({:requests, requests}, node) do
    Enum.reduce_while(requests, :ok, fn request, _ ->
      case handle(request, node) do
        :ok -> {:cont, :ok}
        error -> {:halt, error}
      end
    end)
  end

  # The peer's own IO setup (Elixir sets its standard_io to binary/unicode).
  defp handle({:setopts, _opts}, _node), do: :ok
  defp handle(:getopts, _node), do: [binary: true, encoding: :unicode]

  # Nothing to read.
  defp handle(request, _node) when elem(request, 0) in [:get_chars, :get_line, :get_until],
    do: :eof

  defp handle(_request, _node), do: {:error, :enotsup}

  defp to_text(chars, :latin1), do: :unicode.characters_to_binary(chars, :latin1)
  defp to_text(chars, _unicode), do: :unicode.characters_to_binary(chars)

  defp log(text, node) when is_binary(text) do
    case String.trim(text) do
      "" -> :ok
      trimmed -> Logger.log(level(trimmed), "[#{node}] " <> trimmed)
    end
  end

  defp log(_invalid, _node), do: :ok

  defp level(text) do
    case Regex.run(~r/\[(\w+)\]|=(\w+) REPORT/, text, capture: :all_but_first) do
      nil -> :info
      groups -> groups |> Enum.find(&(&1 != "")) |> String.downcase() |> to_level()
    end
  end

  defp to_level("warn"), do: :warning
  defp to_level(level) when level in @levels, do: String.to_existing_atom(level)
  defp to_level(_), do: :info
end

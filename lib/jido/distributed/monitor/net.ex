defmodule Jido.Distributed.Monitor.Net do
  @moduledoc """
  The Monitor's sockets and addresses: its UDP heartbeat socket, a peer's
  address (the far end of this node's distribution connection to it), and
  the socket's counters.
  """

  require Logger

  @doc """
  Opens the heartbeat socket on `port` (`0`: any free port); returns
  `{socket, port}`, or `{nil, 0}` when it cannot (the port taken, sockets
  refused). The Monitor then works over distribution beats only: it must
  never keep the application from starting.
  """
  @spec open_socket(:inet.port_number()) :: {port() | nil, :inet.port_number()}
  def open_socket(port) do
    with {:ok, socket} <- :gen_udp.open(port, [:binary, active: 100]),
         {:ok, bound} <- :inet.port(socket) do
      {socket, bound}
    else
      {:error, reason} ->
        Logger.error(
          "Jido.Distributed.Monitor cannot open its UDP heartbeat socket on port #{port} " <>
            "(#{inspect(reason)}): heartbeats go over distribution only"
        )

        {nil, 0}
    end
  end

  @doc "The IP address of `node`, as this node's distribution connection to it sees it."
  @spec peer_ip(node()) :: {:ok, :inet.ip_address()} | :error
  def peer_ip(node) do
    with {_, ctrl} when is_port(ctrl) <- List.keyfind(:erlang.system_info(:dist_ctrl), node, 0),
         {:ok, {ip, _port}} <- :inet.peername(ctrl) do
      {:ok, ip}
    else
      _ -> :error
    end
  end

  @doc "Bytes and packets the heartbeat socket sent and received (`%{}` without one)."
  @spec udp_stats(port() | nil) :: map()
  def udp_stats(nil), do: %{}

  def udp_stats(socket) do
    case :inet.getstat(socket, [:send_oct, :send_cnt, :recv_oct, :recv_cnt]) do
      {:ok, stats} -> Map.new(stats)
      _ -> %{}
    end
  end
end

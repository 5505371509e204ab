defmodule Jido.Distributed.Test.Testbed.Probe do
  @moduledoc """
  Raw traffic between testbed hosts, to check the testbed itself: UDP
  datagrams (which arrive or not, with no connection state to hide a drop)
  and a TCP stream for bandwidth. Every function runs on a peer (through
  `Jido.Distributed.Test.Testbed.call/6`); the processes it starts are not
  linked, so they outlive the call that started them.
  """

  @doc """
  Opens a UDP socket on `address` (a string) owned by a counting process.
  Returns `{pid, port}`; `udp_received/1` tells how many datagrams arrived.
  """
  @spec udp_listen(String.t()) :: {pid(), :inet.port_number()}
  def udp_listen(address) do
    start_owner(fn reply ->
      {:ok, socket} = :gen_udp.open(0, [:binary, ip: ip(address), active: true])
      {:ok, port} = :inet.port(socket)
      reply.(port)
      udp_loop(0)
    end)
  end

  defp udp_loop(count) do
    receive do
      {:udp, _socket, _ip, _port, _data} ->
        udp_loop(count + 1)

      {:count, from, ref} ->
        send(from, {ref, count})
        udp_loop(count)
    end
  end

  @doc "Datagrams received so far by a `udp_listen/1` process."
  @spec udp_received(pid()) :: non_neg_integer()
  def udp_received(pid), do: ask(pid, :count)

  @doc "Sends `count` small datagrams to `address:port` from a fresh socket."
  @spec udp_send(String.t(), :inet.port_number(), pos_integer()) :: :ok
  def udp_send(address, port, count) do
    {:ok, socket} = :gen_udp.open(0, [:binary])

    for i <- 1..count do
      :ok = :gen_udp.send(socket, ip(address), port, <<i::32, 0::size(64 * 8)>>)
      Process.sleep(2)
    end

    :gen_udp.close(socket)
  end

  @doc """
  Listens for one TCP connection on `address` and counts the bytes it
  receives, remembering the time of each chunk. Returns `{pid, port}`;
  `tcp_rate/2` reads the rate.
  """
  @spec tcp_sink(String.t()) :: {pid(), :inet.port_number()}
  def tcp_sink(address) do
    start_owner(fn reply ->
      {:ok, listen} =
        :gen_tcp.listen(0, [:binary, ip: ip(address), active: false, reuseaddr: true])

      {:ok, port} = :inet.port(listen)
      reply.(port)
      {:ok, socket} = :gen_tcp.accept(listen)
      :ok = :inet.setopts(socket, active: true)
      sink_loop([])
    end)
  end

  defp sink_loop(chunks) do
    receive do
      {:tcp, _socket, data} ->
        sink_loop([{System.monotonic_time(:microsecond), byte_size(data)} | chunks])

      {:tcp_closed, _socket} ->
        sink_loop(chunks)

      {:chunks, from, ref} ->
        send(from, {ref, Enum.reverse(chunks)})
        sink_loop(chunks)
    end
  end

  @doc """
  Mbit/s received by a `tcp_sink/1` between `skip_ms` after its first byte
  and its last byte (skipping TCP's slow start and the first burst of the
  token bucket). `nil` when nothing came after `skip_ms`.
  """
  @spec tcp_rate(pid(), non_neg_integer()) :: float() | nil
  def tcp_rate(pid, skip_ms) do
    case ask(pid, :chunks) do
      [] ->
        nil

      [{first, _} | _] = chunks ->
        case Enum.filter(chunks, fn {t, _} -> t >= first + skip_ms * 1_000 end) do
          [] ->
            nil

          [{from, _} | _] = window ->
            {to, _} = List.last(window)
            # Bytes that arrived after `from` (the first chunk only opens the window).
            bytes = window |> tl() |> Enum.map(&elem(&1, 1)) |> Enum.sum()
            if to > from, do: bytes * 8 / (to - from), else: nil
        end
    end
  end

  @doc "Connects to `address:port` and writes as fast as it can for `ms` milliseconds."
  @spec tcp_blast(String.t(), :inet.port_number(), pos_integer()) :: non_neg_integer()
  def tcp_blast(address, port, ms) do
    {:ok, socket} = :gen_tcp.connect(ip(address), port, [:binary, active: false], 5_000)
    chunk = :binary.copy(<<0>>, 64 * 1024)
    deadline = System.monotonic_time(:millisecond) + ms
    sent = blast(socket, chunk, deadline, 0)
    :gen_tcp.close(socket)
    sent
  end

  defp blast(socket, chunk, deadline, sent) do
    if System.monotonic_time(:millisecond) >= deadline do
      sent
    else
      :ok = :gen_tcp.send(socket, chunk)
      blast(socket, chunk, deadline, sent + byte_size(chunk))
    end
  end

  @doc """
  Starts a process that sends `{:probe, i}` messages carrying `bytes` of
  payload to `{name, node}` as fast as distribution takes them (max-rate
  traffic); stop it with `stop/1`.
  """
  @spec start_flood(atom(), node(), pos_integer()) :: pid()
  def start_flood(name, node, bytes) do
    payload = :binary.copy(<<0>>, bytes)
    spawn(fn -> flood({name, node}, payload, 1) end)
  end

  defp flood(dest, payload, i) do
    send(dest, {:probe, i, payload})

    receive do
      :stop -> :ok
    after
      0 -> flood(dest, payload, i + 1)
    end
  end

  @doc """
  Starts a process that keeps sending `{:probe, i}` to `{name, node}` every
  `every_ms` milliseconds (plain `send/2`, so over the distribution
  connection). Returns its pid; `stop/1` ends it.
  """
  @spec start_chatter(atom(), node(), pos_integer()) :: pid()
  def start_chatter(name, node, every_ms) do
    spawn(fn -> chatter({name, node}, every_ms, 1) end)
  end

  defp chatter(dest, every_ms, i) do
    send(dest, {:probe, i})

    receive do
      :stop -> :ok
    after
      every_ms -> chatter(dest, every_ms, i + 1)
    end
  end

  @doc "Starts a process registered as `name` that counts the messages it gets; `count/1` reads it."
  @spec start_counter(atom()) :: pid()
  def start_counter(name) do
    {pid, _} =
      start_owner(fn reply ->
        Process.register(self(), name)
        reply.(name)
        counter_loop(0)
      end)

    pid
  end

  defp counter_loop(count) do
    receive do
      {:count, from, ref} ->
        send(from, {ref, count})
        counter_loop(count)

      _ ->
        counter_loop(count + 1)
    end
  end

  @doc "Messages counted by a `start_counter/1` process."
  @spec count(pid()) :: non_neg_integer()
  def count(pid), do: ask(pid, :count)

  @doc """
  Starts a process that wakes every `every_ms` milliseconds and remembers the
  longest time between two wake-ups (`max_gap_ms/1`): a paused VM shows as a gap.
  """
  @spec start_clock(pos_integer()) :: pid()
  def start_clock(every_ms) do
    spawn(fn -> clock(every_ms, System.monotonic_time(:millisecond), 0) end)
  end

  defp clock(every_ms, last, max_gap) do
    receive do
      {:max_gap, from, ref} ->
        send(from, {ref, max_gap})
        clock(every_ms, last, max_gap)
    after
      every_ms ->
        now = System.monotonic_time(:millisecond)
        clock(every_ms, now, max(max_gap, now - last))
    end
  end

  @doc "The longest gap, in milliseconds, a `start_clock/1` process has seen."
  @spec max_gap_ms(pid()) :: non_neg_integer()
  def max_gap_ms(pid), do: ask(pid, :max_gap)

  @doc """
  Bytes and packets this node has sent on its distribution connection to
  `node`: `%{send_oct: bytes, send_cnt: packets}` (zeros when not connected).
  """
  @spec dist_sent(node()) :: %{send_oct: non_neg_integer(), send_cnt: non_neg_integer()}
  def dist_sent(node) do
    with {_, port} when is_port(port) <- List.keyfind(:erlang.system_info(:dist_ctrl), node, 0),
         {:ok, stats} <- :inet.getstat(port, [:send_oct, :send_cnt]) do
      Map.new(stats)
    else
      _ -> %{send_oct: 0, send_cnt: 0}
    end
  end

  @doc "Starts `n` processes that keep a scheduler busy until `stop/1`-ped; returns their pids."
  @spec burn_cpu(pos_integer()) :: [pid()]
  def burn_cpu(n), do: for(_ <- 1..n, do: spawn(fn -> spin(0) end))

  defp spin(i), do: spin(rem(i + 1, 1_000_000))

  @doc "Stops a process started here."
  @spec stop(pid()) :: true
  def stop(pid), do: Process.exit(pid, :kill)

  # Spawns `fun`, which must call the reply function it gets once; returns
  # {pid, replied value}.
  defp start_owner(fun) do
    parent = self()
    ref = make_ref()
    pid = spawn(fn -> fun.(fn value -> send(parent, {ref, value}) end) end)

    receive do
      {^ref, value} -> {pid, value}
    after
      5_000 -> raise "probe process did not start"
    end
  end

  defp ask(pid, what) do
    ref = make_ref()
    send(pid, {what, self(), ref})

    receive do
      {^ref, value} -> value
    after
      5_000 -> raise "probe process did not answer"
    end
  end

  defp ip(address) do
    {:ok, ip} = :inet.parse_address(String.to_charlist(address))
    ip
  end
end

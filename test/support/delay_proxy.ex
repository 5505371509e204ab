defmodule Jido.Distributed.Test.DelayProxy do
  @moduledoc """
  A user-space TCP proxy that delays every byte by a fixed time.

  Kernel `netem` is not available on the machines this project runs on, so
  `Jido.Distributed.Test.Cluster.set_latency/3` routes a distribution
  connection through one of these. The proxy listens on a local port; for each
  accepted connection it opens one connection to the target and starts two
  pipe processes, one per direction.

  Each pipe reads its source socket in active mode and puts every chunk in a
  queue stamped with the time it is due (arrival + `delay`). A timer sends
  everything that is due, in arrival order, to the other socket. Reading never
  waits for the delay, so throughput is not limited by it, only latency is
  added: `delay` in each direction, so a round trip through one proxy grows by
  about `2 * delay` (plus timer granularity, about 1 ms).

  When either side closes, the connection is torn down (queued bytes for a
  closed connection are dropped, as a real network would after a reset).
  `stop/1` closes the listening socket and every connection and returns only
  after they are closed. The proxy also stops by itself when one of the
  processes given in `:watch` exits.
  """
  use GenServer

  @typedoc "A running proxy."
  @type t :: pid()

  @typedoc "Counters: connections accepted so far and connections open now."
  @type stats :: %{accepted: non_neg_integer(), active: non_neg_integer()}

  @sock_opts [:binary, packet: :raw, active: false, nodelay: true]

  @doc """
  Starts a proxy, not linked to the caller.

  ## Options

    * `:target` (required) - `{ip, port}` to forward to.
    * `:delay_us` - delay added in each direction, in microseconds (default 0).
    * `:listen_ip` - address to listen on (default `{127, 0, 0, 1}`).
    * `:port` - port to listen on (default 0: any free port).
    * `:watch` - pids; the proxy stops when any of them exits (default `[]`).
  """
  @spec start(keyword()) :: {:ok, t()} | {:error, term()}
  def start(opts) do
    {ip, port} = Keyword.fetch!(opts, :target)

    unless is_tuple(ip) and is_integer(port) and port > 0,
      do:
        raise(ArgumentError, "the :target option must be {ip, port}, got: #{inspect({ip, port})}")

    delay = Keyword.get(opts, :delay_us, 0)

    unless is_integer(delay) and delay >= 0,
      do:
        raise(
          ArgumentError,
          "the :delay_us option must be a non-negative integer, got: #{inspect(delay)}"
        )

    GenServer.start(__MODULE__, opts)
  end

  @doc "The port the proxy listens on."
  @spec port(t()) :: :inet.port_number()
  def port(proxy), do: GenServer.call(proxy, :port)

  @doc "Changes the delay (per direction, microseconds) for all current and future traffic."
  @spec set_delay(t(), non_neg_integer()) :: :ok
  def set_delay(proxy, delay_us) when is_integer(delay_us) and delay_us >= 0,
    do: GenServer.call(proxy, {:set_delay, delay_us})

  @doc "Connections accepted so far and open now."
  @spec stats(t()) :: stats()
  def stats(proxy), do: GenServer.call(proxy, :stats)

  @doc """
  Stops the proxy and closes all its sockets before returning.

  Idempotent: stopping a proxy that is already gone returns `:ok`.
  """
  @spec stop(t()) :: :ok
  def stop(proxy) do
    GenServer.stop(proxy, :normal, 10_000)
  catch
    :exit, _ -> :ok
  end

  # --- server --------------------------------------------------------------------

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    listen_ip = Keyword.get(opts, :listen_ip, {127, 0, 0, 1})

    case :gen_tcp.listen(
           Keyword.get(opts, :port, 0),
           [ip: listen_ip, reuseaddr: true] ++ @sock_opts
         ) do
      {:ok, listen} ->
        {:ok, port} = :inet.port(listen)
        proxy = self()
        acceptor = spawn_link(fn -> accept_loop(listen, proxy, Keyword.fetch!(opts, :target)) end)
        Enum.each(Keyword.get(opts, :watch, []), &Process.monitor/1)

        {:ok,
         %{
           listen: listen,
           port: port,
           acceptor: acceptor,
           delay: Keyword.get(opts, :delay_us, 0),
           pipes: %{},
           accepted: 0
         }}

      {:error, reason} ->
        {:stop, {:listen_failed, reason}}
    end
  end

  @impl true
  def handle_call(:port, _from, state), do: {:reply, state.port, state}

  def handle_call(:stats, _from, state),
    do: {:reply, %{accepted: state.accepted, active: div(map_size(state.pipes), 2)}, state}

  def handle_call({:set_delay, delay}, _from, state) do
    Enum.each(Map.keys(state.pipes), &send(&1, {:set_delay, delay}))
    {:reply, :ok, %{state | delay: delay}}
  end

  @impl true
  def handle_info({:accepted, client, upstream}, state) do
    # Sockets arrive passive and owned by us; hand each to its reading pipe.
    there = spawn_link(fn -> pipe_start(client, upstream, state.delay) end)
    back = spawn_link(fn -> pipe_start(upstream, client, state.delay) end)

    with :ok <- :gen_tcp.controlling_process(client, there),
         :ok <- :gen_tcp.controlling_process(upstream, back) do
      send(there, {:go, back})
      send(back, {:go, there})
    else
      _ ->
        Process.exit(there, :kill)
        Process.exit(back, :kill)
        :gen_tcp.close(client)
        :gen_tcp.close(upstream)
    end

    pipes = state.pipes |> Map.put(there, true) |> Map.put(back, true)
    {:noreply, %{state | pipes: pipes, accepted: state.accepted + 1}}
  end

  def handle_info({:EXIT, pid, _reason}, %{acceptor: pid} = state),
    do: {:stop, :acceptor_down, %{state | acceptor: nil}}

  def handle_info({:EXIT, pid, _reason}, state),
    do: {:noreply, %{state | pipes: Map.delete(state.pipes, pid)}}

  def handle_info({:DOWN, _ref, :process, _pid, _reason}, state), do: {:stop, :normal, state}

  @impl true
  def terminate(_reason, state) do
    :gen_tcp.close(state.listen)

    pids =
      if state.acceptor, do: [state.acceptor | Map.keys(state.pipes)], else: Map.keys(state.pipes)

    # Wait for every pipe to be gone: their sockets close with them.
    pids
    |> Enum.map(fn pid ->
      ref = Process.monitor(pid)
      Process.exit(pid, :kill)
      ref
    end)
    |> Enum.each(fn ref ->
      receive do
        {:DOWN, ^ref, :process, _, _} -> :ok
      after
        5_000 -> :ok
      end
    end)
  end

  # --- acceptor ------------------------------------------------------------------

  defp accept_loop(listen, proxy, {ip, port} = target) do
    case :gen_tcp.accept(listen) do
      {:ok, client} ->
        case :gen_tcp.connect(ip, port, @sock_opts, 5_000) do
          {:ok, upstream} ->
            :ok = :gen_tcp.controlling_process(client, proxy)
            :ok = :gen_tcp.controlling_process(upstream, proxy)
            send(proxy, {:accepted, client, upstream})

          {:error, _} ->
            :gen_tcp.close(client)
        end

        accept_loop(listen, proxy, target)

      {:error, :closed} ->
        exit(:normal)

      {:error, reason} ->
        exit({:accept_failed, reason})
    end
  end

  # --- pipes -----------------------------------------------------------------------

  # One pipe per direction: reads `src`, writes `dst` after the delay. The two
  # pipes of a connection are linked, so when one ends the other ends too and
  # both sockets close.
  defp pipe_start(src, dst, delay) do
    receive do
      {:go, other} ->
        Process.link(other)
        :ok = :inet.setopts(src, active: true)
        pipe_loop(%{src: src, dst: dst, delay: delay, queue: :queue.new(), timer: nil})
    end
  end

  defp pipe_loop(%{src: src} = p) do
    receive do
      {:tcp, ^src, data} ->
        due = now_us() + p.delay
        p |> Map.update!(:queue, &:queue.in({due, data}, &1)) |> arm() |> pipe_loop()

      :flush ->
        %{p | timer: nil} |> flush() |> arm() |> pipe_loop()

      {:set_delay, delay} ->
        pipe_loop(%{p | delay: delay})

      {:tcp_closed, ^src} ->
        exit(:closed)

      {:tcp_error, ^src, reason} ->
        exit({:tcp_error, reason})
    end
  end

  defp arm(%{timer: nil} = p) do
    case :queue.peek(p.queue) do
      {:value, {due, _}} ->
        wait_ms = max(0, div(due - now_us() + 999, 1000))
        %{p | timer: :erlang.send_after(wait_ms, self(), :flush)}

      :empty ->
        p
    end
  end

  defp arm(p), do: p

  defp flush(p) do
    {due, queue} = take_due(p.queue, now_us(), [])

    case due do
      [] ->
        p

      chunks ->
        case :gen_tcp.send(p.dst, chunks) do
          :ok -> %{p | queue: queue}
          {:error, reason} -> exit({:send_failed, reason})
        end
    end
  end

  # Takes chunks due by `now` from the front, keeping their order.
  defp take_due(queue, now, acc) do
    case :queue.peek(queue) do
      {:value, {due, data}} when due <= now -> take_due(:queue.drop(queue), now, [acc, data])
      _ -> {if(acc == [], do: [], else: acc), queue}
    end
  end

  defp now_us, do: System.monotonic_time(:microsecond)
end

defmodule Jido.Distributed.Relay do
  @option_docs Jido.Distributed.Options.schema()[:relay][:keys]
               |> Enum.map_join(fn {key, spec} ->
                 default =
                   if spec[:default] == nil,
                     do: "",
                     else: " Defaults to `#{inspect(spec[:default])}`."

                 "  * `#{inspect(key)}` - #{spec[:doc]}#{default}\n"
               end)

  @moduledoc """
  Owns the relay C-node (`jido_relay`): starts it, watches it, restarts it.

  The relay is a Rust program (`native/jido_relay`) that joins the cluster as
  a *hidden* Erlang node: BEAM nodes connect to it over the ordinary
  distribution protocol, it shows in `Node.list(:hidden)` (not in
  `Node.list/0`), and `global`'s partition prevention leaves its connections
  alone. A message `{:ping, pid, ref}` sent to the registered name
  `:jido_relay` on the relay node comes back to `pid` as
  `{:pong, ref, relay_node}`. The relay also forwards, without decoding it,
  `msg` of `{:fwd, node, name, msg}` to `{name, node}` (names on an
  allowlist, by default the Receiver and `jido_relay`) and of
  `{:fwd, pid, msg}` to `pid`, dialing the destination node itself when
  needed; it answers `{:stats, pid, ref}` and `{:rtt, pid, ref}` and
  probes every connected node's RTT (see `native/jido_relay`). The Links
  do not use it yet (the detour is issue 13's next part).

  This process runs the binary through a `Port`, passing the cookie in the
  environment (never on the command line), and waits until the relay prints
  `READY <node> <port>`, that is, until it is registered with epmd and
  listening. Then it connects this node to the relay. The relay's log lines
  (stderr) are forwarded to `Logger`.

  If the relay exits, this process logs it and starts it again after
  `:restart_backoff_ms`. When this process stops, it closes the port; the
  relay exits when its stdin closes, so it never outlives its owner, even
  when the owner's whole VM dies.

  The Application starts it when `config :jido_distributed, relay: [...]` is
  set. The local node must be alive (started with `--sname`/`--name` or
  `Node.start/2`); otherwise `start_link/1` returns `{:error, :not_alive}`.

  ## Options

  These are the keys of `config :jido_distributed, relay: [...]`:

  #{@option_docs}
  `start_link/1` also takes `:server_name`, the name to register this
  process under (`nil` for none). Defaults to `Jido.Distributed.Relay`.
  """

  use GenServer
  require Logger

  alias Jido.Distributed.Options

  @registered_name :jido_relay
  @max_line 16_384
  @stop_wait_ms 2_000

  @typedoc "A running relay owner: its pid or registered name."
  @type server :: GenServer.server()

  @typedoc "Why a ping failed."
  @type ping_error :: :timeout | :not_running | {:ping_failed, term()}

  @doc false
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :server_name, __MODULE__) || __MODULE__,
      start: {__MODULE__, :start_link, [opts]},
      shutdown: @stop_wait_ms + 1_000
    }
  end

  @doc """
  Starts the relay owner and the relay, returning once the relay is ready.

  Raises `ArgumentError` on a bad option. Returns `{:error, :not_alive}` when
  the local node is not distributed, and `{:error, reason}` when the relay
  cannot start (for example epmd is not running or the name is taken).
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []) when is_list(opts) do
    {server_name, opts} = Keyword.pop(opts, :server_name, __MODULE__)
    config = validate!(opts)

    if Node.alive?() do
      gen_opts = if server_name, do: [name: server_name], else: []
      GenServer.start_link(__MODULE__, config, gen_opts)
    else
      Logger.error(
        "Jido.Distributed.Relay needs a distributed node: start it with " <>
          "--sname/--name or Node.start/2 (and run `epmd -daemon`)"
      )

      {:error, :not_alive}
    end
  end

  @doc """
  The relay's node name, e.g. `:jido_relay@myhost`.

  Known even while the relay is restarting.
  """
  @spec node_name(server()) :: node()
  def node_name(server \\ __MODULE__), do: GenServer.call(server, :node_name)

  @doc """
  The operating-system pid of the relay process, or `nil` while it is not
  running.
  """
  @spec os_pid(server()) :: non_neg_integer() | nil
  def os_pid(server \\ __MODULE__), do: GenServer.call(server, :os_pid)

  @doc """
  Sends a ping through the relay owned by `server` and waits for the pong.

  Returns `{:ok, round_trip_microseconds}`, `{:error, :not_running}` while
  the relay is (re)starting, or `{:error, :timeout}`.
  """
  @spec ping(server(), timeout()) :: {:ok, non_neg_integer()} | {:error, ping_error()}
  def ping(server \\ __MODULE__, timeout \\ 5_000) do
    case GenServer.call(server, :target) do
      {:ok, node} -> ping_node(node, timeout)
      {:error, _} = error -> error
    end
  end

  @doc """
  Pings the relay running as `node`, from any node that shares its cookie.

  Returns `{:ok, round_trip_microseconds}` or `{:error, :timeout}`. The
  round trip runs in a short-lived process, so a pong arriving after the
  timeout never lands in the caller's mailbox.
  """
  @spec ping_node(node(), timeout()) :: {:ok, non_neg_integer()} | {:error, ping_error()}
  def ping_node(node, timeout \\ 5_000) when is_atom(node) do
    tag = make_ref()

    {pid, mref} =
      spawn_monitor(fn ->
        ref = make_ref()
        start = System.monotonic_time(:microsecond)
        send({@registered_name, node}, {:ping, self(), ref})

        result =
          receive do
            {:pong, ^ref, ^node} -> {:ok, System.monotonic_time(:microsecond) - start}
          after
            timeout -> {:error, :timeout}
          end

        exit({tag, result})
      end)

    receive do
      {:DOWN, ^mref, :process, ^pid, {^tag, result}} -> result
      {:DOWN, ^mref, :process, ^pid, reason} -> {:error, {:ping_failed, reason}}
    end
  end

  ## Options

  defp validate!(opts) do
    config = Options.validate!(relay: opts)[:relay]

    if config[:port] > 65_535 do
      raise ArgumentError,
            "the :port option must be a port number (0..65535), got: #{inspect(config[:port])}"
    end

    unless config[:name] =~ ~r/\A[A-Za-z0-9_\-]+\z/ do
      raise ArgumentError,
            "the :name option must contain only letters, digits, '_' or '-', " <>
              "got: #{inspect(config[:name])}"
    end

    if config[:host] && not (config[:host] =~ ~r/\A[A-Za-z0-9_.\-]+\z/) do
      raise ArgumentError,
            "the :host option must be a host name (letters, digits, '_', '-', '.'), " <>
              "got: #{inspect(config[:host])}"
    end

    config
  end

  ## GenServer

  @impl true
  def init(config) do
    Process.flag(:trap_exit, true)
    host = config[:host] || node() |> Atom.to_string() |> String.split("@") |> List.last()
    relay_node = :"#{config[:name]}@#{host}"
    cookie = config[:cookie] || Node.get_cookie()
    # Use the relay's cookie for the relay, whatever this node's default is.
    true = :erlang.set_cookie(relay_node, cookie)

    state = %{
      config: config,
      node: relay_node,
      host: host,
      cookie: cookie,
      port: nil,
      os_pid: nil,
      status: :down,
      partial: "",
      timer: nil
    }

    with {:ok, exe} <- executable(),
         {:ok, state} <- start_relay(%{state | config: Keyword.put(config, :executable, exe)}),
         {:ok, state} <- await_ready(state) do
      {:ok, state}
    else
      {:error, reason} -> {:stop, reason}
    end
  end

  @impl true
  def handle_call(:node_name, _from, state), do: {:reply, state.node, state}
  def handle_call(:os_pid, _from, state), do: {:reply, state.os_pid, state}

  def handle_call(:target, _from, %{status: :running} = state),
    do: {:reply, {:ok, state.node}, state}

  def handle_call(:target, _from, state), do: {:reply, {:error, :not_running}, state}

  @impl true
  def handle_info({port, {:data, data}}, %{port: port} = state) do
    {lines, state} = take_lines(data, state)
    {:noreply, Enum.reduce(lines, state, &handle_line/2)}
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = state) do
    backoff = state.config[:restart_backoff_ms]

    Logger.warning(
      "jido_relay #{state.node} (os pid #{state.os_pid}) exited with status #{status}; " <>
        "restarting in #{backoff} ms"
    )

    {:noreply, schedule_restart(state)}
  end

  def handle_info({:startup_timeout, port}, %{port: port, status: :starting} = state) do
    Logger.error(
      "jido_relay #{state.node} did not report ready within " <>
        "#{state.config[:startup_timeout_ms]} ms; restarting it"
    )

    close_port(state)
    {:noreply, schedule_restart(state)}
  end

  def handle_info(:restart, %{status: :down} = state) do
    case start_relay(%{state | timer: nil}) do
      {:ok, state} ->
        timer = Process.send_after(self(), {:startup_timeout, state.port}, startup_ms(state))
        {:noreply, %{state | timer: timer}}

      {:error, reason} ->
        Logger.error("cannot start jido_relay: #{inspect(reason)}")
        {:noreply, schedule_restart(state)}
    end
  end

  # The port itself failed (not a plain exit of the program, which arrives
  # as :exit_status first).
  def handle_info({:EXIT, port, reason}, %{port: port} = state) do
    Logger.warning("jido_relay #{state.node} port failed: #{inspect(reason)}; restarting")
    {:noreply, schedule_restart(state)}
  end

  # Exit signals and messages of ports already given up on.
  def handle_info({:EXIT, _port, _reason}, state), do: {:noreply, state}
  def handle_info({_port, {:exit_status, _}}, state), do: {:noreply, state}
  def handle_info({_port, {:data, _}}, state), do: {:noreply, state}
  def handle_info({:startup_timeout, _port}, state), do: {:noreply, state}

  def handle_info(message, state) do
    Logger.debug("Jido.Distributed.Relay ignored #{inspect(message)}")
    {:noreply, state}
  end

  @impl true
  def terminate(_reason, state) do
    close_port(state)
    wait_os_exit(state.os_pid, @stop_wait_ms)
    :ok
  end

  ## Relay process

  defp executable do
    path = Path.join(:code.priv_dir(:jido_distributed), "native/jido_relay")

    if File.regular?(path),
      do: {:ok, path},
      else: {:error, {:executable_not_found, path}}
  end

  defp start_relay(state) do
    config = state.config

    args = [
      "--name",
      config[:name],
      "--host",
      state.host,
      "--port",
      Integer.to_string(config[:port]),
      "--tick-interval-ms",
      Integer.to_string(config[:tick_interval_ms])
    ]

    env = [
      {~c"JIDO_RELAY_COOKIE", Atom.to_charlist(state.cookie)},
      {~c"JIDO_RELAY_LOG", ~c"#{rust_level(config[:log_level])}"}
    ]

    port =
      Port.open({:spawn_executable, config[:executable]}, [
        :binary,
        :exit_status,
        :use_stdio,
        :stderr_to_stdout,
        {:line, @max_line},
        args: args,
        env: env
      ])

    os_pid =
      case Port.info(port, :os_pid) do
        {:os_pid, pid} -> pid
        nil -> nil
      end

    {:ok, %{state | port: port, os_pid: os_pid, status: :starting, partial: ""}}
  rescue
    e in ErlangError -> {:error, {:spawn_failed, e.original}}
  end

  # First start: block until READY so callers can use the relay right away.
  defp await_ready(state) do
    deadline = System.monotonic_time(:millisecond) + startup_ms(state)
    await_ready(state, deadline, [])
  end

  defp await_ready(%{port: port} = state, deadline, log) do
    wait = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {^port, {:data, data}} ->
        {lines, state} = take_lines(data, state)
        state = Enum.reduce(lines, state, &handle_line/2)

        if state.status == :running,
          do: {:ok, state},
          else: await_ready(state, deadline, Enum.take(Enum.reverse(lines) ++ log, 20))

      {^port, {:exit_status, status}} ->
        {:error, {:relay_exited, status, Enum.reverse(log)}}
    after
      wait ->
        close_port(state)
        {:error, {:startup_timeout, Enum.reverse(log)}}
    end
  end

  defp handle_line("READY " <> rest, %{status: :starting} = state) do
    case String.split(rest) do
      [node, port] ->
        if node != Atom.to_string(state.node) do
          Logger.warning("jido_relay reported node #{node}, expected #{state.node}")
        end

        if state.timer, do: Process.cancel_timer(state.timer)

        Logger.info("jido_relay #{state.node} ready on port #{port} (os pid #{state.os_pid})")

        unless Node.connect(state.node) == true do
          Logger.warning("cannot connect to jido_relay #{state.node} (cookie mismatch?)")
        end

        %{state | status: :running, timer: nil}

      _ ->
        Logger.warning("jido_relay printed a malformed READY line: #{inspect(rest)}")
        state
    end
  end

  defp handle_line(line, state) do
    {level, text} = parse_log_line(line)
    Logger.log(level, "jido_relay #{state.node}: #{text}")
    state
  end

  # Lines from the relay's tracing output start with a padded level.
  defp parse_log_line(line) do
    case String.split(String.trim_leading(line), " ", parts: 2) do
      ["ERROR", text] -> {:error, text}
      ["WARN", text] -> {:warning, text}
      ["INFO", text] -> {:info, text}
      ["DEBUG", text] -> {:debug, text}
      ["TRACE", text] -> {:debug, text}
      _ -> {:warning, line}
    end
  end

  # Port line mode splits long lines into {:noeol, part} chunks.
  defp take_lines({:noeol, part}, state), do: {[], %{state | partial: state.partial <> part}}
  defp take_lines({:eol, line}, state), do: {[state.partial <> line], %{state | partial: ""}}

  defp schedule_restart(state) do
    if state.timer, do: Process.cancel_timer(state.timer)
    timer = Process.send_after(self(), :restart, state.config[:restart_backoff_ms])
    %{state | port: nil, os_pid: nil, status: :down, partial: "", timer: timer}
  end

  defp close_port(%{port: nil}), do: :ok

  defp close_port(%{port: port}) do
    Port.close(port)
    :ok
  catch
    # Already closed.
    :error, :badarg -> :ok
  end

  # The relay exits on stdin EOF within milliseconds; waiting here frees its
  # epmd name before a supervisor restart tries to register it again.
  defp wait_os_exit(nil, _ms), do: :ok

  defp wait_os_exit(os_pid, ms) do
    cond do
      not os_process_alive?(os_pid) -> :ok
      ms <= 0 -> Logger.warning("jido_relay (os pid #{os_pid}) still running after close")
      true -> wait_os_exit_again(os_pid, ms)
    end
  end

  defp wait_os_exit_again(os_pid, ms) do
    Process.sleep(20)
    wait_os_exit(os_pid, ms - 20)
  end

  @doc false
  @spec os_process_alive?(non_neg_integer()) :: boolean()
  def os_process_alive?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      # Field 3 is the state; a zombie has exited already.
      {:ok, stat} -> not String.match?(stat, ~r/\) Z /)
      {:error, _} -> false
    end
  end

  defp startup_ms(state), do: state.config[:startup_timeout_ms]

  defp rust_level(:warning), do: "warn"
  defp rust_level(level), do: Atom.to_string(level)
end

defmodule Jido.Distributed.Test.Testbed do
  @moduledoc """
  A network of real hosts on one machine: each host is a Linux network
  namespace with its own address, its own epmd and one BEAM peer node (and
  optionally its own relay C-node), joined to the others through a bridge.
  Unlike `Jido.Distributed.Test.Cluster` (cookies plus disconnect, which
  the other side sees at once), faults here happen to packets:

    * `partition/2` - silent: packets between groups vanish in the bridge,
      both ways; TCP says nothing until its own timers (or the distribution
      tick) give up;
    * `cut_one_way/3` - packets from one host to another vanish, the other
      direction still passes;
    * `heal/1` - removes every cut;
    * `set_bandwidth/3` - a token bucket (`tc tbf`) on a host's link, each way;
    * `set_latency/4` - delay proxies (`Jido.Distributed.Test.DelayProxy`)
      inside the two hosts (kernel `netem` does not exist here);
    * `pause/3` - SIGSTOP, then SIGCONT after a while: a GC pause or a hung host;
    * `kill/2`, `restart/2` - SIGKILL the VM; boot it again, same name and address.

      {:ok, tb} = Testbed.start_link(hosts: [:a, :b, :c], net_ticktime: 4)
      Testbed.partition(tb, [[:a], [:b, :c]])
      Testbed.call(tb, :a, Node, :list, [])   # still lists b and c: nobody noticed yet
      Testbed.heal(tb)
      Testbed.stop(tb)

  ## Control

  The calling VM stays in the root namespace and cannot reach any testbed
  address. It controls each peer over the peer's stdin/stdout
  (`call/6`, `:peer.call/5`), which no cut affects. Host `i` (1-based, in
  the order given) is `NAME@10.213.0.(10 + i)`. Peers boot with
  `prevent_overlapping_partitions false`, OTP's default `net_ticktime`
  unless `:net_ticktime` is given, and a `Jido.Distributed.Test.Testbed.NodeWatch`
  recording their nodeup/nodedown events (`node_events/2`).

  ## Teardown

  The server is linked to its caller. `stop/1`, the caller's exit and a
  failed start all end in `Jido.Distributed.Test.Testbed.Net.destroy/1`:
  every process inside the namespaces is killed and every namespace (so
  every interface, address, rule and queue) deleted. Each start first
  sweeps what testbeds of dead OS processes left (`Net.sweep/0`).

  Needs root, `ip`, `nft` and `tc`: see `unavailable_reason/0`.
  """
  use GenServer

  alias Jido.Distributed.Test.{Cluster, DelayProxy, Epmd}
  alias Jido.Distributed.Test.Testbed.{Host, Net, NodeWatch, Rules}

  @typedoc "A running testbed."
  @type t :: GenServer.server()

  @typedoc "A host name, as given in `:hosts`."
  @type host :: atom()

  @typedoc "A host spec: a name, or `[name: atom, env: keyword, location: keyword, relay: boolean]`."
  @type spec :: atom() | keyword()

  @call_timeout 120_000

  # --- starting and stopping --------------------------------------------------

  @doc """
  Why the testbed cannot run on this machine (not root, a command missing,
  namespaces refused), or `nil` when it can. Checked once per VM.
  """
  @spec unavailable_reason() :: String.t() | nil
  def unavailable_reason do
    case :persistent_term.get({__MODULE__, :unavailable}, :unknown) do
      :unknown ->
        reason = Net.unavailable_reason()
        :persistent_term.put({__MODULE__, :unavailable}, reason)
        reason

      reason ->
        reason
    end
  end

  @doc """
  Creates the network and boots one peer per host; returns once every peer
  runs the app and is connected to every other one.

  ## Options

    * `:hosts` (required) - a count `n` (hosts `:h1`..`:hN`) or a list of
      specs. A spec's `:env` and `:location` go to that host's
      `:jido_distributed` app env; `relay: true` also starts a relay C-node
      (`relay: [name: "jido_relay"]`) inside the host.
    * `:net_ticktime` - the peers' `net_ticktime` in seconds (default: OTP's, 60).
    * `:env` - app env for every host (merged over the caller's app env).
    * `:start_app` - start `:jido_distributed` on the peers (default `true`).
    * `:log_level` - Logger level on the peers (default `:warning`).
    * `:args` - more `erl` arguments for every peer.
    * `:boot_timeout` - milliseconds to wait for the peers to boot (default 60_000).
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) when is_list(opts) do
    specs = normalize_hosts!(Keyword.get(opts, :hosts))
    opts = Keyword.put(opts, :hosts, specs)

    case Keyword.get(opts, :net_ticktime) do
      nil ->
        :ok

      t when is_integer(t) and t > 0 ->
        :ok

      t ->
        raise ArgumentError,
              "the :net_ticktime option must be a positive integer (seconds) or nil, got: #{inspect(t)}"
    end

    if reason = unavailable_reason(), do: raise("the testbed cannot run here: #{reason}")
    GenServer.start_link(__MODULE__, opts, timeout: :infinity)
  end

  @doc false
  def child_spec(opts) do
    %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, shutdown: 60_000}
  end

  @doc "Tears everything down (see the module doc) and stops the server. Idempotent."
  @spec stop(t()) :: :ok
  def stop(tb) do
    GenServer.stop(tb, :normal, @call_timeout)
  catch
    :exit, _ -> :ok
  end

  # --- looking things up --------------------------------------------------------

  @doc "The host names, in the order given."
  @spec hosts(t()) :: [host()]
  def hosts(tb), do: GenServer.call(tb, :hosts)

  @doc "The node name of `host` (`NAME@10.213.0.X`)."
  @spec node(t(), host()) :: node()
  def node(tb, host), do: info!(tb, host).node

  @doc "The address of `host` as a string."
  @spec address(t(), host()) :: String.t()
  def address(tb, host), do: info!(tb, host).address

  @doc "The namespace of `host`."
  @spec namespace(t(), host()) :: String.t()
  def namespace(tb, host), do: info!(tb, host).ns

  @doc "Every namespace of the testbed (the bridge's included)."
  @spec namespaces(t()) :: [String.t()]
  def namespaces(tb), do: Net.namespaces(GenServer.call(tb, :prefix))

  @doc "OS pids of every process now inside the testbed's namespaces (peers, epmds, relays)."
  @spec os_pids(t()) :: [pos_integer()]
  def os_pids(tb), do: tb |> namespaces() |> Enum.flat_map(&Net.pids/1)

  @doc "The OS pid of `host`'s VM (`nil` while killed)."
  @spec os_pid(t(), host()) :: pos_integer() | nil
  def os_pid(tb, host), do: info!(tb, host).os_pid

  @doc """
  Runs `apply(m, f, a)` on `host`'s peer over its control channel and
  returns the result (exceptions are raised here). Do not call a paused host:
  the call waits until it is resumed.
  """
  @spec call(t(), host(), module(), atom(), list(), timeout()) :: term()
  def call(tb, host, m, f, a, timeout \\ 15_000) do
    case info!(tb, host) do
      %{pid: nil} -> raise ArgumentError, "host #{inspect(host)} is not running"
      info -> Host.call(info, m, f, a, timeout)
    end
  end

  @doc "The nodeup/nodedown events `host` has seen (see `Jido.Distributed.Test.Testbed.NodeWatch`)."
  @spec node_events(t(), host()) :: [NodeWatch.event()]
  def node_events(tb, host), do: call(tb, host, NodeWatch, :events, [])

  @doc """
  Packet and byte counters of `host`'s interface (`:host` side, default) or of
  its port on the bridge (`:bridge` side). Read from the kernel, not the VM.
  """
  @spec interface_counters(t(), host(), :host | :bridge) :: Net.counters()
  def interface_counters(tb, host, side \\ :host) do
    info = info!(tb, host)

    case side do
      :host -> Net.counters(info.ns, Net.device())
      :bridge -> Net.counters(Net.bridge_ns(info.prefix), Net.bridge_port(info.index))
    end
  end

  @doc """
  Packets and bytes dropped so far per directed cut in place:
  `%{{from, to} => %{packets:, bytes:}}` (counters restart when the cuts change).
  """
  @spec drop_counters(t()) :: %{
          {host(), host()} => %{packets: non_neg_integer(), bytes: non_neg_integer()}
        }
  def drop_counters(tb) do
    names = Map.new(hosts(tb), &{Atom.to_string(&1), &1})

    tb
    |> GenServer.call(:prefix)
    |> Net.bridge_ns()
    |> Net.rules_text()
    |> Rules.parse_counters()
    |> Map.new(fn {{from, to}, value} -> {{names[from], names[to]}, value} end)
  end

  # Errors about the caller's arguments come back as values and are raised here.
  defp reply!(:ok), do: :ok
  defp reply!({:error, message}), do: raise(ArgumentError, message)

  defp info!(tb, host) do
    case GenServer.call(tb, {:info, host}) do
      {:ok, info} -> info
      :error -> raise ArgumentError, "unknown testbed host: #{inspect(host)}"
    end
  end

  # --- faults ---------------------------------------------------------------------

  @doc """
  Cuts every host of one group off from every host of another, both ways,
  silently (packets dropped, nothing answered). Hosts in no group keep
  their links: `partition(tb, [[:a], [:b]])` cuts a<->b while both still
  reach `:c`. Adds to the cuts already in place.
  """
  @spec partition(t(), [[host()]]) :: :ok
  def partition(tb, groups) when is_list(groups),
    do: reply!(GenServer.call(tb, {:partition, groups}, @call_timeout))

  @doc "Drops packets from `a` to `b` only; `b` to `a` still pass."
  @spec cut_one_way(t(), host(), host()) :: :ok
  def cut_one_way(tb, a, b), do: reply!(GenServer.call(tb, {:cut_one_way, a, b}, @call_timeout))

  @doc """
  Removes every cut. Connections that survived (silent partitions shorter
  than the tick timeout) carry on; nothing is reconnected on purpose.
  """
  @spec heal(t()) :: :ok
  def heal(tb), do: reply!(GenServer.call(tb, :heal, @call_timeout))

  @doc "The directed cuts in place: `[{from, to}]`."
  @spec cuts(t()) :: [{host(), host()}]
  def cuts(tb), do: GenServer.call(tb, :cuts)

  @doc """
  Limits `host`'s link to `mbit` Mbit/s in each direction (a `tc tbf` on
  both ends of its veth pair); `nil` removes the limit.
  """
  @spec set_bandwidth(t(), host(), pos_integer() | nil) :: :ok
  def set_bandwidth(tb, host, mbit)
      when is_nil(mbit) or (is_integer(mbit) and mbit > 0),
      do: reply!(GenServer.call(tb, {:set_bandwidth, host, mbit}, @call_timeout))

  def set_bandwidth(_tb, _host, mbit),
    do:
      raise(
        ArgumentError,
        "the bandwidth must be a positive integer (Mbit/s) or nil, got: #{inspect(mbit)}"
      )

  @doc """
  Makes the a<->b round trip about `ms` milliseconds longer: a delay proxy
  inside each host in front of its distribution port (`ms / 2` each way),
  the other side's epmd look-ups pointed at it, and the a<->b connection
  made again through them. `0` removes the proxies and reconnects directly.
  Packets still cross the bridge, so cuts and bandwidth limits apply.
  """
  @spec set_latency(t(), host(), host(), non_neg_integer()) :: :ok
  def set_latency(tb, a, b, ms) when is_integer(ms) and ms >= 0 and a != b,
    do: reply!(GenServer.call(tb, {:set_latency, a, b, ms}, @call_timeout))

  def set_latency(_tb, a, b, ms),
    do:
      raise(
        ArgumentError,
        "set_latency/4 needs two different hosts and a non-negative integer of milliseconds, got: #{inspect({a, b, ms})}"
      )

  @doc """
  Stops `host`'s VM (SIGSTOP) now and resumes it (SIGCONT) after `ms`
  milliseconds; returns once it is stopped. Its epmd and relay keep running,
  as on a host whose VM hangs.
  """
  @spec pause(t(), host(), pos_integer()) :: :ok
  def pause(tb, host, ms) when is_integer(ms) and ms > 0,
    do: reply!(GenServer.call(tb, {:pause, host, ms}, @call_timeout))

  def pause(_tb, _host, ms),
    do: raise(ArgumentError, "the pause must be a positive integer (ms), got: #{inspect(ms)}")

  @doc "Resumes a paused host now (a no-op otherwise)."
  @spec resume(t(), host()) :: :ok
  def resume(tb, host), do: reply!(GenServer.call(tb, {:resume, host}, @call_timeout))

  @doc "Whether `host` is paused now."
  @spec paused?(t(), host()) :: boolean()
  def paused?(tb, host), do: info!(tb, host).paused != nil

  @doc "Kills `host`'s VM (SIGKILL); returns once its OS process is gone."
  @spec kill(t(), host()) :: :ok
  def kill(tb, host), do: reply!(GenServer.call(tb, {:kill, host}, @call_timeout))

  @doc """
  Boots `host`'s VM again (same name, address and settings) after `kill/2`
  and connects it to every host it can reach; returns once it runs the app.
  """
  @spec restart(t(), host()) :: :ok
  def restart(tb, host), do: reply!(GenServer.call(tb, {:restart, host}, @call_timeout))

  @doc "Connects every running host to every other one it can reach (both ways, no cut); waits until done."
  @spec connect_all(t()) :: :ok
  def connect_all(tb), do: GenServer.call(tb, :connect_all, @call_timeout)

  # --- server -------------------------------------------------------------------------

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    Net.sweep()
    prefix = Net.new_prefix()
    specs = Keyword.fetch!(opts, :hosts)

    hosts =
      specs
      |> Enum.with_index(1)
      |> Map.new(fn {spec, i} ->
        name = Keyword.fetch!(spec, :name)
        address = Net.address(i)

        {name,
         %{
           name: name,
           index: i,
           prefix: prefix,
           address: address,
           node: :"#{name}@#{address}",
           ns: Net.host_ns(prefix, i),
           spec: spec,
           pid: nil,
           os_pid: nil,
           paused: nil
         }}
      end)

    state = %{
      prefix: prefix,
      order: Enum.map(specs, &Keyword.fetch!(&1, :name)),
      hosts: hosts,
      cuts: Rules.new(),
      latency: %{},
      bandwidth: %{},
      opts: Keyword.put_new(opts, :cookie, :"jdtb_#{System.unique_integer([:positive])}")
    }

    try do
      Net.create!(prefix, length(specs))
      state = set_cuts(state, state.cuts)
      Enum.each(Map.values(hosts), &Net.start_epmd!(&1.ns))
      state = boot(state, state.order)
      :ok = mesh(state, state.order)
      {:ok, state}
    rescue
      e ->
        Net.destroy(prefix)
        {:stop, {:testbed_start_failed, Exception.format(:error, e, __STACKTRACE__)}}
    end
  end

  @impl true
  def handle_call(:hosts, _from, state), do: {:reply, state.order, state}
  def handle_call(:prefix, _from, state), do: {:reply, state.prefix, state}
  def handle_call(:cuts, _from, state), do: {:reply, Enum.sort(state.cuts), state}

  def handle_call({:info, host}, _from, state), do: {:reply, Map.fetch(state.hosts, host), state}

  def handle_call({:partition, groups}, _from, state) do
    with_hosts(state, List.flatten(groups), fn ->
      set_cuts(state, Rules.partition(state.cuts, groups))
    end)
  end

  def handle_call({:cut_one_way, a, b}, _from, state) do
    with_hosts(state, [a, b], fn -> set_cuts(state, Rules.cut_one_way(state.cuts, a, b)) end)
  end

  def handle_call(:heal, _from, state), do: {:reply, :ok, set_cuts(state, Rules.heal(state.cuts))}

  def handle_call({:set_bandwidth, host, mbit}, _from, state) do
    with_hosts(state, [host], fn ->
      %{ns: ns, index: i} = state.hosts[host]
      Net.set_rate!(ns, Net.device(), mbit)
      Net.set_rate!(Net.bridge_ns(state.prefix), Net.bridge_port(i), mbit)
      %{state | bandwidth: Map.put(state.bandwidth, host, mbit)}
    end)
  end

  def handle_call({:set_latency, a, b, ms}, _from, state) do
    with_hosts(state, [a, b], fn -> put_latency(state, a, b, ms) end)
  end

  def handle_call({:pause, host, ms}, _from, state) do
    with_hosts(state, [host], fn ->
      %{os_pid: os_pid} = info = state.hosts[host]
      if os_pid == nil, do: raise(ArgumentError, "host #{inspect(host)} is not running")
      Host.signal(os_pid, "STOP")
      await_proc_state(os_pid, &(&1 == "T"))
      token = make_ref()
      Process.send_after(self(), {:resume, host, token}, ms)
      put_host(state, %{info | paused: token})
    end)
  end

  def handle_call({:resume, host}, _from, state) do
    with_hosts(state, [host], fn -> resume_host(state, host) end)
  end

  def handle_call({:kill, host}, _from, state) do
    with_hosts(state, [host], fn ->
      info = state.hosts[host]

      if info.pid do
        Host.signal(info.os_pid, "KILL")
        Host.signal(info.os_pid, "CONT")

        receive do
          {:EXIT, pid, _} when pid == info.pid -> :ok
        after
          30_000 -> raise "the peer of #{host} did not exit"
        end

        true = Net.await_gone([info.os_pid], 200)
      end

      state
      |> put_host(%{info | pid: nil, os_pid: nil, paused: nil})
      |> drop_latency_of(host)
    end)
  end

  def handle_call({:restart, host}, _from, state) do
    with_hosts(state, [host], fn ->
      if state.hosts[host].pid, do: raise(ArgumentError, "host #{inspect(host)} is running")
      state = boot(state, [host])
      :ok = mesh(state, [host])
      state
    end)
  end

  def handle_call(:connect_all, _from, state) do
    {:reply, mesh(state, running(state)), state}
  end

  defp with_hosts(state, hosts, fun) do
    case Enum.reject(hosts, &Map.has_key?(state.hosts, &1)) do
      [] ->
        try do
          {:reply, :ok, fun.()}
        rescue
          e in ArgumentError -> {:reply, {:error, Exception.message(e)}, state}
        end

      unknown ->
        {:reply, {:error, "unknown testbed hosts: #{inspect(unknown)}"}, state}
    end
  end

  @impl true
  def handle_info({:resume, host, token}, state) do
    case state.hosts[host] do
      %{paused: ^token} -> {:noreply, resume_host(state, host)}
      _ -> {:noreply, state}
    end
  end

  # A peer that exits on its own (killed from outside) is marked as down.
  def handle_info({:EXIT, pid, _reason}, state) do
    case Enum.find(Map.values(state.hosts), &(&1.pid == pid)) do
      nil -> {:noreply, state}
      info -> {:noreply, put_host(state, %{info | pid: nil, os_pid: nil, paused: nil})}
    end
  end

  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    for %{os_pid: os_pid} when os_pid != nil <- Map.values(state.hosts),
        do: Host.signal(os_pid, "CONT")

    Net.destroy(state.prefix)

    # Let the :peer processes see their ports close.
    for %{pid: pid} when pid != nil <- Map.values(state.hosts) do
      receive do
        {:EXIT, ^pid, _} -> :ok
      after
        5_000 -> :ok
      end
    end

    :ok
  end

  # --- internals ----------------------------------------------------------------------

  defp put_host(state, info), do: %{state | hosts: Map.put(state.hosts, info.name, info)}

  defp running(state), do: for(h <- state.order, state.hosts[h].pid != nil, do: h)

  defp boot(state, names) do
    opts = state.opts
    timeout = Keyword.get(opts, :boot_timeout, 60_000)

    booting =
      for name <- names do
        info = state.hosts[name]
        {info, Host.boot(name, info.address, info.ns, opts)}
      end

    booted =
      for {info, host} <- booting do
        case Host.await(host, timeout, host_spec(info.spec), opts) do
          {:ok, host} -> %{info | pid: host.pid, os_pid: host.os_pid, paused: nil}
          {:error, reason} -> raise "could not boot #{info.name}: #{inspect(reason)}"
        end
      end

    Enum.reduce(booted, state, &put_host(&2, &1))
  end

  defp host_spec(spec) do
    if Keyword.get(spec, :relay, false) do
      env = Keyword.put(Keyword.get(spec, :env, []), :relay, name: "jido_relay")
      Keyword.put(spec, :env, env)
    else
      spec
    end
  end

  # Connects each of `names` to every running host it shares no cut with,
  # and waits until both sides list each other.
  defp mesh(state, names) do
    up = running(state)

    pairs = for a <- names, b <- up, a != b, Rules.connected?(state.cuts, a, b), do: {a, b}

    Enum.each(pairs, fn {a, b} ->
      peer_call(state, a, :net_kernel, :connect_node, [node_of(state, b)])
    end)

    Cluster.wait_until(
      "the testbed hosts to connect",
      fn ->
        Enum.all?(pairs, fn {a, b} ->
          peer_call(state, a, :net_kernel, :connect_node, [node_of(state, b)])
          node_of(state, b) in peer_call(state, a, Node, :list, [])
        end)
      end,
      30_000
    )
  end

  defp node_of(state, host), do: state.hosts[host].node

  defp peer_call(state, host, m, f, a, timeout \\ 15_000),
    do: Host.call(state.hosts[host], m, f, a, timeout)

  defp set_cuts(state, cuts) do
    addresses = Map.new(state.hosts, fn {name, info} -> {name, info.address} end)
    Net.apply_rules!(Net.bridge_ns(state.prefix), Rules.script(cuts, addresses))
    %{state | cuts: cuts}
  end

  defp resume_host(state, host) do
    case state.hosts[host] do
      %{paused: nil} ->
        state

      %{os_pid: os_pid} = info ->
        Host.signal(os_pid, "CONT")
        await_proc_state(os_pid, &(&1 != "T"))
        put_host(state, %{info | paused: nil})
    end
  end

  # Waits until the OS process's state letter (`/proc/PID/stat`) passes `check`.
  defp await_proc_state(os_pid, check) do
    Cluster.wait_until("OS process #{os_pid} to change state", fn ->
      case File.read("/proc/#{os_pid}/stat") do
        {:ok, stat} ->
          stat |> String.split(") ", parts: 2) |> List.last() |> String.first() |> check.()

        {:error, _} ->
          true
      end
    end)
  end

  # --- latency ------------------------------------------------------------------------

  defp put_latency(state, a, b, ms) do
    key = latency_key(a, b)

    case {state.latency[key], ms} do
      {nil, 0} ->
        state

      {%{proxies: proxies}, 0} ->
        Enum.each(proxies, fn {host, proxy} ->
          peer_call(state, host, DelayProxy, :stop, [proxy])
        end)

        for {x, y} <- [{a, b}, {b, a}],
            do: peer_call(state, x, Epmd, :delete_override, [node_of(state, y)])

        peer_call(state, a, Cluster, :reconnect, [node_of(state, b)])
        %{state | latency: Map.delete(state.latency, key)}

      {%{proxies: proxies} = entry, ms} ->
        Enum.each(proxies, fn {host, proxy} ->
          peer_call(state, host, DelayProxy, :set_delay, [proxy, ms * 500])
        end)

        %{state | latency: Map.put(state.latency, key, %{entry | ms: ms})}

      {nil, ms} ->
        to_b = start_proxy(state, b, ms)
        to_a = start_proxy(state, a, ms)
        peer_call(state, a, Epmd, :put_override, [node_of(state, b), elem(to_b, 1)])
        peer_call(state, b, Epmd, :put_override, [node_of(state, a), elem(to_a, 1)])
        reroute!(state, a, b, elem(to_b, 1), elem(to_a, 1), 5)
        entry = %{ms: ms, proxies: [{b, elem(to_b, 0)}, {a, elem(to_a, 0)}]}
        %{state | latency: Map.put(state.latency, key, entry)}
    end
  end

  defp latency_key(a, b), do: if(a < b, do: {a, b}, else: {b, a})

  # A proxy inside `host` in front of its distribution port.
  defp start_proxy(state, host, ms) do
    %{address: address, name: name} = state.hosts[host]
    {:ok, ip} = :inet.parse_address(String.to_charlist(address))

    {:port, port, _} =
      peer_call(state, host, :erl_epmd, :port_please, [Atom.to_charlist(name), ip])

    {:ok, proxy} =
      peer_call(state, host, DelayProxy, :start, [
        [target: {ip, port}, listen_ip: ip, delay_us: ms * 500]
      ])

    {proxy, peer_call(state, host, DelayProxy, :port, [proxy])}
  end

  defp reroute!(state, a, b, to_b_port, to_a_port, attempts) do
    peer_call(state, a, Cluster, :reconnect, [node_of(state, b)])

    proxied? =
      Cluster.await(
        fn ->
          peer_call(state, a, Cluster, :dist_peer_port, [node_of(state, b)]) == to_b_port or
            peer_call(state, b, Cluster, :dist_peer_port, [node_of(state, a)]) == to_a_port
        end,
        5_000
      )

    cond do
      proxied? -> :ok
      attempts > 1 -> reroute!(state, a, b, to_b_port, to_a_port, attempts - 1)
      true -> raise "could not route #{a} <-> #{b} through the delay proxies"
    end
  end

  defp drop_latency_of(state, host) do
    {gone, kept} = Enum.split_with(state.latency, fn {{a, b}, _} -> host in [a, b] end)

    for {_, %{proxies: proxies}} <- gone, {h, proxy} <- proxies, h != host do
      try do
        peer_call(state, h, DelayProxy, :stop, [proxy])
      catch
        _, _ -> :ok
      end
    end

    %{state | latency: Map.new(kept)}
  end

  # --- small helpers -----------------------------------------------------------------

  defp normalize_hosts!(n) when is_integer(n) and n > 0 and n <= 200,
    do: Enum.map(1..n, &[name: :"h#{&1}"])

  defp normalize_hosts!(specs) when is_list(specs) and specs != [] do
    specs =
      Enum.map(specs, fn
        name when is_atom(name) ->
          [name: name]

        spec when is_list(spec) ->
          spec

        other ->
          raise ArgumentError,
                "a host spec must be an atom or a keyword list, got: #{inspect(other)}"
      end)

    names = Enum.map(specs, &Keyword.get(&1, :name))

    unless Enum.all?(
             names,
             &(is_atom(&1) and &1 != nil and
                 Regex.match?(~r/^[a-z][a-z0-9_]*$/, Atom.to_string(&1)))
           ) and
             length(Enum.uniq(names)) == length(names) do
      raise ArgumentError,
            "the :hosts option must name each host once with a lowercase atom, got: #{inspect(names)}"
    end

    specs
  end

  defp normalize_hosts!(other),
    do:
      raise(
        ArgumentError,
        "the :hosts option must be a positive integer or a non-empty list of host specs, got: #{inspect(other)}"
      )
end

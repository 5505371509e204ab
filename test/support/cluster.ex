defmodule Jido.Distributed.Test.Cluster do
  @moduledoc """
  Starts real peer nodes on this machine and cuts, heals and slows the links
  between them. Used by multi-node tests (through `Jido.Distributed.ClusterCase`),
  benchmarks and the demo; it does not depend on ExUnit.

      nodes = [a, b, c] = Cluster.start_nodes([[name: :a, location: [region: "eu"]], :b, :c])
      Cluster.partition(a, b)      # only the a<->b link is cut
      Cluster.heal(a, b)
      Cluster.set_latency(a, c, 40) # a<->c round trip grows by about 40 ms
      Cluster.clear_latency(a, c)
      Cluster.stop_nodes(nodes)

  ## Peer nodes

  Peers are `:peer` nodes with short names on this host and the caller's
  cookie and code paths. They are controlled over stdin/stdout
  (`connection: :standard_io`), not over distribution, so cutting the
  distribution link between the caller and a peer does not kill the peer.
  Each peer gets:

    * `-kernel prevent_overlapping_partitions false`, so that cutting one link
      does not make `global` cut others;
    * a fixed distribution port (`inet_dist_listen_min/max`), picked free;
    * `-epmd_module Jido.Distributed.Test.Epmd`, which lets `set_latency/3`
      point its connections at a delay proxy.

  The calling node must be distributed (`start_nodes/2` starts distribution with
  short names if it is not). Its `global` is switched to
  `prevent_overlapping_partitions: false` too (see `disable_partition_prevention/0`).

  ## Partitions

  `partition/2` gives the two sides different cookies for each other only
  (`:erlang.set_cookie/2`) and disconnects them. Auto-connect attempts between
  them (from `send/2`, `global`, ...) then fail the handshake, while every
  other link keeps working. `heal/2` restores the cookies and reconnects. When
  one side is the calling node, only its own cookie is changed, so it can
  still heal by itself.

  ## Latency

  `set_latency(a, b, ms)` starts two `Jido.Distributed.Test.DelayProxy`s on
  the calling node, one in front of each node's distribution port, each adding
  `ms / 2` in each direction. The epmd module of each peer side answers the
  look-up of the other side with the proxy's port; then the a<->b connection
  is re-established and checked to run through a proxy. So the a<->b round
  trip grows by about `ms` whichever node initiated the connection. The
  calling node does not use the custom epmd module; when it is one side, the
  peer side is made to initiate the connection.

  ## Teardown

  Peers are linked to the process that called `start_nodes/2` and stop when
  it exits. `stop_nodes/1` is idempotent: it stops the peers, every delay
  proxy created for them and restores cookies of partitions they were part of,
  and returns once the nodes are disconnected and their OS processes gone.
  """

  alias Jido.Distributed.Test.{DelayProxy, Epmd, PeerLog}

  @app :jido_distributed
  @table __MODULE__
  @wait_ms 15_000
  @boot_attempts 3

  @typedoc "A node spec: `[name: prefix, location: [region: ..., zone: ..., rack: ...], env: keyword]`, or just a name prefix."
  @type spec :: keyword() | atom()

  # --- starting and stopping --------------------------------------------------

  @doc """
  Starts peer nodes in parallel and returns their names, in spec order.

  `specs` is a count `n` (nodes named `peer1`..`peerN`) or a list of specs.
  A spec is a keyword list with:

    * `:name` - name prefix (atom); the node is named `<prefix>_<unique>_<os pid>@<host>`;
    * `:location` - `config :jido_distributed, location: ...` of that node;
    * `:env` - more `:jido_distributed` app env for that node only.

  A bare atom is the same as `[name: atom]`.

  Each node gets the caller's `:jido_distributed` app env, then `opts[:env]`,
  then its spec's `:env` and `:location`; then the application is started
  (unless `start_app: false`). When this returns, the new nodes are connected
  to each other, to the caller and to the caller's other connected nodes.

  ## Options

    * `:env` - app env overrides for every node (default `[]`).
    * `:start_app` - start `:jido_distributed` on the nodes (default `true`).
    * `:args` - extra `erl` arguments (list of strings, default `[]`).
    * `:log_level` - Logger level on the peers (default `:warning`). What
      peers print, their log lines included, is logged on the calling node
      (see `Jido.Distributed.Test.PeerLog`), so `capture_log` applies.
    * `:boot_timeout` - milliseconds to wait for a node to boot (default 30_000).
  """
  @spec start_nodes(pos_integer() | [spec()], keyword()) :: [node()]
  def start_nodes(specs, opts \\ [])

  def start_nodes(n, opts) when is_integer(n) and n > 0,
    do: start_nodes(Enum.map(1..n, &[name: :"peer#{&1}"]), opts)

  def start_nodes(specs, opts) when is_list(specs) and specs != [] and is_list(opts) do
    specs = Enum.map(specs, &normalize_spec!/1)
    ensure_distributed()
    disable_partition_prevention()
    table()

    peers = boot_all(specs, opts, @boot_attempts)
    nodes = Enum.map(peers, & &1.node)

    try do
      parallel!(peers, &setup_peer(&1, opts))
      mesh(nodes)
      nodes
    rescue
      e ->
        stop_nodes(nodes)
        reraise e, __STACKTRACE__
    catch
      kind, reason ->
        stop_nodes(nodes)
        :erlang.raise(kind, reason, __STACKTRACE__)
    end
  end

  def start_nodes(specs, _opts),
    do:
      raise(
        ArgumentError,
        "specs must be a positive integer or a non-empty list, got: #{inspect(specs)}"
      )

  @doc """
  Stops `nodes` and everything the harness created for them.

  Stops every delay proxy whose link involves one of them (and removes the
  epmd overrides on the other side), restores the caller's cookies for
  partitions involving them, stops the peers and waits until they are
  disconnected and their OS processes have exited. Nodes that are already
  stopped, or were not started by `start_nodes/2`, are skipped: calling it
  twice is fine.
  """
  @spec stop_nodes([node()]) :: :ok
  def stop_nodes(nodes) when is_list(nodes) do
    table()

    for {{:latency, a, b} = key, proxies} <- :ets.tab2list(@table), a in nodes or b in nodes do
      :ets.delete(@table, key)
      Enum.each(proxies, &DelayProxy.stop/1)
      for {x, y} <- [{a, b}, {b, a}], x not in nodes, do: try_delete_override(x, y)
    end

    for {{:partition, a, b} = key, _} <- :ets.tab2list(@table), a in nodes or b in nodes do
      :ets.delete(@table, key)
      for {x, y} <- [{a, b}, {b, a}], x == node(), do: :erlang.set_cookie(y, :erlang.get_cookie())
    end

    peers =
      for n <- Enum.uniq(nodes), [{_, peer}] <- [:ets.lookup(@table, {:peer, n})] do
        :ets.delete(@table, {:peer, n})
        peer
      end

    parallel!(peers, &stop_peer/1)
  end

  # --- partitions ----------------------------------------------------------------

  @doc """
  Cuts only the link between `a` and `b` (either may be the calling node).

  Both stay connected to every other node. Messages from one to the other are
  dropped (`send/2` tries to connect and fails the handshake) until `heal/2`.
  Returns once neither side lists the other as connected.
  """
  @spec partition(node(), node()) :: :ok
  def partition(a, b) when is_atom(a) and is_atom(b) and a != b do
    disable_partition_prevention()
    table()
    # Each side gets its own cookie for the other, so the two never match. A
    # side's cookie is changed only if the caller can still reach that side
    # afterwards, i.e. unless the other side is the caller itself.
    for {x, y} <- [{a, b}, {b, a}], y != node() do
      rpc(x, :erlang, :set_cookie, [y, :"partitioned_#{:erlang.unique_integer([:positive])}"])
    end

    :ets.insert(@table, {{:partition, a, b}, true})

    wait_until("#{a} and #{b} to disconnect", fn ->
      disconnect(a, b)
      link_down?(a, b)
    end)
  end

  @doc """
  Restores the link between `a` and `b` cut by `partition/2` and waits until
  both list each other as connected. Healing an intact link is a no-op.
  """
  @spec heal(node(), node()) :: :ok
  def heal(a, b) when is_atom(a) and is_atom(b) and a != b do
    table()
    :ets.delete(@table, {:partition, a, b})
    :ets.delete(@table, {:partition, b, a})

    for {x, y} <- [{a, b}, {b, a}], x == node() or y != node() do
      rpc(x, :erlang, :set_cookie, [y, rpc(x, :erlang, :get_cookie, [])])
    end

    connect!(a, b)
  end

  # --- latency -------------------------------------------------------------------

  @doc """
  Makes the round trip between `a` and `b` about `ms` milliseconds longer.

  The a<->b distribution connection is re-established through delay proxies
  on the calling node (`ms / 2` added in each direction; see the module doc).
  Other links are not affected. Calling it again for the same pair only
  changes the delay. At least one of `a`, `b` must be a node started by
  `start_nodes/2`; partitioned pairs are not supported.
  """
  @spec set_latency(node(), node(), number()) :: :ok
  def set_latency(a, b, ms)
      when is_atom(a) and is_atom(b) and a != b and is_number(ms) and ms >= 0 do
    disable_partition_prevention()
    table()
    one_way_us = round(ms * 500)

    case latency_proxies(a, b) do
      {_, proxies} ->
        Enum.each(proxies, &DelayProxy.set_delay(&1, one_way_us))

      nil ->
        unless redirectable?(a) or redirectable?(b) do
          raise ArgumentError,
                "set_latency/3 needs a node started by start_nodes/2, got: #{inspect(a)}, #{inspect(b)}"
        end

        watch = for n <- [a, b], [{_, peer}] <- [:ets.lookup(@table, {:peer, n})], do: peer.pid
        to_b = start_proxy(b, one_way_us, watch)
        to_a = start_proxy(a, one_way_us, watch)
        :ets.insert(@table, {{:latency, a, b}, [elem(to_b, 0), elem(to_a, 0)]})

        if redirectable?(a), do: rpc(a, Epmd, :put_override, [b, elem(to_b, 1)])
        if redirectable?(b), do: rpc(b, Epmd, :put_override, [a, elem(to_a, 1)])

        reroute!(a, b, to_b, to_a)
    end

    :ok
  end

  @doc """
  Removes the latency set with `set_latency/3`: stops the proxies and
  reconnects `a` and `b` directly. A no-op if none is set.
  """
  @spec clear_latency(node(), node()) :: :ok
  def clear_latency(a, b) when is_atom(a) and is_atom(b) and a != b do
    table()

    case latency_proxies(a, b) do
      nil ->
        :ok

      {{:latency, x, y} = key, proxies} ->
        :ets.delete(@table, key)
        try_delete_override(x, y)
        try_delete_override(y, x)
        disconnect(x, y)
        Enum.each(proxies, &DelayProxy.stop/1)
        connect!(x, y)
    end
  end

  @doc """
  Median round-trip time, in microseconds, of `:erpc.call(b, :erlang, :node, [])`
  made on `a` (`samples` times, after one warm-up call).
  """
  @spec node_rtt_us(node(), node(), pos_integer()) :: non_neg_integer()
  def node_rtt_us(a, b, samples \\ 9) when is_integer(samples) and samples > 0,
    do: rpc(a, __MODULE__, :measure_rtt_us, [b, samples])

  @doc """
  Median round-trip time, in microseconds, of `samples` calls
  `:erpc.call(target, :erlang, :node, [])` from the calling node. This is
  what `node_rtt_us/3` runs on its first node.
  """
  @spec measure_rtt_us(node(), pos_integer()) :: non_neg_integer()
  def measure_rtt_us(target, samples) do
    _ = :erpc.call(target, :erlang, :node, [])

    1..samples
    |> Enum.map(fn _ -> elem(:timer.tc(:erpc, :call, [target, :erlang, :node, []]), 0) end)
    |> Enum.sort()
    |> Enum.at(div(samples, 2))
  end

  # --- helpers -------------------------------------------------------------------

  @doc """
  Listening ports of the delay proxies set up for the a<->b link by
  `set_latency/3` (`[]` when there is no latency set).
  """
  @spec proxy_ports(node(), node()) :: [:inet.port_number()]
  def proxy_ports(a, b) do
    table()

    case latency_proxies(a, b) do
      nil -> []
      {_, proxies} -> Enum.map(proxies, &DelayProxy.port/1)
    end
  end

  @doc """
  Starts a process on `node`, registered as `name`, that sends
  `{:forwarded, name, node, message}` to `dest` for every message it gets.
  Handy to see which messages sent to `{name, node}` arrive. It lives until
  the node stops (or it is sent `:stop`); returns its pid.
  """
  @spec start_forwarder(node(), atom(), pid()) :: pid()
  def start_forwarder(node, name, dest) when is_atom(name) and is_pid(dest) do
    pid = rpc(node, :erlang, :spawn, [__MODULE__, :forward_loop, [name, dest]])

    wait_until("#{inspect(name)} to be registered on #{node}", fn ->
      rpc(node, Process, :whereis, [name]) == pid
    end)

    pid
  end

  @doc "The loop of `start_forwarder/3` (runs on the forwarding node)."
  @spec forward_loop(atom(), pid()) :: :ok
  def forward_loop(name, dest) do
    Process.register(self(), name)
    do_forward(name, dest)
  end

  defp do_forward(name, dest) do
    receive do
      :stop ->
        :ok

      message ->
        send(dest, {:forwarded, name, node(), message})
        do_forward(name, dest)
    end
  end

  @doc """
  Calls `m.f(a)` on `node` (`:erpc.call/5`, or locally when `node` is the
  calling node) with a `timeout` in milliseconds (default 15_000).
  """
  @spec rpc(node(), module(), atom(), [term()], timeout()) :: term()
  def rpc(node, m, f, a, timeout \\ 15_000) when is_atom(node) and is_list(a) do
    if node == node(), do: apply(m, f, a), else: :erpc.call(node, m, f, a, timeout)
  end

  @doc """
  The remote port of `node`'s distribution connection as seen from the
  calling node, or `nil` when not connected. For a connection made through a
  delay proxy by this node, it is the proxy's port.
  """
  @spec dist_peer_port(node()) :: :inet.port_number() | nil
  def dist_peer_port(node) do
    with {_, ctrl} when is_port(ctrl) <- List.keyfind(:erlang.system_info(:dist_ctrl), node, 0),
         {:ok, {_ip, port}} <- :inet.peername(ctrl) do
      port
    else
      _ -> nil
    end
  end

  @doc """
  Stops `global`'s overlapping-partition prevention on the calling node.

  OTP 25 `global` reads `prevent_overlapping_partitions` (default `true`) once
  at start; with it, losing one link makes a node disconnect from every node
  that still sees the lost one, which would turn `partition/2` between the
  caller and a peer into a full split. This sets the kernel env to `false`
  (for a future restart of `global`) and flips the flag in the running
  `global` server's state; it raises if the state does not have the expected
  shape. Called by `start_nodes/2`, `partition/2` and `set_latency/3`.
  """
  @spec disable_partition_prevention() :: :ok
  def disable_partition_prevention do
    Application.put_env(:kernel, :prevent_overlapping_partitions, false)

    :sys.replace_state(:global_name_server, fn state ->
      case conf_index(state) do
        nil -> state
        i -> put_elem(state, i, put_elem(elem(state, i), 2, false))
      end
    end)

    if partition_prevention?() do
      raise "could not turn off global's prevent_overlapping_partitions on #{node()}"
    end

    :ok
  end

  @doc "Whether `global` on the calling node prevents overlapping partitions."
  @spec partition_prevention?() :: boolean()
  def partition_prevention? do
    state = :sys.get_state(:global_name_server)

    case conf_index(state) do
      nil -> true
      i -> elem(elem(state, i), 2)
    end
  end

  @doc """
  Makes the calling node distributed with a short name if it is not yet
  (starting `epmd -daemon` first). Benchmarks and the demo rely on it.
  """
  @spec ensure_distributed() :: :ok
  def ensure_distributed do
    unless Node.alive?() do
      {_, 0} = System.cmd("epmd", ["-daemon"])
      name = :"jido_main_#{:os.getpid()}_#{System.unique_integer([:positive])}"
      {:ok, _} = Node.start(name, :shortnames)
    end

    :ok
  end

  @doc "Nodes started by `start_nodes/2` and not stopped yet."
  @spec nodes() :: [node()]
  def nodes do
    table()
    for {{:peer, node}, _} <- :ets.tab2list(@table), do: node
  end

  # --- booting -------------------------------------------------------------------

  defp normalize_spec!(name) when is_atom(name), do: normalize_spec!(name: name)

  defp normalize_spec!(spec) when is_list(spec) do
    case Keyword.keys(spec) -- [:name, :location, :env] do
      [] ->
        :ok

      [key | _] ->
        raise ArgumentError, "unknown node spec key #{inspect(key)} in #{inspect(spec)}"
    end

    name = Keyword.get(spec, :name, :peer)

    unless is_atom(name),
      do: raise(ArgumentError, "the :name of a node spec must be an atom, got: #{inspect(name)}")

    spec
  end

  defp normalize_spec!(spec),
    do:
      raise(ArgumentError, "a node spec must be a keyword list or an atom, got: #{inspect(spec)}")

  # Boots all specs at once (`:peer` notifies us asynchronously), retrying
  # the ones that failed, e.g. because another process took the picked port.
  # Returns peers in spec order, each registered in the table.
  defp boot_all(specs, opts, attempts) do
    specs |> Enum.with_index() |> boot_indexed(opts, attempts) |> Enum.sort_by(& &1.index)
  end

  defp boot_indexed(indexed, opts, attempts) do
    ref = make_ref()
    deadline = System.monotonic_time(:millisecond) + Keyword.get(opts, :boot_timeout, 30_000)

    results =
      indexed
      |> Enum.zip(free_ports(length(indexed)))
      |> Enum.map(fn {{spec, index}, port} -> boot(spec, index, port, ref, opts) end)
      |> Enum.map(&await_boot(&1, ref, deadline))

    {ok, failed} = Enum.split_with(results, &is_map/1)
    Enum.each(ok, &:ets.insert(@table, {{:peer, &1.node}, &1}))

    cond do
      failed == [] ->
        ok

      attempts > 1 ->
        ok ++
          boot_indexed(
            for({:error, peer, _} <- failed, do: {peer.spec, peer.index}),
            opts,
            attempts - 1
          )

      true ->
        stop_nodes(Enum.map(ok, & &1.node))

        raise "could not boot peer nodes: #{inspect(for {:error, p, reason} <- failed, do: {p.spec, reason})}"
    end
  end

  defp boot(spec, index, port, ref, opts) do
    name = "#{spec[:name] || :peer}_#{System.unique_integer([:positive])}_#{:os.getpid()}"

    args =
      [~c"-kernel", ~c"inet_dist_listen_min", ~c"#{port}", ~c"inet_dist_listen_max", ~c"#{port}"] ++
        peer_args(:erlang.get_cookie(), opts)

    {:ok, pid, node} =
      :peer.start_link(%{
        name: String.to_charlist(name),
        host: host(),
        connection: :standard_io,
        args: args,
        wait_boot: {self(), ref}
      })

    Process.group_leader(pid, PeerLog.start(pid, node))

    %{spec: spec, index: index, pid: pid, node: node, port: port, os_pid: nil}
  end

  defp await_boot(%{pid: pid} = peer, ref, deadline) do
    timeout = max(0, deadline - System.monotonic_time(:millisecond))

    receive do
      {^ref, {:started, _node, ^pid}} -> peer
      {^ref, {:boot_failed, reason, ^pid}} -> {:error, peer, reason}
    after
      timeout ->
        stop_peer(peer)
        {:error, peer, :boot_timeout}
    end
  end

  @doc """
  The `erl` arguments every harness peer boots with (besides its name and
  distribution port): `cookie`, `-kernel prevent_overlapping_partitions
  false`, `-epmd_module Jido.Distributed.Test.Epmd`, no scheduler busy-wait
  (the machine is shared), `-pa` with the caller's code paths that OTP does
  not have, then `opts[:args]` (strings or charlists). Also used by
  `Jido.Distributed.Test.Testbed`.
  """
  @spec peer_args(atom(), keyword()) :: [charlist()]
  def peer_args(cookie, opts) when is_atom(cookie) and is_list(opts) do
    [
      ~c"-setcookie",
      Atom.to_charlist(cookie),
      ~c"-kernel",
      ~c"prevent_overlapping_partitions",
      ~c"false",
      ~c"-epmd_module",
      Atom.to_charlist(Epmd),
      # Do not spin idle schedulers: the machine is shared.
      ~c"+sbwt",
      ~c"none",
      ~c"+sbwtdcpu",
      ~c"none",
      ~c"+sbwtdio",
      ~c"none",
      ~c"-pa"
      | code_paths()
    ] ++ Enum.map(Keyword.get(opts, :args, []), &to_charlist/1)
  end

  # Only the paths OTP does not already have (this project, Elixir, ...).
  defp code_paths do
    otp = :code.lib_dir()
    for path <- :code.get_path(), path != ~c".", not List.starts_with?(path, otp), do: path
  end

  defp free_ports(n) do
    sockets = for _ <- 1..n, do: elem(:gen_tcp.listen(0, reuseaddr: true), 1)
    ports = for s <- sockets, do: elem(:inet.port(s), 1)
    Enum.each(sockets, &:gen_tcp.close/1)
    ports
  end

  defp setup_peer(peer, opts) do
    node = peer.node
    true = Node.connect(node)
    os_pid = :erpc.call(node, :os, :getpid, [])
    :ets.insert(@table, {{:peer, node}, %{peer | os_pid: List.to_integer(os_pid)}})
    configure_peer(node, &:erpc.call(node, &1, &2, &3), peer.spec, opts)
  end

  @doc """
  Sets up a booted peer the way `start_nodes/2` does: starts Logger at
  `opts[:log_level]` (default `:warning`), loads `:jido_distributed` with the
  caller's app env merged with `opts[:env]`, `spec[:env]` and
  `spec[:location]`, and starts it unless `opts[:start_app]` is `false`.
  `call` runs `apply(m, f, a)` on the peer (over distribution or `:peer.call/4`);
  `node` only names the peer in errors. Also used by `Jido.Distributed.Test.Testbed`.
  """
  @spec configure_peer(node(), (module(), atom(), list() -> term()), keyword(), keyword()) :: :ok
  def configure_peer(node, call, spec, opts) do
    {:ok, _} = call.(:application, :ensure_all_started, [:logger])
    :ok = call.(Logger, :configure, [[level: Keyword.get(opts, :log_level, :warning)]])

    env =
      @app
      |> Application.get_all_env()
      |> Keyword.merge(Keyword.get(opts, :env, []))
      |> Keyword.merge(Keyword.get(spec, :env, []))
      |> then(fn env ->
        case Keyword.fetch(spec, :location) do
          {:ok, location} -> Keyword.put(env, :location, location)
          :error -> env
        end
      end)

    case call.(:application, :load, [@app]) do
      :ok -> :ok
      {:error, {:already_loaded, @app}} -> :ok
    end

    :ok = call.(:application, :set_env, [[{@app, env}], [persistent: true]])

    if Keyword.get(opts, :start_app, true) do
      case call.(:application, :ensure_all_started, [@app]) do
        {:ok, _} -> :ok
        {:error, reason} -> raise "could not start #{@app} on #{node}: #{inspect(reason)}"
      end
    end

    :ok
  end

  defp mesh(nodes) do
    targets = Enum.uniq(nodes ++ Node.list())

    parallel!(nodes, fn n ->
      for t <- targets, t != n, do: rpc(n, :net_kernel, :connect_node, [t])

      wait_until("#{n} to connect to #{inspect(targets)}", fn ->
        connected = rpc(n, Node, :list, [])
        Enum.all?(targets, &(&1 == n or &1 in connected))
      end)
    end)
  end

  defp stop_peer(%{pid: pid, node: node, os_pid: os_pid}) do
    try do
      :peer.stop(pid)
    catch
      :exit, _ -> :ok
    end

    wait_until("#{node} to disconnect", fn ->
      :erlang.disconnect_node(node)
      node not in Node.list(:connected)
    end)

    if os_pid do
      wait_until("OS process #{os_pid} of #{node} to exit", fn ->
        not File.exists?("/proc/#{os_pid}")
      end)
    end

    :ok
  end

  # --- latency internals ---------------------------------------------------------

  # The proxies of the a<->b link; an entry whose proxies stopped by
  # themselves (a watched peer died) is dropped.
  defp latency_proxies(a, b) do
    Enum.find_value([{:latency, a, b}, {:latency, b, a}], fn key ->
      case :ets.lookup(@table, key) do
        [{^key, proxies}] ->
          if Enum.all?(proxies, &Process.alive?/1) do
            {key, proxies}
          else
            :ets.delete(@table, key)
            Enum.each(proxies, &DelayProxy.stop/1)
            nil
          end

        [] ->
          nil
      end
    end)
  end

  # Nodes started by start_nodes/2 run the harness epmd module, so their
  # look-ups can be redirected.
  defp redirectable?(node), do: :ets.member(@table, {:peer, node})

  defp start_proxy(node, one_way_us, watch) do
    {ip, port} = dist_address(node)

    {:ok, proxy} =
      DelayProxy.start(target: {ip, port}, listen_ip: ip, delay_us: one_way_us, watch: watch)

    {proxy, DelayProxy.port(proxy)}
  end

  defp dist_address(node) do
    [name, host] = node |> Atom.to_charlist() |> :string.split(~c"@")
    {:ok, ip} = :inet.getaddr(host, :inet)

    case :erl_epmd.port_please(name, ip) do
      {:port, port, _version} -> {ip, port}
      other -> raise "no distribution port for #{node}: #{inspect(other)}"
    end
  end

  # Re-establishes a<->b from a side whose look-ups are redirected, and
  # checks that the new connection runs through a proxy (something else
  # may connect directly in between: then try again).
  defp reroute!(a, b, {_, to_b_port} = to_b, {_, to_a_port} = to_a, attempts \\ 5) do
    {initiator, other} = if redirectable?(a), do: {a, b}, else: {b, a}

    if other == node() do
      # The link that would carry a reply is the one being replaced.
      :erpc.cast(initiator, __MODULE__, :reconnect, [other])
    else
      rpc(initiator, __MODULE__, :reconnect, [other])
    end

    # Something on the calling node may connect directly in between; then
    # no proxied connection shows up and we try again.
    up? =
      await(
        fn ->
          link_up?(a, b) and Enum.any?([to_b, to_a], &(DelayProxy.stats(elem(&1, 0)).active > 0))
        end,
        5_000
      )

    cond do
      up? and (proxied?(a, b, to_b_port) or proxied?(b, a, to_a_port)) -> :ok
      attempts > 1 -> reroute!(a, b, to_b, to_a, attempts - 1)
      true -> raise "could not route #{a} <-> #{b} through the delay proxy"
    end
  end

  # Whether x's connection to y goes to y's proxy; asked on x only when the
  # calling node is connected to x (or is x), so asking creates no connection.
  defp proxied?(x, y, proxy_port), do: rpc(x, __MODULE__, :dist_peer_port, [y]) == proxy_port

  @doc """
  Drops the calling node's connection to `other`, waits until it is gone and
  connects again; returns `:net_kernel.connect_node/1`'s result.
  `set_latency/3` runs it on the node whose epmd look-ups are redirected.
  """
  @spec reconnect(node()) :: boolean() | :ignored
  def reconnect(other) do
    :erlang.disconnect_node(other)
    await_disconnect(other, System.monotonic_time(:millisecond) + 5_000)
    :net_kernel.connect_node(other)
  end

  defp await_disconnect(other, deadline) do
    if other in Node.list(:connected) and System.monotonic_time(:millisecond) < deadline do
      Process.sleep(10)
      await_disconnect(other, deadline)
    end
  end

  defp try_delete_override(x, y) do
    if redirectable?(x), do: rpc(x, Epmd, :delete_override, [y])
    :ok
  catch
    _, _ -> :ok
  end

  # --- small helpers -------------------------------------------------------------

  # Link checks and changes between a and b. When the calling node is one
  # side, they are made on the calling node only: asking the other side over
  # distribution would itself (re)connect them.
  defp link_up?(a, b) when a == node(), do: b in Node.list()
  defp link_up?(a, b) when b == node(), do: a in Node.list()
  defp link_up?(a, b), do: b in rpc(a, Node, :list, []) and a in rpc(b, Node, :list, [])

  defp link_down?(a, b) when a == node(), do: b not in Node.list(:connected)
  defp link_down?(a, b) when b == node(), do: a not in Node.list(:connected)

  defp link_down?(a, b),
    do: b not in rpc(a, Node, :list, [:connected]) and a not in rpc(b, Node, :list, [:connected])

  defp disconnect(a, b) when b == node(), do: :erlang.disconnect_node(a)
  defp disconnect(a, b), do: rpc(a, :erlang, :disconnect_node, [b])

  defp connect!(a, b) do
    {x, y} = if b == node(), do: {b, a}, else: {a, b}

    wait_until("#{a} and #{b} to connect", fn ->
      rpc(x, :net_kernel, :connect_node, [y])
      link_up?(a, b)
    end)
  end

  defp host do
    [_, host] = node() |> Atom.to_charlist() |> :string.split(~c"@")
    host
  end

  defp conf_index(state) when is_tuple(state) do
    Enum.find(0..(tuple_size(state) - 1), fn i ->
      match?({:conf, _, pop} when is_boolean(pop), elem(state, i))
    end)
  end

  defp conf_index(_), do: nil

  # Runs `fun` on every element concurrently; an error in one is raised in
  # the caller once all are done (a crashing linked task would kill it).
  defp parallel!(enum, fun) do
    enum
    |> Task.async_stream(
      fn x ->
        try do
          fun.(x)
          :ok
        catch
          kind, reason -> {:error, Exception.format(kind, reason, __STACKTRACE__)}
        end
      end,
      timeout: :infinity
    )
    |> Enum.flat_map(fn {:ok, result} -> if result == :ok, do: [], else: [result] end)
    |> case do
      [] -> :ok
      [{:error, message} | _] -> raise message
    end
  end

  @doc """
  Calls `fun` every `interval` milliseconds (default 20) until it returns
  `true` (then returns `true`) or `timeout` milliseconds have passed (then
  `false`). Also used by `Jido.Distributed.Test.Testbed` and its tests.
  """
  @spec await((() -> boolean()), non_neg_integer(), pos_integer()) :: boolean()
  def await(fun, timeout, interval \\ 20),
    do: do_await(fun, System.monotonic_time(:millisecond) + timeout, interval)

  defp do_await(fun, deadline, interval) do
    cond do
      fun.() ->
        true

      System.monotonic_time(:millisecond) > deadline ->
        false

      true ->
        Process.sleep(interval)
        do_await(fun, deadline, interval)
    end
  end

  @doc "Like `await/2`, but raises `timed out waiting for <what>` on timeout."
  @spec wait_until(String.t(), (() -> boolean()), non_neg_integer()) :: :ok
  def wait_until(what, fun, timeout \\ @wait_ms) do
    if await(fun, timeout), do: :ok, else: raise("timed out waiting for #{what}")
  end

  # The registry: a public ETS table owned by a process that outlives callers
  # (tests' on_exit callbacks run in another process than the test).
  defp table do
    if :ets.whereis(@table) == :undefined do
      parent = self()
      ref = make_ref()

      spawn(fn ->
        try do
          :ets.new(@table, [:named_table, :public, :set])
          send(parent, {ref, :ok})
          Process.sleep(:infinity)
        rescue
          ArgumentError -> send(parent, {ref, :ok})
        end
      end)

      receive do
        {^ref, :ok} -> :ok
      end
    end

    @table
  end
end

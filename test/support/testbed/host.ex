defmodule Jido.Distributed.Test.Testbed.Host do
  @moduledoc """
  One BEAM peer inside a testbed namespace: booting it, talking to it and
  acting on its OS process.

  The peer is a `:peer` node started as `ip netns exec NS erl -name
  NAME@ADDRESS ...` with `connection: :standard_io`: the controlling VM
  (in the root namespace, which cannot reach the testbed addresses) talks
  to it over the port's stdin/stdout, so cutting the network never cuts the
  control channel. It boots with `Jido.Distributed.Test.Cluster.peer_args/2`
  (code paths, cookie, the harness epmd module), a distribution port in
  4370..4399 and `-kernel net_ticktime N` when asked.

  What the peer prints goes to `Jido.Distributed.Test.PeerLog`. The peer is
  linked to the process that boots it (the testbed server): when that
  process dies the port closes and the peer halts on end of input.
  """

  alias Jido.Distributed.Test.{Cluster, PeerLog}
  alias Jido.Distributed.Test.Testbed.NodeWatch

  @typedoc "A booted (or booting) peer."
  @type t :: %{
          name: atom(),
          node: node(),
          ns: String.t(),
          pid: pid() | nil,
          os_pid: pos_integer() | nil,
          ref: reference() | nil
        }

  @doc """
  Starts booting the peer `name` at `address` in namespace `ns`; the
  caller gets `{ref, {:started, node, pid}}` or `{ref, {:boot_failed, ...}}`
  (see `await/2`).

  ## Options

    * `:cookie` (required) - the distribution cookie (atom).
    * `:net_ticktime` - seconds, or `nil` for OTP's default.
    * `:args` - more `erl` arguments.
  """
  @spec boot(atom(), String.t(), String.t(), keyword()) :: t()
  def boot(name, address, ns, opts) do
    ref = make_ref()

    tick =
      case Keyword.get(opts, :net_ticktime) do
        nil -> []
        seconds -> [~c"-kernel", ~c"net_ticktime", ~c"#{seconds}"]
      end

    args =
      [~c"-kernel", ~c"inet_dist_listen_min", ~c"4370", ~c"inet_dist_listen_max", ~c"4399"] ++
        tick ++ Cluster.peer_args(Keyword.fetch!(opts, :cookie), opts)

    {:ok, pid, node} =
      :peer.start_link(%{
        name: Atom.to_charlist(name),
        host: String.to_charlist(address),
        longnames: true,
        exec: {~c"/usr/sbin/ip", [~c"netns", ~c"exec", String.to_charlist(ns), erl()]},
        connection: :standard_io,
        args: args,
        wait_boot: {self(), ref}
      })

    Process.group_leader(pid, PeerLog.start(pid, node))
    %{name: name, node: node, ns: ns, pid: pid, os_pid: nil, ref: ref}
  end

  defp erl do
    case System.find_executable("erl") do
      nil -> raise "erl not found in PATH"
      path -> String.to_charlist(path)
    end
  end

  @doc """
  Waits for the boot started by `boot/4`, then sets the peer up: reads its
  OS pid, starts a `Jido.Distributed.Test.Testbed.NodeWatch`, configures and
  starts the app with `Jido.Distributed.Test.Cluster.configure_peer/4`
  (`spec` is the host's node spec, `opts` the testbed's options).
  Returns the ready host or `{:error, reason}`.
  """
  @spec await(t(), non_neg_integer(), keyword(), keyword()) :: {:ok, t()} | {:error, term()}
  def await(%{ref: ref, pid: pid} = host, timeout, spec, opts) do
    receive do
      {^ref, {:started, _node, ^pid}} ->
        os_pid = call(host, :os, :getpid, []) |> List.to_integer()
        host = %{host | os_pid: os_pid, ref: nil}
        {:ok, _} = call(host, NodeWatch, :start, [])
        Cluster.configure_peer(host.node, &call(host, &1, &2, &3, 60_000), spec, opts)
        {:ok, host}

      {^ref, {:boot_failed, reason, ^pid}} ->
        {:error, {:boot_failed, host.name, reason}}
    after
      timeout -> {:error, {:boot_timeout, host.name}}
    end
  end

  @doc "Runs `apply(m, f, a)` on the peer over its control channel (`:peer.call/5`)."
  @spec call(t(), module(), atom(), list(), timeout()) :: term()
  def call(%{pid: pid}, m, f, a, timeout \\ 15_000), do: :peer.call(pid, m, f, a, timeout)

  @doc "Sends a signal (`\"STOP\"`, `\"CONT\"`, `\"KILL\"`) to the peer's OS process."
  @spec signal(pos_integer(), String.t()) :: :ok
  def signal(os_pid, signal), do: Jido.Distributed.Test.Testbed.Net.signal([os_pid], signal)
end

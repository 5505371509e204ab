defmodule Jido.Distributed.Monitor do
  @moduledoc """
  What this node knows of the network: which peers it can reach, how far
  they are, and when that changes.

  Each node runs one Monitor (`Jido.Distributed.Monitor.Server`). Peers
  are the visible nodes this node is connected to that run one too.

  ## Reachability

  Per peer: `:up`, `:suspect` (silent longer than usual), `:unreachable`
  (no direct path now; a relay may still reach it) or `:down` (gone).
  Detection is a phi-accrual detector over UDP heartbeats sent every
  `:heartbeat_ms` (100 ms by default), which never queue behind data
  frames and resume the moment a partition heals; a suspect peer is
  checked through up to `:indirect_probes` other peers before it is
  declared unreachable, and a node that was itself stalled (a long GC, a
  paused VM) accuses nobody for the silence it caused. With the defaults
  a peer with regular heartbeats is suspect after about 0.3 s of silence
  and unreachable after about 0.4 s (0.5 s when other peers still hear
  it); jitter raises both; an
  unreachable peer is `:down` after `:down_after_ms`.

  An unreachable or down peer gets routing weight `:infinity` in
  `Jido.Router` (and its normal weight back on recovery) without any
  manual call.

  ## Latency

  RTT to each peer from pings over distribution (so it includes what data
  frames see) every `:rtt_probe_ms`; every Monitor gossips its row, so
  `latency_matrix/0` has every node's view. The distance class of a peer
  follows its smoothed RTT (`:same_zone_rtt_us`, `:same_region_rtt_us`),
  with hysteresis.

  ## Events

  `subscribe/0` delivers `{:jido_topology, event}` to the caller, where
  `event` is `{:node_up | :suspect | :unreachable | :recovered |
  :node_down, node}` or `{:class_changed, node, old, new}`. Telemetry:
  `[:jido, :distributed, :monitor, :topology]` (metadata `event`, `node`)
  and `[:jido, :distributed, :monitor, :malformed]`.

  ## Settings

  Under `config :jido_distributed, monitor: [...]`; see `Jido.Distributed`.
  """

  alias Jido.Distributed.Monitor.Server

  @typedoc "Reachability of a peer."
  @type status :: Jido.Distributed.Monitor.Peer.status()

  @doc """
  The reachability of every peer: `%{node => status}`.

      iex> is_map(Jido.Distributed.Monitor.reachability())
      true
  """
  @spec reachability() :: %{node() => status()}
  def reachability do
    Map.new(rows(), fn {node, status, _class, _srtt} -> {node, status} end)
  end

  @doc """
  The reachability of `node`: its status, `:local` for this node, or
  `:unknown` for a node that is not a peer.

      iex> Jido.Distributed.Monitor.status(node())
      :local
      iex> Jido.Distributed.Monitor.status(:"nobody@nowhere.invalid")
      :unknown
  """
  @spec status(node()) :: status() | :local | :unknown
  def status(node) when node == node(), do: :local

  def status(node) when is_atom(node) do
    case lookup(node) do
      [{^node, status, _, _}] -> status
      _ -> :unknown
    end
  end

  def status(other),
    do: raise(ArgumentError, "the node argument must be an atom, got: #{inspect(other)}")

  @doc """
  True unless the Monitor has found `node` `:unreachable` or `:down`
  (a node it does not know is not held against).
  """
  @spec reachable?(node()) :: boolean()
  # status/1 raises ArgumentError for a non-atom.
  def reachable?(node), do: status(node) not in [:unreachable, :down]

  @doc "The measured distance class of `node`, `nil` before enough RTT samples."
  @spec class(node()) :: Jido.Distributed.Routing.Location.class() | nil
  def class(node) when node == node(), do: :local

  def class(node) when is_atom(node) do
    case lookup(node) do
      [{^node, _, class, _}] -> class
      _ -> nil
    end
  end

  def class(other),
    do: raise(ArgumentError, "the node argument must be an atom, got: #{inspect(other)}")

  @doc """
  The latency matrix: for each node whose row this node has (itself
  included), `%{row: %{peer => srtt_us}, age_ms: ms}`.
  """
  @spec latency_matrix() :: %{node() => %{row: %{node() => float()}, age_ms: non_neg_integer()}}
  def latency_matrix, do: GenServer.call(Server, :matrix)

  @doc """
  Details per peer (status and since when, phi, class, RTT summary,
  whether UDP heartbeats flow, which peers still heard it), counters, and
  the heartbeat socket's byte and packet counts (`udp`).
  """
  @spec stats() :: map()
  def stats, do: GenServer.call(Server, :details)

  @doc """
  Traffic per node over the last `:gossip_ms`: `signals_out_per_s` and
  `bytes_out_per_s` (what this node's Link sent, compressed bytes),
  `signals_in_per_s` and `bytes_in_per_s` (what its Receiver delivered).
  """
  @spec traffic() :: %{node() => %{atom() => float()}}
  def traffic, do: GenServer.call(Server, :traffic)

  @doc "Delivers `{:jido_topology, event}` to the caller from now on."
  @spec subscribe() :: :ok
  def subscribe, do: GenServer.call(Server, :subscribe)

  @doc "Stops `subscribe/0`'s messages."
  @spec unsubscribe() :: :ok
  def unsubscribe, do: GenServer.call(Server, :unsubscribe)

  defp rows do
    if :ets.whereis(Server.table()) == :undefined, do: [], else: :ets.tab2list(Server.table())
  end

  defp lookup(node) do
    if :ets.whereis(Server.table()) == :undefined,
      do: [],
      else: :ets.lookup(Server.table(), node)
  end
end

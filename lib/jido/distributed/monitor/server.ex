defmodule Jido.Distributed.Monitor.Server do
  @moduledoc """
  The Monitor process of this node (see `Jido.Distributed.Monitor` for what
  it offers). It

    * sends a UDP heartbeat to every peer every `:heartbeat_ms`, and reads
      theirs (a peer that does not hear ours gets them over distribution
      instead);
    * runs one `Jido.Distributed.Monitor.Peer` per peer: phi-accrual
      suspicion, indirect probes through up to `:indirect_probes` other
      peers before it declares a peer unreachable, and RTT from pings over
      distribution every `:rtt_probe_ms`;
    * excuses every peer's silence after its own scheduler was stalled
      (a long GC, a paused VM): it accuses nobody for what it could not
      hear;
    * gossips its row of the latency matrix every `:gossip_ms`;
    * publishes reachability and classes in an ETS table (read without a
      message), to subscribers as `{:jido_topology, event}`, to the
      Router's weights and as telemetry.

  Everything arriving from other nodes is checked by
  `Jido.Distributed.Monitor.Wire`; garbage is counted, never a crash.
  """
  use GenServer

  require Logger

  alias Jido.Distributed.Monitor.{Events, Net, Peer, Rtt, Traffic, Wire}
  alias Jido.Distributed.Transport.Receiver
  alias Jido.Distributed.{Malformed, Options}

  @table :jido_distributed_monitor

  @doc "Starts the Monitor server, registered under its module name."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc false
  def table, do: @table

  ## Server

  @impl true
  def init(_opts) do
    opts = Options.get(:monitor)
    :ok = :net_kernel.monitor_nodes(true, node_type: :visible)
    {socket, port} = Net.open_socket(opts[:udp_port])
    now = now_ms()

    state = %{
      opts: opts,
      socket: socket,
      port: port,
      peers: %{},
      endpoints: %{},
      seq: 0,
      heard: %{},
      acked_by: %{},
      pings: %{},
      probes: %{},
      matrix: %{},
      subscribers: %{},
      next_tick: now + opts[:heartbeat_ms],
      malformed: 0,
      logged: MapSet.new(),
      traffic_sample: nil,
      frames_seen: %{},
      traffic: %{},
      stalls: 0
    }

    state = Enum.reduce(Node.list(), state, &add_peer(&2, &1, now, true))
    Process.send_after(self(), :tick, opts[:heartbeat_ms])
    Process.send_after(self(), :rtt, opts[:rtt_probe_ms])
    Process.send_after(self(), :gossip, opts[:gossip_ms])
    {:ok, state}
  end

  @impl true
  def handle_call(:subscribe, {pid, _}, state) do
    state =
      if Map.has_key?(state.subscribers, pid),
        do: state,
        else: %{state | subscribers: Map.put(state.subscribers, pid, Process.monitor(pid))}

    {:reply, :ok, state}
  end

  def handle_call(:unsubscribe, {pid, _}, state) do
    {ref, subscribers} = Map.pop(state.subscribers, pid)
    if ref, do: Process.demonitor(ref, [:flush])
    {:reply, :ok, %{state | subscribers: subscribers}}
  end

  def handle_call(:traffic, _from, state), do: {:reply, state.traffic, state}

  def handle_call(:matrix, _from, state) do
    now = now_ms()
    own = %{row: own_row(state), age_ms: 0}

    others =
      Map.new(state.matrix, fn {node, {row, at}} -> {node, %{row: row, age_ms: now - at}} end)

    {:reply, Map.put(others, node(), own), state}
  end

  def handle_call(:details, _from, state) do
    now = now_ms()

    peers =
      Map.new(state.peers, fn {node, p} ->
        {node,
         %{
           status: p.status,
           since_ms: now - p.since,
           phi: Float.round(Peer.phi(p, now), 2),
           class: p.class,
           rtt: Rtt.summary(p.rtt),
           udp: Map.has_key?(state.endpoints, node),
           heard_via: p.heard_via
         }}
      end)

    udp = Net.udp_stats(state.socket)

    {:reply,
     %{
       peers: peers,
       malformed: state.malformed,
       stalls: state.stalls,
       port: state.port,
       udp: udp
     }, state}
  end

  @impl true
  def handle_info(:tick, state) do
    now = now_ms()
    hb = state.opts[:heartbeat_ms]
    late = now - state.next_tick
    Process.send_after(self(), :tick, hb)
    state = %{state | next_tick: now + hb}

    state =
      if late > state.opts[:stall_ms] do
        # This node could not run: whatever it did not hear meanwhile is
        # its own doing.
        peers = Map.new(state.peers, fn {n, p} -> {n, Peer.excuse(p, now)} end)
        %{state | peers: peers, stalls: state.stalls + 1}
      else
        state |> frames_as_signs(now) |> check_peers(now)
      end

    {:noreply, state |> send_heartbeats(now) |> expire_probes(now)}
  end

  def handle_info(:rtt, state) do
    Process.send_after(self(), :rtt, state.opts[:rtt_probe_ms])
    sent = System.monotonic_time(:microsecond)

    pings =
      Enum.reduce(state.peers, state.pings, fn
        {node, %{status: status}}, pings when status in [:up, :suspect] ->
          ref = make_ref()
          dist_send(node, Wire.build({:ping, node(), ref, sent}))
          Map.put(pings, ref, node)

        _, pings ->
          pings
      end)

    # Pings unanswered for several rounds are forgotten.
    pings = if map_size(pings) > 4 * max(map_size(state.peers), 1), do: %{}, else: pings
    {:noreply, %{state | pings: pings}}
  end

  def handle_info(:gossip, state) do
    Process.send_after(self(), :gossip, state.opts[:gossip_ms])
    row = own_row(state)

    for {node, %{status: :up}} <- state.peers,
        do: dist_send(node, Wire.build({:row, node(), row}))

    {:noreply, sample_traffic(state)}
  end

  def handle_info({:udp, socket, ip, port, data}, %{socket: socket} = state) do
    key_for = fn node -> if Map.has_key?(state.peers, node), do: Wire.key(node) end

    case Wire.parse_heartbeat(data, node(), key_for) do
      {:ok, %{from: from, seq: seq, ack: ack}} ->
        state = %{
          state
          | heard: Map.put(state.heard, from, seq),
            acked_by: Map.put(state.acked_by, from, ack),
            endpoints: Map.put(state.endpoints, from, {ip, port})
        }

        {:noreply, alive(state, from, now_ms())}

      {:error, reason} ->
        {:noreply, malformed(state, {:udp, reason})}
    end
  end

  def handle_info({:udp_passive, socket}, %{socket: socket} = state) do
    :inet.setopts(socket, active: 100)
    {:noreply, state}
  end

  def handle_info({:nodeup, node, _}, state),
    do: {:noreply, add_peer(state, node, now_ms(), true)}

  def handle_info({:nodedown, node, _}, state) do
    case state.peers do
      %{^node => p} ->
        {p, events} = Peer.disconnected(p, now_ms())
        {:noreply, state |> put_peer(p) |> publish(node, events)}

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:DOWN, _ref, :process, pid, _}, state),
    do: {:noreply, %{state | subscribers: Map.delete(state.subscribers, pid)}}

  def handle_info({:jido_mon, _, _, _} = msg, state), do: {:noreply, remote(state, msg)}
  def handle_info({:jido_mon, _, _} = msg, state), do: {:noreply, remote(state, msg)}
  def handle_info({:jido_mon, _, _, _, _} = msg, state), do: {:noreply, remote(state, msg)}
  def handle_info({:jido_mon, _, _, _, _, _} = msg, state), do: {:noreply, remote(state, msg)}
  def handle_info(other, state), do: {:noreply, malformed(state, {:message, other})}

  ## Messages from other Monitors

  # Only from a node this node is connected to: `from` is used as an address.
  defp remote(state, msg) do
    case Wire.check(msg) do
      {:ok, message} ->
        # From a node not connected (any more): sent before a disconnect,
        # or a forged sender; either way not to be answered.
        if :lists.member(elem(message, 1), Node.list()),
          do: handle_remote(state, message),
          else: state

      :error ->
        malformed(state, {:message, msg})
    end
  end

  defp handle_remote(state, {:hello, from, port, reply?}) do
    # Port 0: the peer has no heartbeat socket; it gets distribution beats.
    state =
      case Net.peer_ip(from) do
        {:ok, ip} when port > 0 ->
          %{state | endpoints: Map.put(state.endpoints, from, {ip, port})}

        _ ->
          %{state | endpoints: Map.delete(state.endpoints, from)}
      end

    state = add_peer(state, from, now_ms(), false)
    if reply?, do: dist_send(from, Wire.build({:hello, node(), state.port, false}))
    alive(state, from, now_ms())
  end

  defp handle_remote(state, {:beat, from}), do: alive(state, from, now_ms())

  defp handle_remote(state, {:ping, from, ref, sent}) do
    dist_send(from, Wire.build({:pong, node(), ref, sent}))
    alive(state, from, now_ms())
  end

  defp handle_remote(state, {:pong, from, ref, sent}) do
    case Map.pop(state.pings, ref) do
      {^from, pings} ->
        rtt = System.monotonic_time(:microsecond) - sent
        state = %{state | pings: pings}

        case state.peers do
          %{^from => p} ->
            p = Peer.rtt_sample(p, rtt)
            {p, events} = Peer.classify(p, thresholds(state), state.opts[:class_margin])
            state |> put_peer(p) |> publish(from, events) |> alive(from, now_ms())

          _ ->
            state
        end

      _ ->
        state
    end
  end

  defp handle_remote(state, {:probe, from, ref, target}) do
    heard =
      case state.peers do
        %{^target => %{last_alive: at}} when is_integer(at) -> now_ms() - at
        _ -> nil
      end

    dist_send(from, Wire.build({:probe_ack, node(), ref, target, heard}))
    alive(state, from, now_ms())
  end

  defp handle_remote(state, {:probe_ack, from, ref, target, heard}) do
    state = alive(state, from, now_ms())

    case Map.pop(state.probes, ref) do
      {{^target, ^from, _deadline}, probes} ->
        state = %{state | probes: probes}
        fresh = heard != nil and heard < 2 * state.opts[:heartbeat_ms]

        case state.peers do
          %{^target => p} when fresh -> put_peer(state, Peer.heard_via(p, from))
          _ -> state
        end

      _ ->
        state
    end
  end

  defp handle_remote(state, {:row, from, row}) do
    if Map.has_key?(state.peers, from),
      do: %{state | matrix: Map.put(state.matrix, from, {row, now_ms()})},
      else: state
  end

  ## Peers

  # This node itself is never its own peer (a nodeup for it can come when
  # distribution starts after the Monitor).
  defp add_peer(state, node, _now, _hello?) when node == node() or node == :nonode@nohost,
    do: state

  defp add_peer(state, node, now, hello?) do
    state =
      if Map.has_key?(state.peers, node),
        do: state,
        else: put_peer(state, Peer.new(node, now, peer_opts(state.opts)))

    if hello?, do: dist_send(node, Wire.build({:hello, node(), state.port, true}))
    state
  end

  defp alive(state, node, now) do
    case state.peers do
      %{^node => p} ->
        {p, events} = Peer.alive(p, now)
        state |> put_peer(p) |> publish(node, events)

      _ ->
        state
    end
  end

  # A frame from a peer, delivered by the Receiver since the last tick, is
  # a sign of life too (heartbeats still go out: under load the Receiver
  # may lag, and the peer must not depend on it).
  defp frames_as_signs(state, now) do
    Enum.reduce(Receiver.traffic(), state, fn {node, %{frames: frames}}, state ->
      case state.frames_seen do
        %{^node => ^frames} ->
          state

        %{^node => _older} ->
          %{state | frames_seen: Map.put(state.frames_seen, node, frames)}
          |> alive(node, now)

        # First look (after a start): a count, not news.
        _ ->
          %{state | frames_seen: Map.put(state.frames_seen, node, frames)}
      end
    end)
  catch
    # The transport is restarting: next tick.
    _, _ -> state
  end

  defp check_peers(state, now) do
    connected = Node.list()

    Enum.reduce(state.peers, state, fn {node, p}, state ->
      {p, events} = Peer.check(p, now)

      cond do
        # Gone for good: forget it.
        p.status == :down and now - p.since > p.down_after_ms and
            not :lists.member(node, connected) ->
          forget_peer(state, node)

        :suspect in events ->
          state |> put_peer(p) |> publish(node, events) |> start_probes(node, now)

        true ->
          state |> put_peer(p) |> publish(node, events)
      end
    end)
  end

  defp forget_peer(state, node) do
    :ets.delete(@table, node)

    %{
      state
      | peers: Map.delete(state.peers, node),
        endpoints: Map.delete(state.endpoints, node),
        heard: Map.delete(state.heard, node),
        acked_by: Map.delete(state.acked_by, node),
        matrix: Map.delete(state.matrix, node)
    }
  end

  defp start_probes(state, target, now) do
    helpers = for {n, %{status: :up}} <- state.peers, n != target, do: n

    deadline = now + 4 * state.opts[:heartbeat_ms]

    helpers
    |> Enum.take_random(state.opts[:indirect_probes])
    |> Enum.reduce(state, fn helper, state ->
      ref = make_ref()
      dist_send(helper, Wire.build({:probe, node(), ref, target}))
      %{state | probes: Map.put(state.probes, ref, {target, helper, deadline})}
    end)
  end

  defp expire_probes(state, now) do
    %{state | probes: Map.reject(state.probes, fn {_, {_, _, deadline}} -> deadline < now end)}
  end

  defp send_heartbeats(state, _now) do
    seq = state.seq + 1

    for node <- Map.keys(state.peers) do
      # A peer that has never acked our UDP heartbeats within a second
      # gets them over distribution too.
      udp_ok? = Map.get(state.acked_by, node, 0) > 0

      case state.endpoints do
        %{^node => {ip, port}} when state.socket != nil ->
          packet =
            Wire.heartbeat(node(), node, seq, Map.get(state.heard, node, 0), Wire.key(node))

          :gen_udp.send(state.socket, ip, port, packet)
          unless udp_ok? or seq < 10, do: dist_send(node, Wire.build({:beat, node()}))

        _ ->
          dist_send(node, Wire.build({:beat, node()}))
      end
    end

    %{state | seq: seq}
  end

  defp put_peer(state, %Peer{node: node} = p) do
    :ets.insert(@table, {node, p.status, p.class, Rtt.srtt(p.rtt)})
    %{state | peers: Map.put(state.peers, node, p)}
  end

  defp publish(state, _node, []), do: state

  defp publish(state, node, events) do
    Events.publish(Map.keys(state.subscribers), node, events)
    state
  end

  defp malformed(state, what) do
    kind =
      case what do
        {:udp, reason} -> {:udp, reason}
        {:message, m} when is_tuple(m) and tuple_size(m) > 1 -> {:message, elem(m, 1)}
        _ -> :message
      end

    logged = Malformed.report(state.logged, :monitor, kind, what, inspect(__MODULE__))
    %{state | malformed: state.malformed + 1, logged: logged}
  end

  defp sample_traffic(state) do
    {sample, traffic} = Traffic.sample(state.traffic_sample, state.traffic, now_ms())
    %{state | traffic_sample: sample, traffic: traffic}
  end

  defp own_row(state) do
    for {node, p} <- state.peers,
        srtt = Rtt.srtt(p.rtt),
        srtt != nil,
        into: %{},
        do: {node, Float.round(srtt, 1)}
  end

  defp thresholds(state),
    do: {state.opts[:same_zone_rtt_us], state.opts[:same_region_rtt_us]}

  defp peer_opts(opts) do
    [
      expected_ms: opts[:heartbeat_ms],
      min_std_ms: opts[:min_std_ms],
      suspect_phi: opts[:suspect_phi],
      unreachable_phi: opts[:unreachable_phi],
      down_after_ms: opts[:down_after_ms],
      indirect_grace_ms: opts[:indirect_grace_ms]
    ]
  end

  defp dist_send(node, message),
    do: :erlang.send({__MODULE__, node}, message, [:noconnect, :nosuspend])

  defp now_ms, do: System.monotonic_time(:millisecond)
end

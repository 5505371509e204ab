defmodule Jido.Distributed do
  @moduledoc """
  Fast, dependable signal delivery for Jido agents across BEAM nodes.

  Signals (maps or structs with at least `:id` and `:type`) are sent to
  targets: a pid (local or remote), `{name, node}`, or `{:agent, id}` for an
  agent registered in `Jido.Distributed.Directory`. Local targets get a
  plain `send/2`. Remote ones go through one Link per node, which batches
  signals into lz4-compressed frames with sequence numbers and acks, so
  nothing is lost or duplicated through disconnects, and signals from one
  process to one target arrive in the order sent.

      Jido.Distributed.send({:orders, :"app@host2"}, %{id: "1", type: "order.created"})
      Jido.Distributed.dispatch([{pid_a, signal}, {{:billing, :"app@host3"}, signal}])
      Jido.Distributed.send({:agent, "billing-1"}, signal)

  `route_and_send/2` picks the agent itself, preferring one on this node
  (see `Jido.Router`).

  ## Settings

  Set with `config :jido_distributed, key: value`, validated at start:

  #{Jido.Distributed.Options.docs()}

  ## Telemetry

  Events are emitted only when the `:telemetry` application is loaded:

    * `[:jido, :distributed, :link, :flush]` - measurements `frames`,
      `signals`, `raw_bytes`, `wire_bytes`; metadata `node`, `trigger`
      (`:idle | :timeout | :size | :flush | :reconnect`).
    * `[:jido, :distributed, :link, :ack]` - `signals` released; `node`, `seq`.
    * `[:jido, :distributed, :link, :retransmit]` - `frames`; `node`, `reason`.
    * `[:jido, :distributed, :link, :overflow]` - `signals`; `node`, `kind`
      (`:dropped` under `:drop_oldest`, `:rejected` under `:reject`).
    * `[:jido, :distributed, :link, :reject]` - `signals`; `node`, `reason`.
    * `[:jido, :distributed, :receiver, :malformed]` - `count`; `reason`.
    * `[:jido, :distributed, :directory, :sync]` - `agents` now known on
      `node`, whose Directory just sent this node a full copy; `node`.
    * `[:jido, :distributed, :directory, :peer_down]` - `agents` dropped from
      the replica; `node`, `reason` (why its Directory's monitor fired).
    * `[:jido, :distributed, :broadcast, :start | :stop]` - on the root of a
      tree broadcast; see `Jido.Distributed.TreeBroadcast`.
  """

  alias Jido.Distributed.{Directory, Message, Optimizer}
  alias Jido.Distributed.Transport.{Link, LinkBuffer, LinkStore, Receiver}

  @typedoc """
  Where a signal goes: a pid (local or remote), `{registered_name, node}`, or
  `{:agent, id}`, resolved through `Jido.Distributed.Directory.whereis/1`
  (so `{:agent, _}` always means an agent id, never a process registered as
  `:agent`).
  """
  @type target :: pid() | {atom(), node()} | {:agent, term()}

  @typedoc "Why a signal was not accepted."
  @type send_error ::
          {:invalid_target, term()}
          | {:unknown_target, target()}
          | {:unknown_agent, term()}
          | :buffer_full
          | :too_large
          | :not_distributed

  @doc """
  Sends `signal` to `target`.

  An `{:agent, id}` target is resolved through
  `Jido.Distributed.Directory.whereis/1` (an agent on this node first);
  `{:error, {:unknown_agent, id}}` if no agent has that id.

  Returns `:ok` once the signal is delivered (local target) or accepted by
  the node's Link (remote target), which then delivers it exactly once, in
  order, unless the sending node dies.

  ## Options

    * `:message_format` - what the target receives; see `Jido.Distributed.Message`.
      Defaults to `:signal`, so the target receives `{:signal, signal}`.

      iex> Jido.Distributed.send(self(), %{id: "1", type: "demo"})
      :ok
      iex> receive do
      ...>   msg -> msg
      ...> end
      {:signal, %{id: "1", type: "demo"}}
  """
  @spec send(target(), term(), keyword()) :: :ok | {:error, send_error()}
  def send(target, signal, opts \\ []) do
    message = Message.format(signal, Keyword.get(opts, :message_format, :signal))
    deliver(target, message)
  end

  defp deliver({:agent, id}, message) do
    with {:ok, pid} <- resolve_agent(id), do: deliver(pid, message)
  end

  defp deliver(pid, message) when is_pid(pid) and node(pid) == node() do
    Kernel.send(pid, message)
    :ok
  end

  defp deliver(pid, message) when is_pid(pid),
    do: Link.enqueue(node(pid), [:erlang.term_to_binary({pid, message})])

  defp deliver({name, node} = target, message) when is_atom(name) and node == node() do
    if Process.whereis(name) do
      Kernel.send(name, message)
      :ok
    else
      {:error, {:unknown_target, target}}
    end
  end

  defp deliver({name, node} = target, message) when is_atom(name) and is_atom(node) do
    if valid_node?(node),
      do: Link.enqueue(node, [:erlang.term_to_binary({name, message})]),
      else: {:error, {:invalid_target, target}}
  end

  defp deliver(target, _message), do: {:error, {:invalid_target, target}}

  @doc """
  Sends many signals, each to its target, in one pass: local ones directly,
  remote ones grouped into one buffer push per node.

  Returns `:ok`, or `{:error, failures}` listing `{target, reason}` for
  invalid targets and unknown agents, and `{node, reason}` for nodes whose
  signals were not accepted (every other signal was accepted). Takes the
  options of `send/3`.
  """
  @spec dispatch([{target(), term()}], keyword()) ::
          :ok | {:error, [{target() | node(), send_error()}]}
  def dispatch(entries, opts \\ []) when is_list(entries) do
    format = Keyword.get(opts, :message_format, :signal)

    :ok = Message.validate!(format)

    {entries, unknown} = resolve_agents(entries)
    {valid, invalid} = Enum.split_with(entries, &valid_entry?/1)

    failures =
      unknown ++
        Enum.map(invalid, fn entry -> {target_of(entry), {:invalid_target, target_of(entry)}} end)

    failures =
      valid
      |> Optimizer.optimize_routing()
      |> Enum.reduce(failures, fn
        {:local, local}, acc ->
          Enum.reduce(local, acc, fn {target, signal}, acc ->
            case deliver(target, Message.format(signal, format)) do
              :ok -> acc
              {:error, reason} -> [{target, reason} | acc]
            end
          end)

        {:remote, node, remote}, acc ->
          bins =
            Enum.map(remote, fn {target, signal} ->
              :erlang.term_to_binary({remote_dest(target), Message.format(signal, format)})
            end)

          case Link.enqueue(node, bins) do
            :ok -> acc
            {:error, reason} -> [{node, reason} | acc]
          end
      end)

    if failures == [], do: :ok, else: {:error, Enum.reverse(failures)}
  end

  @doc """
  Routes `signal` with `Jido.Router` (to a capable agent, one on this node
  whenever there is one) and sends it there: by plain `send/2` to a local
  agent, through the node's batching Link to a remote one.

  Returns `{:ok, route}` with the `{:local | :remote, agent}` chosen, or
  `{:error, reason}`: `:no_capable_agent`, `{:no_address, agent}` (an agent
  of an explicit list with neither `:pid` nor `:name`), or a
  `t:send_error/0`.

  ## Options

    * `:agents` - route among these `t:Jido.Router.agent/0` descriptors
      instead of the agents of `Jido.Distributed.Directory`;
    * `:message_format` - as for `send/3`.

  ## Examples

      iex> :ok = Jido.Distributed.Directory.register("route-doc", ["doc.route.**"])
      iex> {:ok, {:local, %{id: "route-doc"}}} =
      ...>   Jido.Distributed.route_and_send(%{id: "1", type: "doc.route.me"})
      iex> receive do
      ...>   {:signal, signal} -> signal.id
      ...> end
      "1"
      iex> Jido.Distributed.route_and_send(%{id: "2", type: "doc.nobody"})
      {:error, :no_capable_agent}
      iex> Jido.Distributed.Directory.unregister("route-doc")
      :ok
  """
  @spec route_and_send(map(), keyword()) ::
          {:ok, {:local | :remote, map()}}
          | {:error, :no_capable_agent | {:no_address, map()} | send_error()}
  def route_and_send(signal, opts \\ []) when is_list(opts) do
    {agents, opts} = Keyword.pop(opts, :agents)

    route =
      if agents,
        do: Jido.Router.route_with_locality(signal, agents),
        else: Jido.Router.route_with_locality(signal)

    with {where, agent} when where in [:local, :remote] <- route,
         {:ok, target} <- address(agent),
         :ok <- __MODULE__.send(target, signal, opts) do
      {:ok, route}
    end
  end

  @doc """
  Broadcasts `signal` to the subscribers of every node along a tree, so no
  node sends more than `:fanout` copies; returns
  `{:ok, %{delivered: n, missing: nodes}}`. Delegates to
  `Jido.Distributed.TreeBroadcast.broadcast/2`, which lists the options
  (`:nodes`, `:fanout`, `:timeout`, `:await`); nodes subscribe with
  `Jido.Distributed.TreeBroadcast.subscribe/2`.
  """
  @spec broadcast(term(), keyword()) ::
          {:ok, Jido.Distributed.TreeBroadcast.result()}
          | {:ok, Jido.Distributed.TreeBroadcast.id()}
          | {:error, Jido.Distributed.Frame.error_reason()}
  defdelegate broadcast(signal, opts \\ []), to: Jido.Distributed.TreeBroadcast

  @doc """
  Flushes whatever is pending for `node` (or for every node) now, without
  waiting for the linger time. Returns when the frames are sent, not acked.
  """
  @spec flush(node() | :all) :: :ok
  def flush(:all) do
    Enum.each(LinkStore.rows(), fn {node, _, _, _, _, _} -> Link.flush(node) end)
  end

  def flush(node) when is_atom(node), do: Link.flush(node)

  @doc """
  Counters of this node.

  `links` has one entry per remote node this node sends to: `signals`,
  `frames`, `raw_bytes`, `wire_bytes` (compressed, as sent), `acks`,
  `retransmits` (frames sent again), `dropped`, `rejected`, and `buffer`
  (pending and unacked entries and bytes, sequence numbers). `receiver` has
  what this node received from others.
  """
  @spec stats() :: %{links: %{node() => map()}, receiver: map()}
  def stats do
    links =
      for {node, buffer, _epoch, _notify, counters, _pid} <- LinkStore.rows(), into: %{} do
        buffer = LinkBuffer.stats(buffer)

        counters =
          counters
          |> LinkStore.read_counters()
          |> Map.merge(%{signals: buffer.pushed_entries, buffer: buffer})

        {node, counters}
      end

    %{links: links, receiver: Receiver.stats()}
  end

  defp address(%{pid: pid}) when is_pid(pid), do: {:ok, pid}

  defp address(%{name: name, node: node}) when is_atom(name) and is_atom(node),
    do: {:ok, {name, node}}

  defp address(agent), do: {:error, {:no_address, agent}}

  # {:agent, id} targets become pids; unknown ids become failures.
  defp resolve_agents(entries) do
    if Enum.any?(entries, &match?({{:agent, _}, _}, &1)) do
      {resolved, unknown} =
        Enum.reduce(entries, {[], []}, fn
          {{:agent, id} = target, signal}, {resolved, unknown} ->
            case resolve_agent(id) do
              {:ok, pid} -> {[{pid, signal} | resolved], unknown}
              {:error, reason} -> {resolved, [{target, reason} | unknown]}
            end

          entry, {resolved, unknown} ->
            {[entry | resolved], unknown}
        end)

      {Enum.reverse(resolved), Enum.reverse(unknown)}
    else
      {entries, []}
    end
  end

  defp resolve_agent(id) do
    case Directory.whereis(id) do
      %{pid: pid} -> {:ok, pid}
      nil -> {:error, {:unknown_agent, id}}
    end
  end

  defp valid_entry?({pid, _signal}) when is_pid(pid), do: true

  defp valid_entry?({{name, node}, _signal}) when is_atom(name) and is_atom(node),
    do: valid_node?(node)

  defp valid_entry?(_), do: false

  defp valid_node?(node), do: node == node() or String.contains?(Atom.to_string(node), "@")

  defp target_of({target, _}), do: target
  defp target_of(other), do: other

  defp remote_dest(pid) when is_pid(pid), do: pid
  defp remote_dest({name, _node}), do: name
end

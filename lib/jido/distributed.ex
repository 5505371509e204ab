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

  Anything else is refused with a value, never kept: a term that is not a
  signal (`{:error, {:invalid_signal, term}}`), a malformed node name
  (`{:error, {:invalid_target, target}}`), or a node this node has never
  been connected to and does not expect (`{:error, {:unknown_node, node}}`;
  list nodes that are yet to join in the `:known_nodes` setting). Signals
  for a node that was connected and is unreachable now are buffered until it
  is back. See `t:send_error/0`.

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
    * `[:jido, :distributed, :directory, :malformed]` - `count`; `reason`
      (the kind refused by `Jido.Distributed.Directory.Wire`).
    * `[:jido, :distributed, :broadcast, :start | :stop]` - on the root of a
      tree broadcast; see `Jido.Distributed.TreeBroadcast`.
    * `[:jido, :distributed, :broadcast, :malformed]` - `count`; `reason`.
    * `[:jido, :distributed, :monitor, :topology]` - `count`; `event`
      (`:node_up`, `:suspect`, `:unreachable`, `:recovered`, `:node_down`,
      `:class_changed`), `node`; see `Jido.Distributed.Monitor`.
    * `[:jido, :distributed, :monitor, :malformed]` - `count`; `reason`.
  """

  import Jido.Distributed.Signal, only: [is_signal: 1]

  alias Jido.Distributed.{Directory, Message, Optimizer, Options, Signal}
  require Jido.Distributed.Transport.LinkRow

  alias Jido.Distributed.Transport.{Link, LinkBuffer, LinkRow, LinkStore, Receiver}

  @typedoc """
  Where a signal goes: a pid (local or remote), `{registered_name, node}`, or
  `{:agent, id}`, resolved through `Jido.Distributed.Directory.whereis/1`
  (so `{:agent, _}` always means an agent id, never a process registered as
  `:agent`).
  """
  @type target :: pid() | {atom(), node()} | {:agent, term()}

  @message_format [
    type: {:custom, &Message.valid?/1, ":signal, :raw, {:tag, atom} or a 1-arity function"},
    default: :signal,
    doc:
      "What the target receives; see `Jido.Distributed.Message`. `:signal` sends " <>
        "`{:signal, signal}`, the message `Jido.AgentServer` handles."
  ]

  # Options of send/3 and dispatch/2.
  @send_schema [message_format: @message_format]

  @route_schema [
    agents: [
      type: {:custom, &is_list/1, "a list of agent descriptors"},
      default: nil,
      doc:
        "Route among these `t:Jido.Router.agent/0` descriptors instead of the agents of " <>
          "`Jido.Distributed.Directory`."
    ],
    message_format: @message_format
  ]

  @doc false
  # The :message_format option, for the schemas of modules that pass it on
  # (`Jido.Distributed.Dispatch`).
  @spec message_format_option() :: keyword()
  def message_format_option, do: @message_format

  @typedoc """
  Why a signal was not accepted:

    * `{:invalid_signal, term}` - not a map or struct with `:id` and `:type`
      (see `Jido.Distributed.Signal`);
    * `{:invalid_target, target}` - not a target, or a malformed node name
      (exactly one `@`, a name part of letters, digits, `_` and `-`, and a
      host part);
    * `{:unknown_target, target}` - no process registered under that name
      on this node;
    * `{:unknown_agent, id}` - no agent registered with that id;
    * `{:unknown_node, node}` - a node this node has never been connected
      to and that is not in the `:known_nodes` setting (most likely a typo).
      One connection attempt is made in the background; once the node is
      connected, sending to it works. A node that was connected and is
      unreachable now is not refused: its signals are buffered;
    * `:buffer_full` - the node's buffer is full under the `:reject` overflow
      policy;
    * `:too_large` - larger than a frame may be;
    * `:not_distributed` - this node is not alive, so cannot reach others.
  """
  @type send_error ::
          {:invalid_signal, term()}
          | {:invalid_target, term()}
          | {:unknown_target, target()}
          | {:unknown_agent, term()}
          | {:unknown_node, node()}
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
  order, unless the sending node dies. Otherwise `{:error, reason}`, see
  `t:send_error/0`: for example `{:error, {:invalid_signal, "str"}}` for a
  term that is not a signal, or `{:error, {:unknown_node, node}}` for a node
  this node has never been connected to.

  ## Options

  #{Options.docs(@send_schema)}
  ## Examples

      iex> Jido.Distributed.send(self(), %{id: "1", type: "demo"})
      :ok
      iex> receive do
      ...>   msg -> msg
      ...> end
      {:signal, %{id: "1", type: "demo"}}
  """
  @spec send(target(), Signal.t(), keyword()) :: :ok | {:error, send_error()}
  def send(target, signal, opts \\ [])

  # The common case, no options, skips the schema walk: the schema's
  # default format, `:signal`.
  def send(target, signal, []) when is_signal(signal), do: deliver(target, {:signal, signal})

  def send(target, signal, opts) do
    opts = Options.validate!(opts, @send_schema)

    if is_signal(signal),
      do: deliver(target, Message.format(signal, opts[:message_format])),
      else: Signal.check(signal)
  end

  defp deliver({:agent, id}, message) do
    with {:ok, pid} <- resolve_agent(id), do: deliver(pid, message)
  end

  defp deliver(pid, message) when is_pid(pid) and node(pid) == node() do
    Kernel.send(pid, message)
    :ok
  end

  defp deliver(pid, message) when is_pid(pid),
    do: enqueue(node(pid), pid, [:erlang.term_to_binary({pid, message})])

  defp deliver({name, node} = target, message) when is_atom(name) and node == node() do
    if Process.whereis(name) do
      Kernel.send(name, message)
      :ok
    else
      {:error, {:unknown_target, target}}
    end
  end

  defp deliver({name, node} = target, message) when is_atom(name) and is_atom(node),
    do: enqueue(node, target, [:erlang.term_to_binary({name, message})])

  defp deliver(target, _message), do: {:error, {:invalid_target, target}}

  # A malformed node name is the target's fault.
  defp enqueue(node, target, bins) do
    case Link.enqueue(node, bins) do
      {:error, {:invalid_node, _}} -> {:error, {:invalid_target, target}}
      other -> other
    end
  end

  @doc """
  Sends many signals, each to its target, in one pass: local ones directly,
  remote ones grouped into one buffer push per node.

  Returns `:ok`, or `{:error, failures}` listing `{target, reason}` for
  invalid signals (`{:invalid_signal, term}`), invalid targets (malformed
  node names included) and unknown agents, and `{node, reason}` for nodes
  whose signals were not accepted, such as `{:unknown_node, node}` (every
  other signal was accepted).

  ## Options

  #{Options.docs(@send_schema)}
  """
  @spec dispatch([{target(), Signal.t()}], keyword()) ::
          :ok | {:error, [{target() | node(), send_error()}]}
  def dispatch(entries, opts \\ [])

  def dispatch(entries, opts) when is_list(entries) do
    format = Options.validate!(opts, @send_schema)[:message_format]
    {entries, refused} = check_entries(entries)
    {entries, unknown} = resolve_agents(entries)

    failures =
      entries
      |> Optimizer.optimize_routing()
      |> Enum.reduce(Enum.reverse(refused ++ unknown), fn
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
            :ok ->
              acc

            {:error, {:invalid_node, _}} ->
              Enum.reduce(remote, acc, fn {target, _}, acc ->
                [{target, {:invalid_target, target}} | acc]
              end)

            {:error, reason} ->
              [{node, reason} | acc]
          end
      end)

    if failures == [], do: :ok, else: {:error, Enum.reverse(failures)}
  end

  def dispatch(entries, _opts) do
    raise ArgumentError,
          "the entries argument must be a list of {target, signal} tuples, got: " <>
            inspect(entries)
  end

  @doc """
  Routes `signal` with `Jido.Router` (to a capable agent, one on this node
  whenever there is one) and sends it there: by plain `send/2` to a local
  agent, through the node's batching Link to a remote one.

  Returns `{:ok, route}` with the `{:local | :remote, agent}` chosen, or
  `{:error, reason}`: `{:invalid_signal, term}` (not routed),
  `:no_capable_agent`, `{:no_address, agent}` (an agent of an explicit list
  with neither `:pid` nor `:name`), or a `t:send_error/0` (an agent of an
  explicit list on a node this node has never been connected to gets
  `{:unknown_node, node}`).

  ## Options

  #{Options.docs(@route_schema)}

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
  @spec route_and_send(Signal.t(), keyword()) ::
          {:ok, {:local | :remote, map()}}
          | {:error, :no_capable_agent | {:no_address, map()} | send_error()}
  def route_and_send(signal, opts \\ [])

  def route_and_send(signal, opts) do
    opts = Options.validate!(opts, @route_schema)

    if is_signal(signal), do: route_and_deliver(signal, opts), else: Signal.check(signal)
  end

  defp route_and_deliver(signal, opts) do
    route =
      case opts[:agents] do
        nil -> Jido.Router.route_with_locality(signal)
        agents -> Jido.Router.route_with_locality(signal, agents)
      end

    with {where, agent} when where in [:local, :remote] <- route,
         {:ok, target} <- address(agent),
         :ok <- deliver(target, Message.format(signal, opts[:message_format])) do
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

  Like `send/3`, returns `{:error, {:invalid_signal, term}}` for a term that
  is not a signal.
  """
  @spec broadcast(Signal.t(), keyword()) ::
          {:ok, Jido.Distributed.TreeBroadcast.result()}
          | {:ok, Jido.Distributed.TreeBroadcast.id()}
          | {:error,
             Jido.Distributed.Frame.error_reason() | :malformed | {:invalid_signal, term()}}
  def broadcast(signal, opts \\ [])

  def broadcast(signal, opts) when is_list(opts),
    do: Jido.Distributed.TreeBroadcast.broadcast(signal, opts)

  def broadcast(_signal, opts), do: raise(ArgumentError, opts_message(opts))

  @doc """
  Flushes whatever is pending for `node` (or for every node) now, without
  waiting for the linger time. Returns when the frames are sent, not acked.
  """
  @spec flush(node() | :all) :: :ok
  def flush(:all) do
    Enum.each(LinkStore.rows(), &Link.flush(LinkRow.link_row(&1, :node)))
  end

  def flush(node) when is_atom(node), do: Link.flush(node)

  def flush(other) do
    raise ArgumentError,
          "the node argument must be a node name (an atom) or :all, got: #{inspect(other)}"
  end

  @doc """
  Counters of this node.

  `links` has one entry per remote node this node sends to: `signals`,
  `frames`, `raw_bytes`, `wire_bytes` (compressed, as sent), `acks`,
  `retransmits` (frames sent again), `dropped`, `rejected`, and `buffer`
  (pending and unacked entries and bytes, sequence numbers). `receiver` has
  what this node received from others. `traffic` has, per node, signals and
  bytes per second in and out over the last few seconds (see
  `Jido.Distributed.Monitor.traffic/0`).
  """
  @spec stats() :: %{links: %{node() => map()}, receiver: map(), traffic: map()}
  def stats do
    links =
      for LinkRow.link_row(node: node, buffer: buffer, counters: counters) <- LinkStore.rows(),
          into: %{} do
        buffer = LinkBuffer.stats(buffer)

        counters =
          counters
          |> LinkRow.read_counters()
          |> Map.merge(%{signals: buffer.pushed_entries, buffer: buffer})

        {node, counters}
      end

    %{links: links, receiver: Receiver.stats(), traffic: traffic()}
  end

  # Rates from the Monitor (none while it is not running).
  defp traffic do
    Jido.Distributed.Monitor.traffic()
  catch
    :exit, _ -> %{}
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

  # Entries with a signal and a target of the right shape go on (node names
  # are checked per node, by the Link); the others become failures.
  defp check_entries(entries) do
    {ok, refused} =
      Enum.reduce(entries, {[], []}, fn entry, {ok, refused} ->
        case entry_error(entry) do
          nil -> {[entry | ok], refused}
          failure -> {ok, [failure | refused]}
        end
      end)

    {Enum.reverse(ok), Enum.reverse(refused)}
  end

  defp entry_error({target, signal}) when not is_signal(signal),
    do: {target, {:invalid_signal, signal}}

  defp entry_error({pid, _signal}) when is_pid(pid), do: nil
  defp entry_error({{:agent, _id}, _signal}), do: nil
  defp entry_error({{name, node}, _signal}) when is_atom(name) and is_atom(node), do: nil
  defp entry_error({target, _signal}), do: {target, {:invalid_target, target}}
  defp entry_error(other), do: {other, {:invalid_target, other}}

  defp opts_message(opts), do: "the opts argument must be a keyword list, got: #{inspect(opts)}"

  defp remote_dest(pid) when is_pid(pid), do: pid
  defp remote_dest({name, _node}), do: name
end

defmodule Jido.Distributed.Directory do
  @moduledoc """
  A cluster-wide directory of agents: their ids, pids, capabilities (signal
  type patterns, see `Jido.Distributed.Routing.Pattern`) and load.

      :ok = Directory.register("billing-1", ["order.*.added", "invoice.**"], load: 3)
      Directory.capable("order.item.added")
      #=> [%{id: "billing-1", pid: #PID<...>, node: :"a@host", capabilities: [...], load: 3.0}]

  An agent registers itself (or is registered with `pid:` by, say, its
  supervisor) on its own node. Every node's Directory keeps a replica of
  every other node's agents, so `capable/1`, `whereis/1` and
  `Jido.Router.route_with_locality/1` answer from local ETS tables,
  `:atomics` and a `:persistent_term`, without a message or a network round
  trip. An agent vanishes from every node when its process exits, when it
  unregisters, or when its node goes down.

  ## Replication

  Directories find each other through OTP's `:pg`: each joins one group in a
  scope of its own (`scope/0`) and watches it with `:pg.monitor_scope/1`.
  On seeing another node's Directory join - at start, when a node connects,
  when it reconnects after a partition, when its Directory restarts - a
  Directory *subscribes* to it: it monitors that Directory and sends it a
  subscription carrying the monitor's reference. The other side monitors the
  subscriber back and answers with a *snapshot* of its local agents (and its
  location labels), then streams *deltas* (agent added or changed, removed,
  load changed) to every subscriber, batched: sent when the Directory's
  mailbox is empty, when `:max_batch` changes wait, or after
  `:max_delay_ms`.

  Consistency: each node is the only writer of its own agents, and messages
  between two processes arrive in the order sent, so a replica always holds
  a past state of its owner's agents: deltas apply in order after the
  snapshot (other processes may see a batch half applied; load changes
  within one batch are coalesced to the last value). A
  replica ignores deltas until the snapshot answering its *current*
  subscription has arrived (older snapshots are recognised by their
  reference and dropped), so nothing sent on a previous connection can be
  mixed in. When the monitor of a remote Directory fires (its node went
  down or was cut off, or it crashed), every agent of that node is removed
  from the replica at once; a reconnection is seen as a new `:pg` join and
  starts a new subscription. Replicas are therefore eventually consistent:
  after a change, other nodes see it within one batch delay plus one
  network hop; an agent whose node is unreachable is not listed. Nothing is
  agreed cluster-wide: a router may pick an agent that exited a moment ago
  (the signal then goes nowhere, as a plain `send/2` to a dead pid would).

  Agent ids are unique per node (`register/3` refuses an id held by another
  live process on the same node). Two nodes may register the same id; they
  are then two agents, and `whereis/1` prefers the local one, then the one on
  the smallest node name. Ids are compared with `==`, as keys of an ordered
  ETS table.

  ## Lookups

  Exact patterns (without wildcards) are found with one ETS lookup keyed by
  the signal type. Patterns with wildcards are kept, once each whatever the
  number of agents declaring them, in a compiled
  `Jido.Distributed.Routing.CapabilityIndex` published in `:persistent_term`; a
  lookup walks it to find the matching patterns, then reads their agents.
  The index is republished only when the set of wildcard patterns changes,
  never because the Directory restarted (see
  `Jido.Distributed.Directory.Index`); loads live in `:atomics` and are read
  in place.

  A restarted Directory keeps every agent in its tables (they belong to its
  supervisor): this node's agents are monitored again, other nodes' stay
  listed until their Directory answers the new subscription with a
  snapshot, or is found gone.

  Local agents and remote agents are kept in separate tables, so the router
  answers "is there a capable agent on this node?" without looking at remote
  ones.

  ## Where the code is

  This module is the API. The subsystem lives in `lib/jido/distributed/directory/`:
  `Supervisor` (owns the tables of `Store`, starts the `:pg` scope and the
  server), `Server` (the process), `Wire` (every message between
  Directories, checked), `Replica` (pure: snapshots and deltas into table
  work), `Deltas` (pure: batching this node's changes) and `Index` (writes
  the tables and the view).
  """
  alias Jido.Distributed.Options
  alias Jido.Distributed.Directory.{Index, Store, Wire}
  alias Jido.Distributed.Routing.{CapabilityIndex, Pattern}

  @register_schema [
    pid: [
      type: {:custom, &is_pid/1, "a pid"},
      default: nil,
      doc:
        "The agent process; defaults to the caller. The registration is made on that " <>
          "process's node."
    ],
    load: [
      type: :any,
      default: 0,
      doc:
        "A non-negative number (see `update_load/2`); another value is refused with " <>
          "`{:error, {:invalid_load, value}}`."
    ]
  ]

  @typedoc "An agent id: any term, unique per node."
  @type id :: term()

  @typedoc """
  What the directory knows of an agent:

    * `:id`, `:pid`, `:node` (the pid's node);
    * `:capabilities` - its signal type patterns, as strings;
    * `:load` - its last reported load, as a float (0.0 unless reported).
  """
  @type descriptor :: %{
          id: id(),
          pid: pid(),
          node: node(),
          capabilities: [String.t()],
          load: float()
        }

  @typedoc "Why a registration or update was refused."
  @type error ::
          {:invalid_pattern, term(), Pattern.error_reason()}
          | {:invalid_load, term()}
          | {:already_registered, pid()}
          | :not_registered
          | {:directory_unavailable, node()}
          | {:not_local, pid()}
          | :malformed

  # -- API ----------------------------------------------------------------------

  @doc "The `:pg` scope the Directories of the cluster meet in."
  @spec scope() :: atom()
  defdelegate scope(), to: Wire

  @doc """
  Registers the agent `id` with its capabilities, a list of signal type
  patterns (strings or compiled `Jido.Distributed.Routing.Pattern`s).

  Registering the same id again from the same process replaces its
  capabilities and load. The registration lasts until `unregister/1` or the
  process exits, and is visible on this node when this returns, on other
  nodes shortly after.

  ## Options

  #{Options.docs(@register_schema)}

  ## Examples

      iex> alias Jido.Distributed.Directory
      iex> Directory.register("doc-agent", ["doc.*"])
      :ok
      iex> [%{id: "doc-agent", load: 0.0}] = Directory.capable("doc.written")
      iex> Directory.register("doc-agent", ["doc..x"])
      {:error, {:invalid_pattern, "doc..x", :empty_segment}}
      iex> Directory.unregister("doc-agent")
      :ok
  """
  @spec register(id(), [Pattern.t() | String.t()], keyword()) :: :ok | {:error, error()}
  def register(id, capabilities, opts \\ [])

  def register(_id, capabilities, _opts) when not is_list(capabilities) do
    raise ArgumentError,
          "the capabilities argument must be a list of signal type patterns, got: " <>
            inspect(capabilities)
  end

  def register(id, capabilities, opts) do
    opts = Options.validate!(opts, @register_schema)
    pid = opts[:pid] || self()
    load = opts[:load]

    if valid_load?(load) do
      with {:ok, sources} <- compile_capabilities(capabilities) do
        call(node(pid), Wire.register(id, pid, sources, load))
      end
    else
      {:error, {:invalid_load, load}}
    end
  end

  @doc """
  Sets the load of the agent `id` registered on this node: a non-negative
  number, lower meaning more available (for example a queue length or a
  utilisation). The router prefers less loaded agents among equally near
  ones. Other nodes see the new figure after the next delta batch.
  """
  @spec update_load(id(), number()) :: :ok | {:error, :not_registered | {:invalid_load, term()}}
  def update_load(id, load) do
    if valid_load?(load),
      do: call(node(), Wire.update_load(id, load)),
      else: {:error, {:invalid_load, load}}
  end

  @doc "Removes the agent `id` registered on this node. Idempotent."
  @spec unregister(id()) :: :ok
  def unregister(id), do: call(node(), Wire.unregister(id))

  @doc """
  The agent registered as `id`: the one on this node if there is one,
  otherwise the one on the smallest node name. `nil` when unknown.
  """
  @spec whereis(id()) :: descriptor() | nil
  def whereis(id) do
    case view() do
      {_trie, loads, _classes} -> whereis(id, loads)
      nil -> nil
    end
  end

  defp whereis(id, loads) do
    agents = Store.agents()

    case :ets.lookup(agents, {id, node()}) do
      [row] ->
        describe(row, loads)

      [] ->
        # Node names are atoms, which sort after every number: the first key
        # after {id, 0} is this id's row on the smallest node, if any.
        case :ets.next(agents, {id, 0}) do
          {key_id, _node} = key when key_id == id ->
            case :ets.lookup(agents, key) do
              [row] -> describe(row, loads)
              [] -> nil
            end

          _ ->
            nil
        end
    end
  rescue
    ArgumentError -> nil
  end

  @doc """
  Every agent, local or remote, with a capability matching the signal
  `type`, each once: this node's first, then the others'. `[]` for an
  invalid type.
  """
  @spec capable(String.t()) :: [descriptor()]
  def capable(type) do
    case view() do
      {trie, loads, _classes} when is_binary(type) ->
        keys = [type | CapabilityIndex.lookup(trie, type)]

        for table <- [Store.local(), Store.remote()],
            key <- keys,
            {_pattern, id, pid, _slot, _hash} <- :ets.lookup(table, key),
            uniq: true do
          {id, pid}
        end
        |> Enum.flat_map(fn {id, pid} ->
          case :ets.lookup(Store.agents(), {id, node(pid)}) do
            [row] -> [describe(row, loads)]
            [] -> []
          end
        end)

      _ ->
        []
    end
  rescue
    ArgumentError -> []
  end

  @doc "Every agent this node knows of, local and remote, ordered by `{id, node}`."
  @spec agents() :: [descriptor()]
  def agents do
    case view() do
      {_trie, loads, _classes} -> Enum.map(:ets.tab2list(Store.agents()), &describe(&1, loads))
      nil -> []
    end
  rescue
    ArgumentError -> []
  end

  @doc """
  The nodes whose agents this node's replica holds: every node whose
  Directory answered this node's current subscription. Useful to wait for
  the directory to converge after nodes join.
  """
  @spec peers() :: [node()]
  def peers, do: GenServer.call(Wire.name(), Wire.peers())

  @doc """
  The Directory's counters on this node: `:malformed`, messages from other
  nodes (or parts of them: an agent entry, a change) refused as malformed.
  They live in the subsystem's tables, so they survive a restart of the
  server.
  """
  @spec stats() :: %{malformed: non_neg_integer()}
  def stats, do: Store.read_counters()

  # -- internals for Jido.Router (no message, no copy of the index) --------------

  @doc false
  # {capability index of wildcard patterns, load atomics, %{node => class}}, or nil.
  @spec view() :: {CapabilityIndex.t(), :atomics.atomics_ref(), map()} | nil
  defdelegate view(), to: Index

  @doc false
  @spec describe(tuple(), :atomics.atomics_ref()) :: descriptor()
  def describe({{id, node}, pid, sources, slot}, loads) do
    %{id: id, pid: pid, node: node, capabilities: sources, load: load_at(loads, slot)}
  end

  @doc false
  @spec encode_load(number()) :: non_neg_integer()
  defdelegate encode_load(load), to: Index

  @doc false
  @spec decode_load(non_neg_integer()) :: float()
  defdelegate decode_load(bits), to: Index

  # A slot beyond the array: the array grew after `loads` was read.
  defp load_at(loads, slot) do
    if slot <= :atomics.info(loads).size,
      do: decode_load(:atomics.get(loads, slot)),
      else: load_at(elem(view(), 1), slot)
  end

  defp valid_load?(load), do: Wire.load?(load)

  defp compile_capabilities(capabilities) do
    Enum.reduce_while(capabilities, {:ok, []}, fn pattern, {:ok, acc} ->
      case Pattern.compile(pattern) do
        {:ok, %Pattern{source: source}} -> {:cont, {:ok, [source | acc]}}
        {:error, reason} -> {:halt, {:error, {:invalid_pattern, pattern, reason}}}
      end
    end)
    |> case do
      {:ok, sources} -> {:ok, sources |> Enum.reverse() |> Enum.uniq()}
      error -> error
    end
  end

  defp call(node, message) do
    dest = if node == node(), do: Wire.name(), else: {Wire.name(), node}
    GenServer.call(dest, message)
  catch
    :exit, _reason -> {:error, {:directory_unavailable, node}}
  end
end

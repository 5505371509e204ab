defmodule Jido.Router do
  @moduledoc """
  Local-first routing: picks the agent that handles a signal, preferring one
  on this node, so work stays where it is whenever it can.

      case Jido.Router.route_with_locality(signal) do
        {:local, agent} -> send(agent.pid, {:signal, signal})
        {:remote, agent} -> Jido.Distributed.send(agent.pid, signal)
        {:error, :no_capable_agent} -> ...
      end

  (`Jido.Distributed.route_and_send/2` does both steps.)

  An agent is *capable* of a signal when one of its capabilities, signal
  type patterns with jido_signal's router semantics (see
  `Jido.Distributed.Routing.Pattern`), matches the signal's `:type`. Among capable
  agents the choice is:

    1. **local** - an agent on this node, if there is one: `{:local, agent}`.
       Among several, the least loaded; ties are broken by a hash of the
       signal id and the agent id (`:erlang.phash2/1` of each, mixed),
       smallest first, so that equal agents share the signals, and a given
       signal always goes to the same one.
    2. otherwise `{:remote, agent}`, ranked by, in order:
       * **weight** of its node (see `update_routing_weights/2`): a node
         without an explicit weight weighs `0` when connected (in
         `Node.list/0`) and `:infinity` otherwise; lower first, so an
         unreachable node is chosen only when no reachable one is capable;
       * **distance class** (`Jido.Distributed.Routing.Location.class_of/1`):
         `:same_zone`, then `:same_region`, then `:remote`;
       * **load**, lowest first (an agent without a load counts as 0);
       * the same tie-break as above.
    3. `{:error, :no_capable_agent}` when no agent is capable (or the
       signal's type is not a valid type).

  `route_with_locality/1` takes the agents from `Jido.Distributed.Directory`
  and is answered from local state only: ETS, `:atomics` and
  `:persistent_term`, no message and no network round trip.
  `route_with_locality/2` takes an explicit list of agent descriptors; the
  distance class of a connected node is asked of it once and cached (see
  `Jido.Distributed.Routing.Location`), never of an unreachable one.
  """

  alias Jido.Distributed.{Directory, Options}
  alias Jido.Distributed.Routing.{CapabilityIndex, Location, Pattern, Rank}
  alias Jido.Distributed.Directory.Store

  @weights {__MODULE__, :weights}

  # Options of route_with_locality/3 and rank/3; each defaults (nil) to the live value.
  @route_schema [
    local_node: [type: :atom, default: nil, doc: "The local node; defaults to `node()`."],
    nodes: [type: :list, default: nil, doc: "The connected nodes; defaults to `Node.list()`."],
    weights: [type: {:custom, &is_map/1, "a map"}, default: nil, doc: "`%{node => weight}`."],
    class_of: [
      type: {:custom, &__MODULE__.unary?/1, "a 1-arity function"},
      default: nil,
      doc: "Node to distance class; defaults to `Jido.Distributed.Routing.Location.class_of/1`."
    ]
  ]

  @weights_schema [
    replace: [type: :boolean, default: false, doc: "Replace every weight, not merge."]
  ]

  @typedoc """
  An agent descriptor: a map with at least `:id`, `:capabilities` (a list of
  patterns, strings or compiled) and `:pid` or `:node`; optionally `:load`
  (a number) and `:name` (a registered name on `:node`, used for delivery
  when there is no `:pid`). Other keys are kept.
  """
  @type agent :: %{
          required(:id) => term(),
          required(:capabilities) => [String.t() | Pattern.t()],
          optional(:pid) => pid(),
          optional(:node) => node(),
          optional(:load) => number(),
          optional(atom()) => term()
        }

  @typedoc "Where a signal goes."
  @type route :: {:local, agent()} | {:remote, agent()} | {:error, :no_capable_agent}

  @typedoc "The routing weight of a node: lower is preferred, `:infinity` means unreachable."
  @type weight :: number() | :infinity

  @doc """
  Routes `signal` among the agents of `Jido.Distributed.Directory`, local
  first (see the module doc). The agent returned is a
  `t:Jido.Distributed.Directory.descriptor/0`.

      iex> :ok = Jido.Distributed.Directory.register("router-doc", ["doc.routed.*"])
      iex> {:local, agent} = Jido.Router.route_with_locality(%{id: "s1", type: "doc.routed.now"})
      iex> agent.id
      "router-doc"
      iex> Jido.Router.route_with_locality(%{id: "s2", type: "doc.unhandled"})
      {:error, :no_capable_agent}
      iex> Jido.Distributed.Directory.unregister("router-doc")
      :ok
  """
  @spec route_with_locality(map()) :: route()
  def route_with_locality(signal), do: route_directory(signal, true)

  defp route_directory(signal, retry?) do
    with {trie, loads, classes} <- Directory.view(),
         %{type: type} when is_binary(type) <- signal do
      keys = [type | CapabilityIndex.lookup(trie, type)]
      sh = :erlang.phash2(Map.get(signal, :id))

      case Rank.best_local(keys, Store.local(), loads, sh) do
        nil ->
          ctx = {routing_weights(), Node.list(), classes}

          case Rank.best_remote(keys, Store.remote(), loads, sh, ctx) do
            nil -> {:error, :no_capable_agent}
            row -> {:remote, Rank.describe(row, loads)}
          end

        row ->
          {:local, Rank.describe(row, loads)}
      end
    else
      _ -> {:error, :no_capable_agent}
    end
  rescue
    # Either the Directory's tables are gone (application stopped), or the
    # load array grew between reading the view and reading a row that uses
    # one of its new slots: read the new view once more.
    ArgumentError ->
      if retry? and :ets.whereis(Store.local()) != :undefined,
        do: route_directory(signal, false),
        else: {:error, :no_capable_agent}
  end

  @doc """
  Routes `signal` among `agents`, a list of `t:agent/0` descriptors, local
  first (see the module doc).

  ## Options

  For tests and what-if questions; each defaults to the live value
  (`:weights` to `routing_weights/0`).

  #{Options.docs(@route_schema)}

  ## Examples

      iex> agents = [
      ...>   %{id: "far", node: :"b@h", capabilities: ["order.*"]},
      ...>   %{id: "near", node: :"c@h", capabilities: ["order.**"]},
      ...>   %{id: "here", pid: self(), capabilities: ["user.*"]}
      ...> ]
      iex> classes = %{"b@h": :remote, "c@h": :same_zone}
      iex> opts = [nodes: [:"b@h", :"c@h"], class_of: &Map.fetch!(classes, &1)]
      iex> {:remote, %{id: "near"}} = Jido.Router.route_with_locality(%{id: "1", type: "order.paid"}, agents, opts)
      iex> {:local, %{id: "here"}} = Jido.Router.route_with_locality(%{id: "2", type: "user.seen"}, agents, opts)
      iex> Jido.Router.route_with_locality(%{id: "3", type: "invoice.sent"}, agents, opts)
      {:error, :no_capable_agent}
  """
  @spec route_with_locality(map(), [agent()], keyword()) :: route()
  def route_with_locality(signal, agents, opts \\ []) do
    opts = route_opts!(agents, opts)

    case ranked(signal, agents, opts) do
      [] -> {:error, :no_capable_agent}
      [agent | _] -> {if(agent_node(agent) == local_node(opts), do: :local, else: :remote), agent}
    end
  end

  @doc """
  The capable agents among `agents`, best first: the order
  `route_with_locality/3` chooses by (it returns the first). Takes the same
  options.

      iex> agents = [
      ...>   %{id: "busy", pid: self(), load: 9, capabilities: ["job.*"]},
      ...>   %{id: "idle", pid: self(), load: 1, capabilities: ["job.*"]},
      ...>   %{id: "other", pid: self(), capabilities: ["mail.*"]}
      ...> ]
      iex> Jido.Router.rank(%{id: "1", type: "job.run"}, agents) |> Enum.map(& &1.id)
      ["idle", "busy"]
  """
  @spec rank(map(), [agent()], keyword()) :: [agent()]
  def rank(signal, agents, opts \\ []), do: ranked(signal, agents, route_opts!(agents, opts))

  # No options (every default, the common case) skips the schema walk.
  defp route_opts!(agents, _opts) when not is_list(agents), do: misuse!(agents)
  defp route_opts!(_agents, []), do: []
  defp route_opts!(_agents, opts), do: Options.validate!(opts, @route_schema)

  @doc false
  @spec unary?(term()) :: boolean()
  def unary?(fun), do: is_function(fun, 1)

  defp ranked(signal, agents, opts) do
    type = type_of(signal)
    sh = :erlang.phash2(id_of(signal))
    me = local_node(opts)
    nodes = opts[:nodes] || Node.list()
    weights = opts[:weights] || routing_weights()
    class_of = opts[:class_of] || (&Location.class_of/1)

    agents
    |> Enum.filter(&capable?(&1, type))
    |> Enum.map(fn agent ->
      hash = Rank.tie(sh, :erlang.phash2(agent.id))
      load = Map.get(agent, :load) || 0
      node = agent_node(agent)

      {Rank.key(node == me, Rank.weight(node, weights, nodes), node, class_of, load, hash), agent}
    end)
    |> Enum.sort_by(&elem(&1, 0))
    |> Enum.map(&elem(&1, 1))
  end

  @doc """
  The first agent in `agents`, in list order, with a capability matching
  the signal's type.

      iex> agents = [%{id: "a", pid: self(), capabilities: ["x.*"]}, %{id: "b", pid: self(), capabilities: ["y.**"]}]
      iex> Jido.Router.find_capable_agent(%{id: "1", type: "y.z"}, agents)
      {:ok, %{id: "b", pid: self(), capabilities: ["y.**"]}}
      iex> Jido.Router.find_capable_agent(%{id: "1", type: "q"}, agents)
      {:error, :no_capable_agent}
  """
  @spec find_capable_agent(map(), [agent()]) :: {:ok, agent()} | {:error, :no_capable_agent}
  def find_capable_agent(signal, agents) when is_list(agents) do
    type = type_of(signal)

    case Enum.find(agents, &capable?(&1, type)) do
      nil -> {:error, :no_capable_agent}
      agent -> {:ok, agent}
    end
  end

  def find_capable_agent(_signal, agents), do: misuse!(agents)

  @doc """
  Every agent capable of `signal`: from the Directory (see
  `Jido.Distributed.Directory.capable/1`) or, with a list, those of
  `agents` in list order. Ignores locality, for example for a locality-blind
  choice.
  """
  @spec capable_agents(map(), [agent()] | :directory) :: [agent()]
  def capable_agents(signal, agents \\ :directory)

  def capable_agents(signal, :directory) do
    case type_of(signal) do
      type when is_binary(type) -> Directory.capable(type)
      _ -> []
    end
  end

  def capable_agents(signal, agents) when is_list(agents) do
    type = type_of(signal)
    Enum.filter(agents, &capable?(&1, type))
  end

  def capable_agents(_signal, agents) do
    raise ArgumentError,
          "the agents argument must be a list of agent descriptors or :directory, got: " <>
            inspect(agents)
  end

  @doc """
  Changes the routing weights of nodes at run time, for example when a node
  is found unreachable (`:infinity`) or slow (a penalty). `weights` maps
  nodes to a number (lower is preferred; a connected node without a weight
  weighs 0, so any positive number is a penalty), `:infinity` (never chosen
  while a node of finite weight is capable) or `nil` (remove the entry, back
  to the default). A finite weight also makes a node that is not in
  `Node.list()` count as reachable (for example through a relay).

  Weights are per node (this node's routing decisions), held in
  `:persistent_term`: cheap to read on every route, meant to change rarely.

  ## Options

  #{Options.docs(@weights_schema)}

  ## Examples

      iex> Jido.Router.update_routing_weights(%{"b@h": :infinity, "c@h": 5})
      :ok
      iex> Jido.Router.routing_weights()
      %{"b@h": :infinity, "c@h": 5}
      iex> Jido.Router.update_routing_weights(%{"b@h": nil})
      :ok
      iex> Jido.Router.routing_weights()
      %{"c@h": 5}
      iex> Jido.Router.update_routing_weights(%{}, replace: true)
      :ok
  """
  @spec update_routing_weights(%{node() => weight() | nil}, keyword()) :: :ok
  def update_routing_weights(weights, opts \\ [])

  def update_routing_weights(weights, _opts) when not is_map(weights) do
    raise ArgumentError,
          "the weights argument must be a map of node => number, :infinity or nil, got: " <>
            inspect(weights)
  end

  def update_routing_weights(weights, opts) do
    opts = Options.validate!(opts, @weights_schema)

    Enum.each(weights, fn {node, weight} ->
      unless is_atom(node) and (is_number(weight) or weight in [:infinity, nil]) do
        raise ArgumentError,
              "routing weights must map nodes to a number, :infinity or nil, got: " <>
                inspect({node, weight})
      end
    end)

    # Read-modify-write under a lock local to this node.
    :global.trans(
      {@weights, self()},
      fn ->
        base = if opts[:replace], do: %{}, else: routing_weights()

        new =
          Enum.reduce(weights, base, fn
            {node, nil}, acc -> Map.delete(acc, node)
            {node, weight}, acc -> Map.put(acc, node, weight)
          end)

        if new != routing_weights(), do: :persistent_term.put(@weights, new)
      end,
      [node()]
    )

    :ok
  end

  @doc "The routing weights set with `update_routing_weights/2` (`%{}` by default)."
  @spec routing_weights() :: %{node() => weight()}
  def routing_weights, do: :persistent_term.get(@weights, %{})

  @doc """
  The weight of `node` as routing sees it: its routing weight if set,
  otherwise `0` for this node and connected nodes and `:infinity` for others.
  """
  @spec weight(node()) :: weight()
  def weight(node) when node == node(), do: 0
  def weight(node) when is_atom(node), do: Rank.weight(node, routing_weights(), Node.list())

  def weight(node) do
    raise ArgumentError, "the node argument must be a node name (an atom), got: #{inspect(node)}"
  end

  defp local_node(opts), do: opts[:local_node] || node()

  # Anything but a map with a string `:type` is capable of nothing.
  defp type_of(%{type: type}), do: type
  defp type_of(_signal), do: nil

  defp id_of(%{id: id}), do: id
  defp id_of(_signal), do: nil

  # Names the argument with the wrong shape.
  defp misuse!(agents) do
    raise ArgumentError,
          "the agents argument must be a list of agent descriptors (route_with_locality/1 " <>
            "routes among the Directory's agents), got: #{inspect(agents)}"
  end

  defp agent_node(%{node: node}) when is_atom(node) and node != nil, do: node
  defp agent_node(%{pid: pid}) when is_pid(pid), do: node(pid)

  defp capable?(%{capabilities: caps}, type) when is_binary(type),
    do: Enum.any?(caps, &Pattern.match?(&1, type))

  defp capable?(_agent, _type), do: false
end

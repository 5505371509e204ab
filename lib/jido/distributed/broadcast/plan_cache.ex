defmodule Jido.Distributed.Broadcast.PlanCache do
  @moduledoc """
  What a caller of `Jido.Distributed.TreeBroadcast.broadcast/2` needs
  before it hands a broadcast to the node's broadcast process, kept where
  the caller reads it without a message: the last tree planned, and the
  server's context (its instance, for broadcast ids, and the default
  fanout, timeout and largest frame).

  Both live in a table owned by `Jido.Distributed.Broadcast.Supervisor`
  (`create_table/0`) and, for a process broadcasting a stream, in its
  process dictionary, so it does not copy the tree out of the table each
  time. A plan depends only on the members, their labels and health, which
  change only when nodes connect or disconnect: then the server moves the
  *generation* on (`new_generation/0`), and what was cached under an older
  one is not used. The server does the same when it (re)starts
  (`put_context/2`), so callers pick up its new instance.

  The generation is one `:atomics` counter, created once per VM and found
  through `:persistent_term`: the one persistent_term write happens the
  first time the supervisor starts, never when it or the server restarts
  (a persistent_term write means a global GC). Reading it costs a caller
  a persistent_term read and an atomics read per broadcast.
  """

  alias Jido.Distributed.Routing.Location
  alias Jido.Distributed.TreePlanner

  @table :jido_distributed_broadcast_plans
  @generation {__MODULE__, :generation}
  @context_key :"$jido_distributed_broadcast_context"
  @plan_key :"$jido_distributed_broadcast_plan"

  @typedoc "The server's context: `{instance, {fanout, timeout_ms, max_frame_size}}`."
  @type context :: {non_neg_integer(), {pos_integer(), pos_integer(), pos_integer()}}

  @doc """
  Creates the table (public, so callers cache plans in it) and, the first
  time in this VM, the generation counter. Called by the process that owns
  the table.
  """
  @spec create_table() :: :ok
  def create_table do
    :ets.new(@table, [:named_table, :public, :set, read_concurrency: true])

    if :persistent_term.get(@generation, nil) == nil,
      do: :persistent_term.put(@generation, :atomics.new(1, []))

    :ok
  end

  @doc "Stores the server's `context` and moves the generation on."
  @spec put_context(non_neg_integer(), {pos_integer(), pos_integer(), pos_integer()}) :: :ok
  def put_context(instance, defaults) do
    :ets.insert(@table, {:context, instance, defaults})
    new_generation()
  end

  @doc "Drops the plans and the contexts callers cached: they read them again."
  @spec new_generation() :: :ok
  def new_generation do
    :atomics.add(:persistent_term.get(@generation), 1, 1)
    :ets.delete(@table, :last)
    :ok
  end

  @doc """
  The server's context and the tree to broadcast along: `tree` when one is
  given, else the plan over this node and `nodes` (or every connected node,
  for `nil`) with `fanout` (or the default fanout, for `nil`): the one
  cached for the same arguments in this generation, or a new plan (see
  `located_members/1`), then cached. A caller that broadcasts along the
  same members again pays one generation read and one process dictionary
  read. Without a running broadcast supervisor, the context has instance 0
  and the defaults from the settings.
  """
  @spec fetch([node()] | nil, pos_integer() | nil, TreePlanner.tree() | nil) ::
          {:ok, context(), TreePlanner.tree()} | {:error, term()}
  def fetch(nodes, fanout, nil) do
    key = {fanout, nodes}
    generation = generation()

    case Process.get(@plan_key) do
      {^generation, ^key, context, tree} when generation != nil ->
        {:ok, context, tree}

      _ ->
        {_, {default_fanout, _, _}} = context = context(generation)
        fanout = fanout || default_fanout

        with {:ok, tree} <- shared_plan(nodes, fanout, {fanout, nodes}, generation) do
          Process.put(@plan_key, {generation, key, context, tree})
          {:ok, context, tree}
        end
    end
  end

  def fetch(_nodes, _fanout, tree), do: {:ok, context(generation()), tree}

  defp context(generation) do
    case Process.get(@context_key) do
      {^generation, context} when generation != nil ->
        context

      _ ->
        context = read_context()
        if generation != nil, do: Process.put(@context_key, {generation, context})
        context
    end
  end

  defp read_context do
    case :ets.whereis(@table) != :undefined and :ets.lookup(@table, :context) do
      [{:context, instance, defaults}] ->
        {instance, defaults}

      _ ->
        settings = Jido.Distributed.Options.get(:broadcast)
        max_frame_size = Jido.Distributed.Options.get(:max_frame_size)
        {0, {settings[:fanout], settings[:timeout_ms], max_frame_size}}
    end
  end

  defp shared_plan(nodes, fanout, key, generation) do
    case :ets.lookup(@table, :last) do
      [{:last, ^generation, ^key, tree}] ->
        {:ok, tree}

      _ ->
        members = Enum.uniq([node() | nodes || Node.list()])

        with {:ok, tree} <- TreePlanner.plan(located_members(members), node(), fanout: fanout) do
          :ets.insert(@table, {:last, generation, key, tree})
          {:ok, tree}
        end
    end
  end

  @doc """
  The members with their labels and health, as the planner takes them.
  Labels of connected nodes come from `Jido.Distributed.Routing.Location`
  (cached); a member that is not connected is planned unhealthy, without
  labels (asking it would try to connect).
  """
  @spec located_members([node()]) :: [TreePlanner.member()]
  def located_members(members) do
    connected = MapSet.new(Node.list())

    Enum.map(members, fn node ->
      cond do
        node == node() -> {node, labels(Location.local())}
        MapSet.member?(connected, node) -> {node, labels(Location.of(node))}
        true -> {node, healthy: false}
      end
    end)
  end

  defp labels(%{region: region, zone: zone}), do: [region: region, zone: zone]

  # `{counter, value}`; nil before the table was ever created.
  defp generation do
    case :persistent_term.get(@generation, nil) do
      nil -> nil
      counter -> {counter, :atomics.get(counter, 1)}
    end
  end
end

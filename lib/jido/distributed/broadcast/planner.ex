defmodule Jido.Distributed.TreePlanner do
  @moduledoc """
  Plans broadcast trees: the root sends to its children only, and every node
  forwards to its own children, so no node sends more than `:fanout` copies.

  A tree is nested: `{node, subtrees}`. A forwarder that receives its own
  subtree `{me, subtrees}` sends each child `{child, grandchildren}` exactly
  the part of the tree below it — nothing else to look up, and each hop
  carries only its subtree. Children are listed deepest subtree first, so
  forwarding in list order starts the longest path first.

  The planner lives in Rust (`native/jido_core/src/tree/`); its module docs
  hold the precise guarantees. In short:

    * every member appears exactly once, and no node has more than
      `:fanout` children (a hard limit);
    * without location labels, the depth is the smallest any tree of `n`
      nodes with that fanout can have, which is never more than
      `⌈log_fanout n⌉` (`n − 1` for a fanout of 1);
    * unhealthy members are leaves whenever the healthy members can carry
      the others (`healthy · fanout ≥ n − 1`, the root counted healthy: it
      is the sender); otherwise the fewest possible unhealthy members become
      interior nodes, none shallower than a healthy member. With labels this
      holds within each region/zone group (a region that cannot be hung
      under a healthy node may, as a last resort, make one more unhealthy
      node interior);
    * members are grouped by region, and within a region by zone; each group
      is one connected subtree entered by exactly one edge, so a broadcast
      crosses into each region (and each zone) once. That edge starts in the
      root's region whenever it has room (its healthy members can hold its
      own members plus one head per other region); otherwise a region hangs
      under another region's node. A missing label is a label value of its
      own: all members without a region form one region;
    * the plan depends only on the members, their labels and health, the
      root and the fanout — not on the order of the member list.

  This module keeps its public name; its file lives with the rest of the
  broadcast subsystem (`lib/jido/distributed/broadcast/planner.ex`).

  ## Examples

      iex> {:ok, tree} = Jido.Distributed.TreePlanner.plan([:a@h, :b@h, :c@h], :a@h, fanout: 2)
      iex> tree
      {:a@h, [{:b@h, []}, {:c@h, []}]}

      iex> members = [:a@h, {:b@h, region: "eu"}, {:c@h, region: "eu"}, {:d@h, region: "us"}]
      iex> {:ok, tree} = Jido.Distributed.TreePlanner.plan(members, :a@h)
      iex> tree
      {:a@h, [{:b@h, [{:c@h, []}]}, {:d@h, []}]}
      iex> Jido.Distributed.TreePlanner.children(tree, :b@h)
      [{:c@h, []}]
      iex> Jido.Distributed.TreePlanner.depth(tree)
      2
  """

  alias Jido.Distributed.Native

  @typedoc "A planned tree: a node and the subtrees of its children."
  @type tree :: {node(), [tree()]}

  @typedoc """
  A member: a node name, or a node name with location labels and health.

  Labels are compared by value (`"eu"` and `:eu` are different regions); a
  missing or `nil` label is a label value of its own. `:healthy` defaults to
  `true`.
  """
  @type member :: node() | {node(), [location()]}

  @typedoc "Location and health of a member."
  @type location :: {:region, term()} | {:zone, term()} | {:healthy, boolean()}

  @typedoc "Why a tree could not be planned."
  @type error_reason :: :root_not_member | :duplicate_member

  @default_fanout 4
  # Above this many members a plan (decode, plan, build the nested tree)
  # may take longer than a scheduler slice (about 1 ms).
  @dirty_members 1_000
  @max_fanout 0xFFFFFFFF

  @doc """
  Plans a broadcast tree over `members`, rooted at `root`.

  ## Options

    * `:fanout` - the most children any node may have, a positive integer.
      Defaults to `#{@default_fanout}`.

  Returns `{:error, :root_not_member}` when `root` is not among the members
  and `{:error, :duplicate_member}` when a node is listed twice. Raises
  `ArgumentError` for malformed members or options.

      iex> Jido.Distributed.TreePlanner.plan([:a@h], :b@h)
      {:error, :root_not_member}

      iex> Jido.Distributed.TreePlanner.plan([:a@h], :a@h, fanout: 0)
      ** (ArgumentError) the :fanout option must be a positive integer, got: 0
  """
  @spec plan([member()], node(), keyword()) :: {:ok, tree()} | {:error, error_reason()}
  def plan(members, root, opts \\ []) when is_list(members) and is_atom(root) and is_list(opts) do
    opts = Keyword.validate!(opts, fanout: @default_fanout)
    fanout = fanout!(opts[:fanout])
    members = members |> Enum.map(&member!/1) |> Enum.sort_by(&elem(&1, 0))

    if length(members) > @dirty_members,
      do: Native.tree_plan_dirty(members, root, fanout),
      else: Native.tree_plan(members, root, fanout)
  end

  @doc """
  The children of `node` in `tree`, each with its subtree, or `nil` if
  `node` is not in the tree.

  Finding the root's children is immediate; any other node is searched for.

      iex> tree = {:a@h, [{:b@h, [{:c@h, []}]}]}
      iex> Jido.Distributed.TreePlanner.children(tree, :a@h)
      [{:b@h, [{:c@h, []}]}]
      iex> Jido.Distributed.TreePlanner.children(tree, :c@h)
      []
      iex> Jido.Distributed.TreePlanner.children(tree, :z@h)
      nil
  """
  @spec children(tree(), node()) :: [tree()] | nil
  def children({node, subtrees}, node), do: subtrees
  def children({_, subtrees}, node), do: Enum.find_value(subtrees, &children(&1, node))

  @doc """
  The depth of `tree`: edges from the root to the deepest leaf.

      iex> Jido.Distributed.TreePlanner.depth({:a@h, []})
      0
      iex> Jido.Distributed.TreePlanner.depth({:a@h, [{:b@h, [{:c@h, []}]}, {:d@h, []}]})
      2
  """
  @spec depth(tree()) :: non_neg_integer()
  def depth({_, []}), do: 0
  def depth({_, subtrees}), do: 1 + (subtrees |> Enum.map(&depth/1) |> Enum.max())

  @doc """
  Every node of `tree`, root first, in depth-first order.

      iex> Jido.Distributed.TreePlanner.nodes({:a@h, [{:b@h, [{:c@h, []}]}, {:d@h, []}]})
      [:a@h, :b@h, :c@h, :d@h]
  """
  @spec nodes(tree()) :: [node()]
  def nodes(tree), do: tree |> collect([]) |> Enum.reverse()

  defp collect({node, subtrees}, acc), do: Enum.reduce(subtrees, [node | acc], &collect/2)

  @doc """
  Repairs `tree` without re-planning: each dead node is removed and its
  children, with their subtrees, take its place among the children of its
  nearest live ancestor.

  Nothing else moves, so a node may end up with more than `:fanout`
  children; plan again (it is cheap) when the bound matters. Dead nodes not
  in the tree are ignored. Raises `ArgumentError` if the root is dead.

      iex> tree = {:a@h, [{:b@h, [{:c@h, []}, {:d@h, []}]}, {:e@h, []}]}
      iex> Jido.Distributed.TreePlanner.adopt(tree, [:b@h])
      {:a@h, [{:c@h, []}, {:d@h, []}, {:e@h, []}]}
  """
  @spec adopt(tree(), Enumerable.t()) :: tree()
  def adopt({root, subtrees}, dead) do
    dead = MapSet.new(dead)

    if MapSet.member?(dead, root) do
      raise ArgumentError, "cannot remove the root #{inspect(root)} of a tree"
    end

    {root, splice(subtrees, dead)}
  end

  defp splice(subtrees, dead) do
    Enum.flat_map(subtrees, fn {node, children} ->
      if MapSet.member?(dead, node),
        do: splice(children, dead),
        else: [{node, splice(children, dead)}]
    end)
  end

  defp fanout!(fanout) when is_integer(fanout) and fanout > 0, do: min(fanout, @max_fanout)

  defp fanout!(other) do
    raise ArgumentError, "the :fanout option must be a positive integer, got: #{inspect(other)}"
  end

  defp member!(node) when is_atom(node), do: {node, nil, nil, true}

  defp member!({node, location} = member) when is_atom(node) and is_list(location) do
    unless Keyword.keyword?(location) do
      raise ArgumentError, "invalid member #{inspect(member)}: location must be a keyword list"
    end

    case Keyword.keys(location) -- [:region, :zone, :healthy] do
      [] ->
        :ok

      [key | _] ->
        raise ArgumentError,
              "invalid member #{inspect(member)}: unknown key #{inspect(key)}, " <>
                "known: [:region, :zone, :healthy]"
    end

    healthy = Keyword.get(location, :healthy, true)

    unless is_boolean(healthy) do
      raise ArgumentError,
            "invalid member #{inspect(member)}: :healthy must be a boolean, got: #{inspect(healthy)}"
    end

    {node, location[:region], location[:zone], healthy}
  end

  defp member!(other) do
    raise ArgumentError,
          "invalid member #{inspect(other)}: expected a node name or {node, location keyword list}"
  end
end

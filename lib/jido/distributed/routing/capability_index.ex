defmodule Jido.Distributed.Routing.CapabilityIndex do
  @moduledoc """
  An immutable index from signal type patterns to the values (agent ids,
  keys, ...) that declared them, answering "who handles this type?" without
  scanning every pattern.

  Patterns follow `Jido.Distributed.Routing.Pattern`: `*` matches one segment, `**`
  zero or more. The index is a trie over pattern segments with a literal edge
  per segment plus one `*` edge and one `**` edge per node. `lookup/2` walks it
  along the type's segments, so its cost depends on the type's length and on
  how many wildcard branches are live, not on how many patterns are stored.

  A `**` node can be entered at several positions of the same type (for
  example in `"**.**.**.a"`, or after `"*.**"` and `"**"` prefixes), which in a
  naive walk multiplies into exponential work. Each `**` node carries an id and
  the walk remembers, per lookup, the positions from which each `**` node has
  already been expanded, so every trie node is visited at most once per
  position of the type.

  ## Values and result order

  Any term can be a value; values are told apart with `===` (map keys), so
  `1` and `1.0` are different values.

  A value gets a sequence number when it enters the index (its first pattern)
  and keeps it until it leaves (its last pattern is deleted). **`lookup/2`
  returns values without duplicates, ordered by when they entered the
  index** (first in, first returned); for `new/1`, by first appearance in the
  list. Each pattern keeps its values sorted by that number, so merging the
  values of several matching patterns compares small integers only, which on
  the BEAM is several times faster than comparing the values themselves.

  `lookup/2` costs the walk plus O(results). Adding a value that is new to
  the index is O(trie depth); adding a value already in the index to a
  pattern holding `n` values, or deleting one, costs up to O(n).

  Patterns are kept as written: `"**.**.a"` and `"**.a"` match the same types
  but are different entries.

  ## Examples

      iex> alias Jido.Distributed.Routing.CapabilityIndex
      iex> index =
      ...>   CapabilityIndex.new()
      ...>   |> CapabilityIndex.put("order.*.added", "billing")
      ...>   |> CapabilityIndex.put("order.**", "audit")
      ...>   |> CapabilityIndex.put("user.created", "crm")
      iex> CapabilityIndex.lookup(index, "order.item.added")
      ["billing", "audit"]
      iex> CapabilityIndex.lookup(index, "order")
      ["audit"]
      iex> CapabilityIndex.lookup(index, "user.deleted")
      []
      iex> index |> CapabilityIndex.delete_value("audit") |> CapabilityIndex.lookup("order.item.added")
      ["billing"]
  """

  alias Jido.Distributed.Routing.Pattern

  # A trie node is {entries, exact, star, globstar}:
  #   entries  - [{seq, value}] of the patterns ending here, newest (highest
  #              seq) first, so adding a value new to the index is O(1)
  #   exact    - %{segment => node}
  #   star     - node behind a `*` edge, or nil
  #   globstar - {id, node} behind a `**` edge, or nil; the id keys the
  #              per-lookup memo.
  # `values` maps each value to {seq, sources}: its sequence number and its
  # pattern sources, a binary when it has one pattern (most values) and an
  # ordset of them otherwise. Sequence numbers and `**` ids share one
  # counter, so both are unique within an index.
  @empty_node {[], %{}, nil, nil}

  defstruct root: @empty_node, values: %{}, size: 0, next_id: 0

  @typedoc "A value stored in the index, such as an agent id."
  @type value :: term()

  @typedoc "A pattern, as a string or compiled with `Jido.Distributed.Routing.Pattern.compile/1`."
  @type pattern :: String.t() | Pattern.t()

  @opaque t :: %__MODULE__{
            root: tuple(),
            values: %{optional(value()) => {non_neg_integer(), String.t() | [String.t()]}},
            size: non_neg_integer(),
            next_id: non_neg_integer()
          }

  @doc """
  Returns an index holding `entries`, a list of `{pattern, value}` pairs.

  Builds in one pass, with one trie insertion per distinct pattern, so it is
  faster than repeated `put/3`. Values are ordered by their first appearance
  in `entries`. Raises `ArgumentError` if a pattern is invalid.

      iex> index = Jido.Distributed.Routing.CapabilityIndex.new([{"a.*", :y}, {"a.*", :x}, {"**", :y}])
      iex> Jido.Distributed.Routing.CapabilityIndex.size(index)
      3
      iex> Jido.Distributed.Routing.CapabilityIndex.lookup(index, "a.b")
      [:y, :x]
  """
  @spec new([{pattern(), value()}]) :: t()
  def new(entries \\ []) when is_list(entries) do
    {groups, index} =
      Enum.reduce(entries, {%{}, %__MODULE__{}}, fn {pattern, value}, {groups, index} ->
        %Pattern{source: source} = compiled = Pattern.compile!(pattern)

        case register(index, source, value) do
          {:new, seq, index} ->
            {Map.update(groups, compiled, [{seq, value}], &[{seq, value} | &1]), index}

          :present ->
            {groups, index}
        end
      end)

    Enum.reduce(groups, index, fn {%Pattern{segments: segments}, pairs}, index ->
      {root, next_id} = insert(index.root, segments, newest_first(pairs), index.next_id)
      %{index | root: root, next_id: next_id}
    end)
  end

  @doc """
  Adds `value` under `pattern`. Adding a pair that is already present returns
  the index unchanged. Raises `ArgumentError` if `pattern` is invalid.

      iex> alias Jido.Distributed.Routing.CapabilityIndex
      iex> index = CapabilityIndex.new() |> CapabilityIndex.put("a.*", 1) |> CapabilityIndex.put("a.*", 1)
      iex> CapabilityIndex.size(index)
      1
  """
  @spec put(t(), pattern(), value()) :: t()
  def put(%__MODULE__{} = index, pattern, value) do
    %Pattern{source: source, segments: segments} = Pattern.compile!(pattern)

    case register(index, source, value) do
      {:new, seq, index} ->
        {root, next_id} = insert(index.root, segments, [{seq, value}], index.next_id)
        %{index | root: root, next_id: next_id}

      :present ->
        index
    end
  end

  @doc """
  Removes `value` from `pattern`. Removing a pair that is not present returns
  the index unchanged. Raises `ArgumentError` if `pattern` is invalid.

      iex> alias Jido.Distributed.Routing.CapabilityIndex
      iex> index = CapabilityIndex.new([{"a.*", 1}, {"a.*", 2}])
      iex> index |> CapabilityIndex.delete("a.*", 1) |> CapabilityIndex.lookup("a.b")
      [2]
  """
  @spec delete(t(), pattern(), value()) :: t()
  def delete(%__MODULE__{values: values} = index, pattern, value) do
    %Pattern{source: source, segments: segments} = Pattern.compile!(pattern)

    with {:ok, {seq, sources}} <- Map.fetch(values, value),
         true <- has_source?(sources, source) do
      values =
        case delete_source(sources, source) do
          nil -> Map.delete(values, value)
          rest -> Map.put(values, value, {seq, rest})
        end

      %{index | root: remove(index.root, segments, seq), values: values, size: index.size - 1}
    else
      _absent -> index
    end
  end

  @doc """
  Removes `value` from every pattern that holds it, for example when an agent
  stops. Costs O(patterns of that value), not O(index).

      iex> alias Jido.Distributed.Routing.CapabilityIndex
      iex> index = CapabilityIndex.new([{"a.*", 1}, {"b.**", 1}, {"b.**", 2}])
      iex> index = CapabilityIndex.delete_value(index, 1)
      iex> {CapabilityIndex.lookup(index, "a.x"), CapabilityIndex.lookup(index, "b.x"), CapabilityIndex.size(index)}
      {[], [2], 1}
  """
  @spec delete_value(t(), value()) :: t()
  def delete_value(%__MODULE__{values: values} = index, value) do
    case Map.fetch(values, value) do
      {:ok, {seq, sources}} ->
        sources = List.wrap(sources)

        root =
          Enum.reduce(sources, index.root, fn source, root ->
            remove(root, Pattern.compile!(source).segments, seq)
          end)

        %{
          index
          | root: root,
            values: Map.delete(values, value),
            size: index.size - length(sources)
        }

      :error ->
        index
    end
  end

  @doc """
  Returns the values of every pattern that matches `type`, without
  duplicates, in the order they entered the index (see "Values and result
  order" above). An invalid type (see
  `Jido.Distributed.Routing.Pattern.validate_type/1`) matches nothing.

      iex> index = Jido.Distributed.Routing.CapabilityIndex.new([{"**.failed", "ops"}, {"payment.*", "pay"}])
      iex> Jido.Distributed.Routing.CapabilityIndex.lookup(index, "payment.failed")
      ["ops", "pay"]
      iex> Jido.Distributed.Routing.CapabilityIndex.lookup(index, "payment..failed")
      []
  """
  @spec lookup(t(), String.t()) :: [value()]
  def lookup(%__MODULE__{root: root}, type) when is_binary(type) do
    case Pattern.split_type(type) do
      {:ok, segments} -> root |> collect(segments, length(segments), []) |> finish()
      {:error, _reason} -> []
    end
  end

  def lookup(%__MODULE__{}, _type), do: []

  @doc """
  Returns the number of `{pattern, value}` pairs in the index.

      iex> Jido.Distributed.Routing.CapabilityIndex.size(Jido.Distributed.Routing.CapabilityIndex.new())
      0
  """
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{size: size}), do: size

  @doc """
  Every value in the index, in no particular order.

      iex> alias Jido.Distributed.Routing.CapabilityIndex
      iex> CapabilityIndex.new([{"a.*", 1}, {"b.**", 1}]) |> CapabilityIndex.values()
      [1]
  """
  @spec values(t()) :: [value()]
  def values(%__MODULE__{values: values}), do: Map.keys(values)

  # -- building ---------------------------------------------------------------

  # Records `value` under `source` in `values`, giving the value a sequence
  # number if it is new to the index. `:present` if the pair already exists.
  defp register(%__MODULE__{values: values} = index, source, value) do
    case Map.fetch(values, value) do
      {:ok, {seq, sources}} ->
        if has_source?(sources, source) do
          :present
        else
          values = Map.put(values, value, {seq, add_source(sources, source)})
          {:new, seq, %{index | values: values, size: index.size + 1}}
        end

      :error ->
        seq = index.next_id
        values = Map.put(values, value, {seq, source})
        {:new, seq, %{index | values: values, size: index.size + 1, next_id: seq + 1}}
    end
  end

  defp newest_first(pairs), do: :lists.reverse(:lists.keysort(1, pairs))

  defp has_source?(sources, source) when is_binary(sources), do: sources == source
  defp has_source?(sources, source), do: :ordsets.is_element(source, sources)

  defp add_source(sources, source) when is_binary(sources),
    do: :ordsets.from_list([sources, source])

  defp add_source(sources, source), do: :ordsets.add_element(source, sources)

  # nil when no source is left.
  defp delete_source(source, source) when is_binary(source), do: nil

  defp delete_source(sources, source) do
    case :ordsets.del_element(source, sources) do
      [last] -> last
      rest -> rest
    end
  end

  # Merges `pairs` ([{seq, value}], newest first) into the node at the end of
  # `segments`, creating nodes (and `**` ids) on the way.
  defp insert({entries, exact, star, glob}, [], pairs, id),
    do: {{merge_entries(entries, pairs), exact, star, glob}, id}

  defp insert({entries, exact, star, glob}, [:one | rest], pairs, id) do
    {child, id} = insert(star || @empty_node, rest, pairs, id)
    {{entries, exact, child, glob}, id}
  end

  defp insert({entries, exact, star, glob}, [:any | rest], pairs, id) do
    {glob_id, child, id} =
      case glob do
        nil -> {id, @empty_node, id + 1}
        {glob_id, child} -> {glob_id, child, id}
      end

    {child, id} = insert(child, rest, pairs, id)
    {{entries, exact, star, {glob_id, child}}, id}
  end

  defp insert({entries, exact, star, glob}, [segment | rest], pairs, id) do
    {child, id} = insert(Map.get(exact, segment, @empty_node), rest, pairs, id)
    {{entries, Map.put(exact, segment, child), star, glob}, id}
  end

  # Removes the value numbered `seq` at the end of `segments`, pruning nodes
  # left empty. The root is never pruned.
  defp remove(root, segments, seq) do
    case remove_node(root, segments, seq) do
      nil -> @empty_node
      root -> root
    end
  end

  defp remove_node({entries, exact, star, glob}, [], seq),
    do: prune({:lists.keydelete(seq, 1, entries), exact, star, glob})

  defp remove_node({entries, exact, star, glob}, [:one | rest], seq) when star != nil,
    do: prune({entries, exact, remove_node(star, rest, seq), glob})

  defp remove_node({entries, exact, star, {glob_id, child}}, [:any | rest], seq) do
    glob =
      case remove_node(child, rest, seq) do
        nil -> nil
        child -> {glob_id, child}
      end

    prune({entries, exact, star, glob})
  end

  defp remove_node({entries, exact, star, glob} = node, [segment | rest], seq)
       when is_binary(segment) do
    case exact do
      %{^segment => child} ->
        exact =
          case remove_node(child, rest, seq) do
            nil -> Map.delete(exact, segment)
            child -> Map.put(exact, segment, child)
          end

        prune({entries, exact, star, glob})

      _ ->
        node
    end
  end

  defp remove_node(node, _segments, _seq), do: node

  defp prune({[], exact, nil, nil}) when map_size(exact) == 0, do: nil
  defp prune(node), do: node

  # -- lookup -----------------------------------------------------------------

  # Collects the entry lists of matching patterns into `acc`, walking `node`
  # with the type segments still to match (`left` of them). A node reached
  # without crossing a `**` edge is reached from one position only, so this
  # walk needs no memo; below a `**` edge the walk continues in `collect/5`.
  defp collect({entries, exact, star, glob}, segments, left, acc) do
    acc = if segments == [] and entries != [], do: [entries | acc], else: acc

    acc =
      case glob do
        nil -> acc
        {_id, child} -> child |> expand(segments, left, -1, acc, %{}) |> elem(0)
      end

    case segments do
      [] ->
        acc

      [segment | rest] ->
        acc =
          case exact do
            %{^segment => child} -> collect(child, rest, left - 1, acc)
            _ -> acc
          end

        case star do
          nil -> acc
          child -> collect(child, rest, left - 1, acc)
        end
    end
  end

  # Like collect/4, below at least one `**` edge: a node can now be reached
  # from several positions. `seen` maps a `**` node's id to the largest
  # `left` it has been expanded from; an expansion from `left` covers every
  # position from `left` down to 0, so a `**` node needs expanding only from
  # positions above the one recorded. So every node is walked at most once
  # per position, however many `**` precede it.
  defp collect({entries, exact, star, glob}, segments, left, acc, seen) do
    acc = if segments == [] and entries != [], do: [entries | acc], else: acc

    {acc, seen} =
      case glob do
        nil ->
          {acc, seen}

        {glob_id, child} ->
          case seen do
            %{^glob_id => done} when done >= left ->
              {acc, seen}

            %{^glob_id => done} ->
              expand(child, segments, left, done, acc, %{seen | glob_id => left})

            _ ->
              expand(child, segments, left, -1, acc, Map.put(seen, glob_id, left))
          end
      end

    case segments do
      [] ->
        {acc, seen}

      [segment | rest] ->
        {acc, seen} =
          case exact do
            %{^segment => child} -> collect(child, rest, left - 1, acc, seen)
            _ -> {acc, seen}
          end

        case star do
          nil -> {acc, seen}
          child -> collect(child, rest, left - 1, acc, seen)
        end
    end
  end

  # `**` takes 0, 1, 2, ... segments: walk its node from each later position
  # down to (not including) the first one already expanded.
  defp expand(node, segments, left, done, acc, seen) when left > done do
    {acc, seen} = collect(node, segments, left, acc, seen)

    case segments do
      [] -> {acc, seen}
      [_ | rest] -> expand(node, rest, left - 1, done, acc, seen)
    end
  end

  defp expand(_node, _segments, _left, _done, acc, seen), do: {acc, seen}

  # One result list from the matched entry lists (each newest first):
  # merged pairwise by sequence number, dropping repeats. The last merge is
  # tail-recursive and emits bare values, which reverses them into arrival
  # order.
  defp finish([]), do: []
  defp finish([entries]), do: values_reversed(entries, [])
  defp finish([a, b]), do: merge_values(a, b, [])
  defp finish(lists), do: lists |> merge_pairs() |> finish()

  defp merge_pairs([a, b | rest]), do: [merge_entries(a, b) | merge_pairs(rest)]
  defp merge_pairs(rest), do: rest

  defp merge_entries([{sa, _} = a | ra], [{sb, _} | _] = lb) when sa > sb,
    do: [a | merge_entries(ra, lb)]

  defp merge_entries([{sa, _} | _] = la, [{sb, _} = b | rb]) when sa < sb,
    do: [b | merge_entries(la, rb)]

  defp merge_entries([a | ra], [_ | rb]), do: [a | merge_entries(ra, rb)]
  defp merge_entries([], lb), do: lb
  defp merge_entries(la, []), do: la

  defp merge_values([{sa, va} | ra], [{sb, _} | _] = lb, acc) when sa > sb,
    do: merge_values(ra, lb, [va | acc])

  defp merge_values([{sa, _} | _] = la, [{sb, vb} | rb], acc) when sa < sb,
    do: merge_values(la, rb, [vb | acc])

  defp merge_values([{_, va} | ra], [_ | rb], acc), do: merge_values(ra, rb, [va | acc])
  defp merge_values([], lb, acc), do: values_reversed(lb, acc)
  defp merge_values(la, [], acc), do: values_reversed(la, acc)

  defp values_reversed([{_, value} | rest], acc), do: values_reversed(rest, [value | acc])
  defp values_reversed([], acc), do: acc

  defimpl Inspect do
    def inspect(index, _opts) do
      "#Jido.Distributed.Routing.CapabilityIndex<size: #{index.size}>"
    end
  end
end

defmodule Jido.Distributed.CapabilityIndex do
  @moduledoc """
  An immutable index from signal type patterns to the values (agent ids,
  keys, ...) that declared them, answering "who handles this type?" without
  scanning every pattern.

  Patterns follow `Jido.Distributed.Pattern`: `*` matches one segment, `**`
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

  ## Values

  Each pattern holds its values as a sorted list without duplicates (an
  `:ordsets` set), and `lookup/2` returns the values of all matching patterns
  merged into one such list: **results are sorted in Erlang term order and
  deduplicated.** A type matching one pattern costs no copying at all.
  Values are compared like in `:ordsets`, with `==`, so `1` and `1.0` count
  as the same value; use ids that are binaries, atoms, pids or tuples.

  Adding a value to a pattern that already holds `n` values costs O(n); build
  large indexes in one go with `new/1`.

  Patterns are kept as written: `"**.**.a"` and `"**.a"` match the same types
  but are different entries.

  ## Examples

      iex> alias Jido.Distributed.CapabilityIndex
      iex> index =
      ...>   CapabilityIndex.new()
      ...>   |> CapabilityIndex.put("order.*.added", "billing")
      ...>   |> CapabilityIndex.put("order.**", "audit")
      ...>   |> CapabilityIndex.put("user.created", "crm")
      iex> CapabilityIndex.lookup(index, "order.item.added")
      ["audit", "billing"]
      iex> CapabilityIndex.lookup(index, "order")
      ["audit"]
      iex> CapabilityIndex.lookup(index, "user.deleted")
      []
      iex> index |> CapabilityIndex.delete_value("audit") |> CapabilityIndex.lookup("order.item.added")
      ["billing"]
  """

  alias Jido.Distributed.Pattern

  # A trie node is {values, exact, star, globstar}:
  #   values   - ordset of the values whose pattern ends at this node
  #   exact    - %{segment => node}
  #   star     - node behind a `*` edge, or nil
  #   globstar - {id, node} behind a `**` edge, or nil; the id is unique
  #              within one index and keys the per-lookup memo.
  @empty_node {[], %{}, nil, nil}

  defstruct root: @empty_node, by_value: %{}, size: 0, next_id: 0

  @typedoc "A value stored in the index, such as an agent id."
  @type value :: term()

  @typedoc "A pattern, as a string or compiled with `Jido.Distributed.Pattern.compile/1`."
  @type pattern :: String.t() | Pattern.t()

  @opaque t :: %__MODULE__{
            root: tuple(),
            by_value: %{optional(value()) => [String.t()]},
            size: non_neg_integer(),
            next_id: non_neg_integer()
          }

  @doc """
  Returns an index holding `entries`, a list of `{pattern, value}` pairs.

  Faster than repeated `put/3` when many values share a pattern. Raises
  `ArgumentError` if a pattern is invalid.

      iex> index = Jido.Distributed.CapabilityIndex.new([{"a.*", :x}, {"a.*", :y}, {"**", :x}])
      iex> Jido.Distributed.CapabilityIndex.size(index)
      3
      iex> Jido.Distributed.CapabilityIndex.lookup(index, "a.b")
      [:x, :y]
  """
  @spec new([{pattern(), value()}]) :: t()
  def new(entries \\ []) when is_list(entries) do
    entries
    |> Enum.group_by(fn {pattern, _value} -> Pattern.compile!(pattern) end, &elem(&1, 1))
    |> Enum.reduce(%__MODULE__{}, fn {compiled, values}, index ->
      add(index, compiled, :lists.usort(values))
    end)
  end

  @doc """
  Adds `value` under `pattern`. Adding a pair that is already present returns
  the index unchanged. Raises `ArgumentError` if `pattern` is invalid.

      iex> alias Jido.Distributed.CapabilityIndex
      iex> index = CapabilityIndex.new() |> CapabilityIndex.put("a.*", 1) |> CapabilityIndex.put("a.*", 1)
      iex> CapabilityIndex.size(index)
      1
  """
  @spec put(t(), pattern(), value()) :: t()
  def put(%__MODULE__{} = index, pattern, value) do
    add(index, Pattern.compile!(pattern), [value])
  end

  @doc """
  Removes `value` from `pattern`. Removing a pair that is not present returns
  the index unchanged. Raises `ArgumentError` if `pattern` is invalid.

      iex> alias Jido.Distributed.CapabilityIndex
      iex> index = CapabilityIndex.new([{"a.*", 1}, {"a.*", 2}])
      iex> index |> CapabilityIndex.delete("a.*", 1) |> CapabilityIndex.lookup("a.b")
      [2]
  """
  @spec delete(t(), pattern(), value()) :: t()
  def delete(%__MODULE__{by_value: by_value} = index, pattern, value) do
    %Pattern{source: source, segments: segments} = Pattern.compile!(pattern)
    sources = Map.get(by_value, value, [])

    if :ordsets.is_element(source, sources) do
      by_value =
        case :ordsets.del_element(source, sources) do
          [] -> Map.delete(by_value, value)
          rest -> Map.put(by_value, value, rest)
        end

      %{
        index
        | root: remove(index.root, segments, value),
          by_value: by_value,
          size: index.size - 1
      }
    else
      index
    end
  end

  @doc """
  Removes `value` from every pattern that holds it, for example when an agent
  stops. Costs O(patterns of that value), not O(index).

      iex> alias Jido.Distributed.CapabilityIndex
      iex> index = CapabilityIndex.new([{"a.*", 1}, {"b.**", 1}, {"b.**", 2}])
      iex> index = CapabilityIndex.delete_value(index, 1)
      iex> {CapabilityIndex.lookup(index, "a.x"), CapabilityIndex.lookup(index, "b.x"), CapabilityIndex.size(index)}
      {[], [2], 1}
  """
  @spec delete_value(t(), value()) :: t()
  def delete_value(%__MODULE__{by_value: by_value} = index, value) do
    case Map.fetch(by_value, value) do
      {:ok, sources} ->
        root =
          Enum.reduce(sources, index.root, fn source, root ->
            remove(root, Pattern.compile!(source).segments, value)
          end)

        %{
          index
          | root: root,
            by_value: Map.delete(by_value, value),
            size: index.size - length(sources)
        }

      :error ->
        index
    end
  end

  @doc """
  Returns the values of every pattern that matches `type`, sorted in Erlang
  term order and without duplicates. An invalid type (see
  `Jido.Distributed.Pattern.validate_type/1`) matches nothing.

      iex> index = Jido.Distributed.CapabilityIndex.new([{"**.failed", "ops"}, {"payment.*", "pay"}])
      iex> Jido.Distributed.CapabilityIndex.lookup(index, "payment.failed")
      ["ops", "pay"]
      iex> Jido.Distributed.CapabilityIndex.lookup(index, "payment..failed")
      []
  """
  @spec lookup(t(), String.t()) :: [value()]
  def lookup(%__MODULE__{root: root}, type) when is_binary(type) do
    case Pattern.split_type(type) do
      {:ok, segments} ->
        case walk(root, segments, length(segments), [], %{}) do
          {[], _seen} -> []
          {[values], _seen} -> values
          {many, _seen} -> :lists.umerge(many)
        end

      {:error, _reason} ->
        []
    end
  end

  def lookup(%__MODULE__{}, _type), do: []

  @doc """
  Returns the number of `{pattern, value}` pairs in the index.

      iex> Jido.Distributed.CapabilityIndex.size(Jido.Distributed.CapabilityIndex.new())
      0
  """
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{size: size}), do: size

  # -- building ---------------------------------------------------------------

  # Adds the ordset `values` under `compiled`, skipping pairs already present.
  defp add(index, %Pattern{source: source, segments: segments}, values) do
    %__MODULE__{by_value: by_value} = index
    new_values = Enum.reject(values, &:ordsets.is_element(source, Map.get(by_value, &1, [])))

    if new_values == [] do
      index
    else
      {root, next_id} = insert(index.root, segments, new_values, index.next_id)

      by_value =
        Enum.reduce(new_values, by_value, fn value, acc ->
          Map.update(acc, value, [source], &:ordsets.add_element(source, &1))
        end)

      %{
        index
        | root: root,
          by_value: by_value,
          size: index.size + length(new_values),
          next_id: next_id
      }
    end
  end

  defp insert({values, exact, star, glob}, [], new_values, id),
    do: {{:ordsets.union(values, new_values), exact, star, glob}, id}

  defp insert({values, exact, star, glob}, [:one | rest], new_values, id) do
    {child, id} = insert(star || @empty_node, rest, new_values, id)
    {{values, exact, child, glob}, id}
  end

  defp insert({values, exact, star, glob}, [:any | rest], new_values, id) do
    {glob_id, child, id} =
      case glob do
        nil -> {id, @empty_node, id + 1}
        {glob_id, child} -> {glob_id, child, id}
      end

    {child, id} = insert(child, rest, new_values, id)
    {{values, exact, star, {glob_id, child}}, id}
  end

  defp insert({values, exact, star, glob}, [segment | rest], new_values, id) do
    {child, id} = insert(Map.get(exact, segment, @empty_node), rest, new_values, id)
    {{values, Map.put(exact, segment, child), star, glob}, id}
  end

  # Removes `value` at the end of `segments`, pruning nodes left empty. The
  # root is never pruned.
  defp remove(root, segments, value) do
    case remove_node(root, segments, value) do
      nil -> @empty_node
      root -> root
    end
  end

  defp remove_node({values, exact, star, glob}, [], value),
    do: prune({:ordsets.del_element(value, values), exact, star, glob})

  defp remove_node({values, exact, star, glob}, [:one | rest], value) when star != nil,
    do: prune({values, exact, remove_node(star, rest, value), glob})

  defp remove_node({values, exact, star, {glob_id, child}}, [:any | rest], value) do
    glob =
      case remove_node(child, rest, value) do
        nil -> nil
        child -> {glob_id, child}
      end

    prune({values, exact, star, glob})
  end

  defp remove_node({values, exact, star, glob} = node, [segment | rest], value)
       when is_binary(segment) do
    case exact do
      %{^segment => child} ->
        exact =
          case remove_node(child, rest, value) do
            nil -> Map.delete(exact, segment)
            child -> Map.put(exact, segment, child)
          end

        prune({values, exact, star, glob})

      _ ->
        node
    end
  end

  defp remove_node(node, _segments, _value), do: node

  defp prune({[], exact, nil, nil}) when map_size(exact) == 0, do: nil
  defp prune(node), do: node

  # -- lookup -----------------------------------------------------------------

  # Walks `node` with the type segments still to match (`left` of them).
  # `acc` collects the value sets of matched patterns; `seen` maps a `**`
  # node's id to the largest `left` it has been expanded from. An expansion
  # from `left` covers every position from `left` down to 0, so a `**` node
  # needs expanding only from positions above the one recorded.
  defp walk({values, exact, star, glob}, segments, left, acc, seen) do
    acc = if left == 0 and values != [], do: [values | acc], else: acc

    {acc, seen} =
      case glob do
        nil -> {acc, seen}
        {glob_id, child} -> walk_glob(glob_id, child, segments, left, acc, seen)
      end

    case segments do
      [] ->
        {acc, seen}

      [segment | rest] ->
        {acc, seen} =
          case exact do
            %{^segment => child} -> walk(child, rest, left - 1, acc, seen)
            _ -> {acc, seen}
          end

        case star do
          nil -> {acc, seen}
          child -> walk(child, rest, left - 1, acc, seen)
        end
    end
  end

  defp walk_glob(glob_id, node, segments, left, acc, seen) do
    case seen do
      %{^glob_id => done} when done >= left ->
        {acc, seen}

      %{^glob_id => done} ->
        expand_glob(node, segments, left, done, acc, Map.put(seen, glob_id, left))

      _ ->
        expand_glob(node, segments, left, -1, acc, Map.put(seen, glob_id, left))
    end
  end

  # `**` takes 0, 1, 2, ... segments: walk its node from each later position
  # down to (not including) the first one already expanded.
  defp expand_glob(node, segments, left, done, acc, seen) when left > done do
    {acc, seen} = walk(node, segments, left, acc, seen)

    case segments do
      [] -> {acc, seen}
      [_ | rest] -> expand_glob(node, rest, left - 1, done, acc, seen)
    end
  end

  defp expand_glob(_node, _segments, _left, _done, acc, seen), do: {acc, seen}

  defimpl Inspect do
    def inspect(index, _opts) do
      "#Jido.Distributed.CapabilityIndex<size: #{index.size}>"
    end
  end
end

defmodule Jido.Distributed.Routing.Rank do
  @moduledoc """
  How `Jido.Router` orders capable agents (its module doc gives the rules):
  the sort key of an agent in a list, and the Directory's hot path, which
  picks the best row of the Directory's pattern tables without building a
  list.

  Rows of the Directory's tables (`Jido.Distributed.Directory.Store`) are
  `{pattern, id, pid, slot, id_hash}`; `keys` are the signal type (for exact
  patterns) and the matching wildcard patterns. Loads are compared as their
  encoded bits (same order as the floats, see
  `Jido.Distributed.Directory.Index`); the tie-break is computed only on
  ties.
  """

  alias Jido.Distributed.Directory.{Index, Store}
  alias Jido.Distributed.Routing.Location

  @class_rank %{local: 0, same_zone: 1, same_region: 2, remote: 3}

  @typedoc "Routing weights, connected nodes and known distance classes, read once per route."
  @type context :: {%{node() => number() | :infinity}, [node()], %{node() => atom()}}

  @doc """
  The weight of `node`: its entry in `weights` if any, else `0` when it is
  in `nodes` (connected) and `:infinity` otherwise.

      iex> alias Jido.Distributed.Routing.Rank
      iex> {Rank.weight(:a, %{a: 5}, []), Rank.weight(:b, %{}, [:b]), Rank.weight(:c, %{}, [])}
      {5, 0, :infinity}
  """
  @spec weight(node(), map(), [node()]) :: number() | :infinity
  def weight(node, weights, nodes) do
    case weights do
      %{^node => weight} -> weight
      _ -> if :lists.member(node, nodes), do: 0, else: :infinity
    end
  end

  @doc """
  The sort key of an agent of a list: local first, then by weight,
  distance class (`class_of` is not called for an unreachable node), load
  and tie-break `hash`.

      iex> alias Jido.Distributed.Routing.Rank
      iex> near = Rank.key(false, 0, :b, fn _ -> :same_zone end, 3, 1)
      iex> far = Rank.key(false, 0, :c, fn _ -> :remote end, 0, 1)
      iex> Enum.sort([far, near]) == [near, far]
      true
  """
  @spec key(boolean(), number() | :infinity, node(), (node() -> atom()), number(), integer()) ::
          tuple()
  def key(true = _local?, _weight, _node, _class_of, load, hash), do: {0, 0, 0, load, hash}
  def key(false, :infinity, _node, _class_of, load, hash), do: {1, :infinity, 3, load, hash}

  def key(false, weight, node, class_of, load, hash),
    do: {1, weight, Map.get(@class_rank, class_of.(node), 3), load, hash}

  @doc false
  # The tie-break between equal agents: a well-mixed 32-bit function of the
  # signal id's hash and the agent id's hash (`:erlang.phash2/1` of each), so
  # a signal always picks the same agent among equals and different signals
  # spread evenly over them. Cheaper than hashing the pair on the hot path,
  # where the agent's hash is precomputed. (Arithmetic stays in small
  # integers: inputs below 2^32, products below 2^59.)
  @spec tie(non_neg_integer(), non_neg_integer()) :: non_neg_integer()
  def tie(signal_hash, agent_hash) do
    x = Bitwise.bxor(signal_hash, agent_hash)
    x = Bitwise.band(Bitwise.bxor(Bitwise.bsr(x, 16), x) * 0x45D9F3B, 0xFFFFFFFF)
    x = Bitwise.band(Bitwise.bxor(Bitwise.bsr(x, 16), x) * 0x45D9F3B, 0xFFFFFFFF)
    Bitwise.bxor(Bitwise.bsr(x, 16), x)
  end

  @doc """
  The least loaded row of `table` under `keys` (ties broken by the signal
  id's hash `sh`), or `nil`.
  """
  @spec best_local([String.t()], atom(), :atomics.atomics_ref(), non_neg_integer()) ::
          tuple() | nil
  def best_local(keys, table, loads, sh) do
    case local_keys(keys, table, loads, sh, nil) do
      nil -> nil
      {_load, _tie, row} -> row
    end
  end

  defp local_keys([key | keys], table, loads, sh, best),
    do: local_keys(keys, table, loads, sh, local_rows(:ets.lookup(table, key), loads, sh, best))

  defp local_keys([], _table, _loads, _sh, best), do: best

  defp local_rows([{_p, _id, _pid, slot, _h} = row | rows], loads, sh, best),
    do: local_rows(rows, loads, sh, better(:atomics.get(loads, slot), row, sh, best))

  defp local_rows([], _loads, _sh, best), do: best

  # `best` is {key, tie | nil, row}.
  defp better(key, row, sh, {best_key, tie, best_row} = best) do
    cond do
      key > best_key ->
        best

      key < best_key ->
        {key, nil, row}

      true ->
        tie = tie || tie(sh, elem(best_row, 4))
        own = tie(sh, elem(row, 4))
        if own < tie, do: {key, own, row}, else: {key, tie, best_row}
    end
  end

  defp better(key, row, _sh, nil), do: {key, nil, row}

  @doc """
  The best row of `table` under `keys` by weight, distance class, load and
  tie-break, or `nil`. Each node is ranked once per call.
  """
  @spec best_remote([String.t()], atom(), :atomics.atomics_ref(), non_neg_integer(), context()) ::
          tuple() | nil
  def best_remote(keys, table, loads, sh, ctx) do
    case remote_keys(keys, table, loads, sh, ctx, nil, []) do
      nil -> nil
      {_key, _tie, row} -> row
    end
  end

  defp remote_keys([key | keys], table, loads, sh, ctx, best, memo) do
    {best, memo} = remote_rows(:ets.lookup(table, key), loads, sh, ctx, best, memo)
    remote_keys(keys, table, loads, sh, ctx, best, memo)
  end

  defp remote_keys([], _table, _loads, _sh, _ctx, best, _memo), do: best

  defp remote_rows([{_p, _id, pid, slot, _h} = row | rows], loads, sh, ctx, best, memo) do
    node = node(pid)

    {rank, memo} =
      case :lists.keyfind(node, 1, memo) do
        {_, rank} ->
          {rank, memo}

        false ->
          rank = node_rank(node, ctx)
          {rank, [{node, rank} | memo]}
      end

    best = better({rank, :atomics.get(loads, slot)}, row, sh, best)
    remote_rows(rows, loads, sh, ctx, best, memo)
  end

  defp remote_rows([], _loads, _sh, _ctx, best, memo), do: {best, memo}

  defp node_rank(node, {weights, nodes, classes}) do
    case weight(node, weights, nodes) do
      :infinity ->
        {:infinity, 3}

      weight ->
        class =
          case classes do
            %{^node => class} -> class
            _ -> Location.class_of(node)
          end

        {weight, Map.get(@class_rank, class, 3)}
    end
  end

  @doc """
  The descriptor of a row (see `t:Jido.Distributed.Directory.descriptor/0`).
  Capabilities come from the agent's row (only that element is copied); an
  agent unregistered since the lookup is still a valid answer, with none.
  """
  @spec describe(tuple(), :atomics.atomics_ref()) :: map()
  def describe({_pattern, id, pid, slot, _hash}, loads) do
    node = node(pid)

    capabilities =
      try do
        :ets.lookup_element(Store.agents(), {id, node}, 3)
      rescue
        ArgumentError -> []
      end

    %{
      id: id,
      pid: pid,
      node: node,
      capabilities: capabilities,
      load: Index.decode_load(:atomics.get(loads, slot))
    }
  end
end

defmodule Jido.Distributed.Directory.Index do
  @moduledoc """
  The Directory server's write side of the tables readers use without a
  message: the rows of `Jido.Distributed.Directory.Store`, the agents'
  loads in an `:atomics` array (one slot per agent), and the *view* that
  `Jido.Router` and `Jido.Distributed.Directory` read on every lookup:
  `{capability index of the wildcard patterns, load array, %{node =>
  distance class}}`, in `:persistent_term`.

  The view is written only when what it holds changes (a wildcard pattern
  appears or disappears, the load array grows, a node's distance class is
  learned), never because the server restarted: a restarted server
  rebuilds its state from the tables (`recover/1`) and adopts the published
  load array and classes, and `publish/1` skips the write when the
  published view already holds the same patterns, array and classes. (A
  `:persistent_term` write costs a scan of every process's heap.)
  """

  alias Jido.Distributed.Directory.Store
  alias Jido.Distributed.Routing.CapabilityIndex

  @view {Jido.Distributed.Directory, :view}
  @initial_slots 1024

  defstruct wild: %{},
            trie: nil,
            loads: nil,
            capacity: 0,
            free: [],
            next_slot: 1,
            classes: %{},
            dirty: true,
            dirty_since: nil

  @typedoc """
  `wild` counts the agents declaring each wildcard pattern, `trie` indexes
  those patterns; `free`, `next_slot` and `capacity` manage the load slots;
  `dirty` (since `dirty_since`) says the view changed since published.
  """
  @type t :: %__MODULE__{}

  @typedoc "The published view."
  @type view :: {CapabilityIndex.t(), :atomics.atomics_ref(), %{node() => atom()}}

  @doc "The published view, or `nil` before the first Directory started."
  @spec view() :: view() | nil
  def view, do: :persistent_term.get(@view, nil)

  @doc """
  An index rebuilt from the tables after a (re)start: `{index, local,
  remote}` where `local` is `%{id => {pid, patterns, slot}}` of this node's
  agents and `remote` `%{node => %{id => {pid, patterns, slot}}}`. The load
  array and the classes of the published view are kept.
  """
  @spec recover(node()) :: {t(), map(), map()}
  def recover(me) do
    {loads, classes} =
      case view() do
        {_trie, loads, classes} -> {loads, classes}
        nil -> {:atomics.new(@initial_slots, signed: false), %{}}
      end

    index = %__MODULE__{
      trie: CapabilityIndex.new(),
      loads: loads,
      capacity: :atomics.info(loads).size,
      classes: classes
    }

    {index, local, remote} =
      Enum.reduce(:ets.tab2list(Store.agents()), {index, %{}, %{}}, fn
        {{id, node}, pid, sources, slot}, {index, local, remote} ->
          index = %{add_wild(index, sources) | next_slot: max(index.next_slot, slot + 1)}

          if node == me,
            do: {index, Map.put(local, id, {pid, sources, slot}), remote},
            else:
              {index, local,
               Map.update(
                 remote,
                 node,
                 %{id => {pid, sources, slot}},
                 &Map.put(&1, id, {pid, sources, slot})
               )}
      end)

    used =
      MapSet.new(
        Enum.concat([Map.values(local) | Map.values(remote) |> Enum.map(&Map.values/1)]),
        &elem(&1, 2)
      )

    free = for slot <- 1..(index.next_slot - 1)//1, not MapSet.member?(used, slot), do: slot
    index = ensure_capacity(%{index | free: free}, index.next_slot - 1)
    for slot <- free, do: :atomics.put(index.loads, slot, 0)
    repair_rows(me)
    {index, local, remote}
  end

  # The server writes an agent's row and its pattern rows one after the
  # other; killed in between, it leaves them out of step. The agents table
  # is the record: missing pattern rows are added, rows of no agent dropped.
  defp repair_rows(me) do
    wanted =
      for {{id, node}, pid, sources, slot} <- :ets.tab2list(Store.agents()),
          source <- sources,
          into: MapSet.new(),
          do:
            {if(node == me, do: Store.local(), else: Store.remote()),
             {source, id, pid, slot, :erlang.phash2(id)}}

    for table <- [Store.local(), Store.remote()],
        row <- :ets.tab2list(table),
        not MapSet.member?(wanted, {table, row}),
        do: :ets.delete_object(table, row)

    for {table, row} <- wanted,
        row not in :ets.lookup(table, elem(row, 0)),
        do: :ets.insert(table, row)

    :ok
  end

  @doc "Adds an agent's rows (in `table`, local or remote) with a new slot: `{slot, index}`."
  @spec insert(t(), atom(), node(), term(), pid(), [String.t()], number()) :: {pos_integer(), t()}
  def insert(index, table, node, id, pid, sources, load) do
    {slot, index} = alloc_slot(index)
    :atomics.put(index.loads, slot, encode_load(load))
    :ets.insert(Store.agents(), {{id, node}, pid, sources, slot})
    insert_rows(table, id, pid, slot, sources)
    {slot, add_wild(index, sources)}
  end

  @doc "Replaces an agent's pid and patterns, keeping its slot."
  @spec replace(
          t(),
          atom(),
          node(),
          term(),
          {pid(), [String.t()]},
          {pid(), [String.t()]},
          pos_integer()
        ) :: t()
  def replace(index, table, node, id, {old_pid, old_sources}, {pid, sources}, slot) do
    :ets.insert(Store.agents(), {{id, node}, pid, sources, slot})
    delete_rows(table, id, old_pid, slot, old_sources)
    insert_rows(table, id, pid, slot, sources)
    index |> add_wild(sources) |> remove_wild(old_sources)
  end

  @doc "Removes an agent's rows and frees its slot."
  @spec remove(t(), atom(), node(), term(), pid(), [String.t()], pos_integer()) :: t()
  def remove(index, table, node, id, pid, sources, slot) do
    delete_rows(table, id, pid, slot, sources)
    :ets.delete(Store.agents(), {id, node})
    :atomics.put(index.loads, slot, 0)
    %{remove_wild(index, sources) | free: [slot | index.free]}
  end

  @doc "Sets the load in `slot`."
  @spec set_load(t(), pos_integer(), number()) :: t()
  def set_load(index, slot, load) do
    :atomics.put(index.loads, slot, encode_load(load))
    index
  end

  @doc "Records the distance class of `node`."
  @spec put_class(t(), node(), atom()) :: t()
  def put_class(index, node, class) do
    if Map.get(index.classes, node) == class,
      do: index,
      else: %{index | classes: Map.put(index.classes, node, class), dirty: true}
  end

  @doc """
  Publishes the view if it is due: at once with `force` or when `idle`,
  otherwise once it has waited `max_delay` ms (`now` in ms).
  """
  @spec maybe_publish(t(), boolean(), integer(), non_neg_integer()) :: t()
  def maybe_publish(%__MODULE__{dirty: false} = index, _now_due?, _now, _max_delay), do: index

  def maybe_publish(index, now_due?, now, max_delay) do
    cond do
      now_due? -> publish(index)
      index.dirty_since == nil -> %{index | dirty_since: now}
      now - index.dirty_since >= max_delay -> publish(index)
      true -> index
    end
  end

  @doc "Publishes the view (no write when the published one holds the same)."
  @spec publish(t()) :: t()
  def publish(index) do
    unless same_as_published?(index),
      do: :persistent_term.put(@view, {index.trie, index.loads, index.classes})

    %{index | dirty: false, dirty_since: nil}
  end

  @doc false
  # Loads are stored as the bits of a non-negative float, whose order as
  # unsigned integers is the order of the floats: compare them unconverted.
  @spec encode_load(number()) :: non_neg_integer()
  def encode_load(load) when load == 0, do: 0

  def encode_load(load) do
    <<bits::unsigned-64>> = <<:erlang.float(load)::float-64>>
    bits
  end

  @doc false
  @spec decode_load(non_neg_integer()) :: float()
  def decode_load(bits) do
    <<load::float-64>> = <<bits::unsigned-64>>
    load
  end

  # -- internals -------------------------------------------------------------------

  defp same_as_published?(%{loads: loads, classes: classes, wild: wild}) do
    case view() do
      {trie, ^loads, ^classes} ->
        patterns = CapabilityIndex.values(trie)
        length(patterns) == map_size(wild) and Enum.all?(patterns, &Map.has_key?(wild, &1))

      _ ->
        false
    end
  end

  # The id's hash is kept in the row for the router's tie-break.
  defp insert_rows(table, id, pid, slot, sources) do
    hash = :erlang.phash2(id)
    :ets.insert(table, for(source <- sources, do: {source, id, pid, slot, hash}))
  end

  defp delete_rows(table, id, pid, slot, sources) do
    hash = :erlang.phash2(id)
    Enum.each(sources, &:ets.delete_object(table, {&1, id, pid, slot, hash}))
  end

  defp add_wild(index, sources) do
    Enum.reduce(sources, index, fn source, index ->
      case index.wild do
        %{^source => n} ->
          %{index | wild: %{index.wild | source => n + 1}}

        _ ->
          if wildcard?(source) do
            %{
              index
              | wild: Map.put(index.wild, source, 1),
                trie: CapabilityIndex.put(index.trie, source, source),
                dirty: true
            }
          else
            index
          end
      end
    end)
  end

  defp remove_wild(index, sources) do
    Enum.reduce(sources, index, fn source, index ->
      case index.wild do
        %{^source => 1} ->
          %{
            index
            | wild: Map.delete(index.wild, source),
              trie: CapabilityIndex.delete(index.trie, source, source),
              dirty: true
          }

        %{^source => n} ->
          %{index | wild: %{index.wild | source => n - 1}}

        _ ->
          index
      end
    end)
  end

  defp wildcard?(source), do: :binary.match(source, "*") != :nomatch

  defp alloc_slot(%{free: [slot | free]} = index), do: {slot, %{index | free: free}}

  defp alloc_slot(%{next_slot: slot, capacity: capacity} = index) when slot <= capacity,
    do: {slot, %{index | next_slot: slot + 1}}

  defp alloc_slot(%{capacity: capacity} = index),
    do: index |> ensure_capacity(capacity * 2) |> alloc_slot()

  # A larger array, with the loads copied, published at once: rows written
  # next may use its new slots, which readers of the old view must not meet.
  # (Only the server writes loads, so none is lost between copy and swap.)
  defp ensure_capacity(%{capacity: capacity} = index, needed) when needed <= capacity, do: index

  defp ensure_capacity(%{capacity: capacity, loads: old} = index, needed) do
    size = max(needed, capacity * 2)
    loads = :atomics.new(size, signed: false)
    for slot <- 1..:atomics.info(old).size, do: :atomics.put(loads, slot, :atomics.get(old, slot))
    publish(%{index | loads: loads, capacity: size})
  end
end

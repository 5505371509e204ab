defmodule Jido.Distributed.Directory.Replica do
  @moduledoc """
  Pure: what applying another node's snapshot or delta to this node's
  replica of that node's agents changes.

  The replica of one node is `known`, `%{id => {pid, patterns, slot}}`
  (`slot` is where the agent's load lives, see
  `Jido.Distributed.Directory.Index`). `effects/2` turns one change from the
  wire (`t:Jido.Distributed.Directory.Wire.op/0`, already checked) into the
  table work it needs, which the server carries out:

    * `{:insert, id, pid, patterns, load}` - a new agent (it needs a slot);
    * `{:replace, id, {old_pid, old_patterns}, {pid, patterns}, slot}` - the
      same id with another pid or other patterns, in its slot;
    * `{:set_load, slot, load}`;
    * `{:remove, id, pid, patterns, slot}`.

  `snapshot_ops/2` turns a full copy into the changes against `known`:
  every agent of the snapshot as a put, then a delete for every known agent
  the snapshot no longer lists. A put of an agent known with the same pid
  and patterns only sets its load, so a resync after a reconnection or a
  restart rewrites no pattern row.
  """

  alias Jido.Distributed.Directory.Wire

  @typedoc "The replica of one node's agents."
  @type known :: %{term() => {pid(), [String.t()], pos_integer()}}

  @typedoc "Table work for one change."
  @type effect ::
          {:insert, term(), pid(), [String.t()], number()}
          | {:replace, term(), {pid(), [String.t()]}, {pid(), [String.t()]}, pos_integer()}
          | {:set_load, pos_integer(), number()}
          | {:remove, term(), pid(), [String.t()], pos_integer()}

  @doc """
  The table work for `op` against `known`.

      iex> alias Jido.Distributed.Directory.Replica
      iex> known = %{"a" => {self(), ["x.*"], 3}}
      iex> Replica.effects(known, {:put, "a", self(), ["x.*"], 2})
      [{:set_load, 3, 2}]
      iex> Replica.effects(known, {:load, "b", 1})
      []
      iex> Replica.effects(known, {:del, "a"})
      [{:remove, "a", self(), ["x.*"], 3}]
  """
  @spec effects(known(), Wire.op()) :: [effect()]
  def effects(known, {:put, id, pid, sources, load}) do
    case known do
      %{^id => {^pid, ^sources, slot}} ->
        [{:set_load, slot, load}]

      %{^id => {old_pid, old_sources, slot}} ->
        [{:replace, id, {old_pid, old_sources}, {pid, sources}, slot}, {:set_load, slot, load}]

      _ ->
        [{:insert, id, pid, sources, load}]
    end
  end

  def effects(known, {:del, id}) do
    case known do
      %{^id => {pid, sources, slot}} -> [{:remove, id, pid, sources, slot}]
      _ -> []
    end
  end

  def effects(known, {:load, id, load}) do
    case known do
      %{^id => {_pid, _sources, slot}} -> [{:set_load, slot, load}]
      _ -> []
    end
  end

  @doc """
  A snapshot's `entries` as changes against `known`: puts in the
  snapshot's order, then deletes of the known agents it leaves out.

      iex> alias Jido.Distributed.Directory.Replica
      iex> pid = self()
      iex> known = %{"gone" => {pid, ["g"], 1}, "kept" => {pid, ["k"], 2}}
      iex> Replica.snapshot_ops(known, [{"kept", pid, ["k"], 0.5}, {"new", pid, ["n"], 0}])
      [{:put, "kept", pid, ["k"], 0.5}, {:put, "new", pid, ["n"], 0}, {:del, "gone"}]
  """
  @spec snapshot_ops(known(), [Wire.entry()]) :: [Wire.op()]
  def snapshot_ops(known, entries) do
    puts = for {id, pid, sources, load} <- entries, do: {:put, id, pid, sources, load}
    listed = MapSet.new(entries, &elem(&1, 0))

    dels =
      for id <- Map.keys(known) |> Enum.sort(), not MapSet.member?(listed, id), do: {:del, id}

    puts ++ dels
  end

  @doc """
  `known` after `effect` (`slot` is the slot given to an inserted agent;
  ignored otherwise).

      iex> alias Jido.Distributed.Directory.Replica
      iex> known = Replica.update(%{}, {:insert, "a", self(), ["x"], 0}, 7)
      iex> known
      %{"a" => {self(), ["x"], 7}}
      iex> Replica.update(known, {:remove, "a", self(), ["x"], 7}, nil)
      %{}
  """
  @spec update(known(), effect(), pos_integer() | nil) :: known()
  def update(known, {:insert, id, pid, sources, _load}, slot),
    do: Map.put(known, id, {pid, sources, slot})

  def update(known, {:replace, id, _old, {pid, sources}, slot}, _slot),
    do: Map.put(known, id, {pid, sources, slot})

  def update(known, {:set_load, _slot, _load}, _slot2), do: known
  def update(known, {:remove, id, _pid, _sources, _slot}, _slot2), do: Map.delete(known, id)
end

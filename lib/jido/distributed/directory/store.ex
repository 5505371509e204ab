defmodule Jido.Distributed.Directory.Store do
  @moduledoc """
  The tables of `Jido.Distributed.Directory`, created by
  `Jido.Distributed.Directory.Supervisor` in its own process, so that a crash
  of the Directory's server loses nothing: the restarted server finds every
  agent in them, monitors the local ones again and asks its peers for fresh
  copies of theirs.

  The tables are public, named and read without a message:

    * `agents/0` (`:ordered_set`) - `{{id, node}, pid, patterns, slot}`, one
      row per agent, local or remote;
    * `local/0` (`:duplicate_bag`) - `{pattern, id, pid, slot, id_hash}`, one
      row per pattern of each local agent (`id_hash` is `:erlang.phash2(id)`);
    * `remote/0` (`:duplicate_bag`) - the same for agents on other nodes;
    * a small `:set` holding the Directory's counters (`counters/0`).

  `slot` indexes the agent's load in the Directory's `:atomics` (see
  `Jido.Distributed.Directory.Index`).
  """

  alias Jido.Distributed.Counters

  @agents :jido_distributed_directory_agents
  @local :jido_distributed_directory_local
  @remote :jido_distributed_directory_remote
  @meta :jido_distributed_directory_meta

  @counter_names [:malformed]

  @doc "Creates the tables in the calling process (the Directory's supervisor)."
  @spec create_tables() :: :ok
  def create_tables do
    :ets.new(@agents, [:named_table, :public, :ordered_set, read_concurrency: true])
    :ets.new(@local, [:named_table, :public, :duplicate_bag, read_concurrency: true])
    :ets.new(@remote, [:named_table, :public, :duplicate_bag, read_concurrency: true])
    :ets.new(@meta, [:named_table, :public, :set, read_concurrency: true])
    :ets.insert(@meta, {:counters, Counters.new(@counter_names, [:write_concurrency])})
    :ok
  end

  @doc "The table of agents, keyed by `{id, node}`."
  @spec agents() :: atom()
  def agents, do: @agents

  @doc "The table of local agents' patterns."
  @spec local() :: atom()
  def local, do: @local

  @doc "The table of remote agents' patterns."
  @spec remote() :: atom()
  def remote, do: @remote

  @doc "Bumps the Directory counter `name` by one (nothing when the tables are gone)."
  @spec count(atom()) :: :ok
  def count(name) do
    case counters() do
      nil -> :ok
      ref -> :counters.add(ref, Counters.index!(@counter_names, name), 1)
    end
  end

  @doc "The Directory's counters: `:malformed`, messages or parts of them refused by its wire."
  @spec counters() :: :counters.counters_ref() | nil
  def counters do
    :ets.lookup_element(@meta, :counters, 2)
  rescue
    ArgumentError -> nil
  end

  @doc "The counters as a map (all zero when the tables are gone)."
  @spec read_counters() :: %{atom() => non_neg_integer()}
  def read_counters, do: Counters.read(counters(), @counter_names)
end

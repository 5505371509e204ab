defmodule Jido.Distributed.Directory.Store do
  @moduledoc """
  Owns the ETS tables of `Jido.Distributed.Directory`, so that a Directory
  crash loses no local registration: the restarted Directory finds the local
  agents in the tables, monitors them again and asks its peers for fresh
  copies of theirs.

  The tables are public, named and read without a message:

    * `agents/0` (`:ordered_set`) - `{{id, node}, pid, patterns, slot}`, one
      row per agent, local or remote;
    * `local/0` (`:duplicate_bag`) - `{pattern, id, pid, slot, id_hash}`, one
      row per pattern of each local agent (`id_hash` is `:erlang.phash2(id)`);
    * `remote/0` (`:duplicate_bag`) - the same for agents on other nodes.

  `slot` indexes the agent's load in the Directory's `:atomics`.
  """
  use GenServer

  @agents :jido_distributed_directory_agents
  @local :jido_distributed_directory_local
  @remote :jido_distributed_directory_remote

  @doc "Starts the store (one per node, registered under the module name)."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The table of agents, keyed by `{id, node}`."
  @spec agents() :: atom()
  def agents, do: @agents

  @doc "The table of local agents' patterns."
  @spec local() :: atom()
  def local, do: @local

  @doc "The table of remote agents' patterns."
  @spec remote() :: atom()
  def remote, do: @remote

  @impl true
  def init(_opts) do
    :ets.new(@agents, [:named_table, :public, :ordered_set, read_concurrency: true])
    :ets.new(@local, [:named_table, :public, :duplicate_bag, read_concurrency: true])
    :ets.new(@remote, [:named_table, :public, :duplicate_bag, read_concurrency: true])
    {:ok, nil}
  end
end

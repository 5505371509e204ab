defmodule Jido.Distributed.Directory.Wire do
  @moduledoc """
  Every message the Directories of a cluster send each other, built and
  checked here and nowhere else.

    * **subscribe** - `{:"$jido_directory", :subscribe, from, ref}`: the
      Directory `from` asks for this node's agents; `ref` names the
      subscription (the monitor `from` holds on the receiver).
    * **snapshot** - `{:"$jido_directory", :snapshot, from, ref, labels,
      entries}`: the answer, every local agent as `{id, pid, patterns,
      load}` and the sender's location labels (`%{region:, zone:, rack:}`).
    * **delta** - `{:"$jido_directory", :delta, from, ops}`: changes since,
      in order: `{:put, id, pid, patterns, load}`, `{:del, id}`, `{:load,
      id, load}`.
    * **requests** - `GenServer.call/2` requests: `{:register, id, pid,
      patterns, load}` (another node sends it when it registers a pid of
      this node, `register/3` with `pid:`), `{:update_load, id, load}`,
      `{:unregister, id}` and `:peers`.

  All of them travel to the server registered as `name/0` on each node.
  Messages are sent with `:noconnect`: the Directory never sets up a
  connection by sending; `:pg` tells it when a node's Directory is there.

  Messages from other nodes are hostile input: `parse/1` and
  `parse_call/1` accept only the exact shapes, with every field checked. A
  snapshot or delta keeps its well-formed entries and drops the others
  (each dropped one is reported as `:bad_entry`), so that one bad agent
  does not hide a node's other agents.
  """

  alias Jido.Distributed.Routing.Pattern

  @tag :"$jido_directory"
  @scope :jido_distributed_directory
  @label_keys [:region, :zone, :rack]

  @typedoc "An agent as a snapshot carries it: `{id, pid, patterns, load}`."
  @type entry :: {term(), pid(), [String.t()], number()}

  @typedoc "One change of a delta."
  @type op ::
          {:put, term(), pid(), [String.t()], number()}
          | {:del, term()}
          | {:load, term(), number()}

  @typedoc "Location labels of a node."
  @type labels :: %{region: term(), zone: term(), rack: term()}

  @typedoc "A message from another Directory, checked."
  @type message ::
          {:subscribe, pid(), reference()}
          | {:snapshot, pid(), reference(), labels() | nil, [entry()]}
          | {:delta, pid(), [op()]}

  @typedoc "Why a message, or a part of one, was refused."
  @type garbage ::
          :bad_subscribe | :bad_snapshot | :bad_delta | :bad_entry | :bad_call | :unexpected

  @doc "The name each node's Directory server is registered under (the public module's)."
  @spec name() :: atom()
  def name, do: Jido.Distributed.Directory

  @doc "The `:pg` scope the Directories of the cluster meet in."
  @spec scope() :: atom()
  def scope, do: @scope

  @doc "The `:pg` group every Directory joins."
  @spec group() :: atom()
  def group, do: :directories

  @doc "Sends `message` to `pid` without setting up a connection."
  @spec send_to(pid(), tuple()) :: :ok
  def send_to(pid, message) do
    _ = :erlang.send(pid, message, [:noconnect])
    :ok
  end

  @doc """
  The subscription `from` sends.

      iex> alias Jido.Distributed.Directory.Wire
      iex> ref = make_ref()
      iex> Wire.parse(Wire.subscribe(self(), ref))
      {:error, :bad_subscribe}
  """
  @spec subscribe(pid(), reference()) :: tuple()
  def subscribe(from, ref) when is_pid(from) and is_reference(ref),
    do: {@tag, :subscribe, from, ref}

  @doc "The snapshot `from` answers a subscription `ref` with."
  @spec snapshot(pid(), reference(), map(), [entry()]) :: tuple()
  def snapshot(from, ref, labels, entries) when is_pid(from) and is_list(entries),
    do: {@tag, :snapshot, from, ref, labels, entries}

  @doc "A delta: `ops`, in order."
  @spec delta(pid(), [op()]) :: tuple()
  def delta(from, ops) when is_pid(from) and is_list(ops), do: {@tag, :delta, from, ops}

  @doc "The registration request sent to the Directory of `pid`'s node."
  @spec register(term(), pid(), [String.t()], number()) :: tuple()
  def register(id, pid, sources, load), do: {:register, id, pid, sources, load}

  @doc """
  Checks a message received by a Directory server: `{:ok, message,
  dropped}` (`dropped` counts the malformed entries or ops left out),
  `{:error, garbage}`, or `:other` for a message that is not a Directory
  message at all (the server's own monitors and `:pg` events).

  Only messages from another node's Directory are accepted: a subscription
  from this node is refused, as is an entry whose pid is not on the node
  of the Directory that sent it.

      iex> alias Jido.Distributed.Directory.Wire
      iex> Wire.parse({:"$jido_directory", :delta, self(), :nope})
      {:error, :bad_delta}
      iex> Wire.parse({:"$jido_directory", :what})
      {:error, :unexpected}
      iex> Wire.parse({:DOWN, make_ref(), :process, self(), :normal})
      :other
  """
  @spec parse(term()) :: {:ok, message(), non_neg_integer()} | {:error, garbage()} | :other
  def parse({@tag, :subscribe, from, ref})
      when is_pid(from) and node(from) != node() and is_reference(ref),
      do: {:ok, {:subscribe, from, ref}, 0}

  def parse({@tag, :snapshot, from, ref, labels, entries})
      when is_pid(from) and is_reference(ref) and is_list(entries) do
    {kept, dropped} = keep(entries, &entry(&1, node(from)))
    {:ok, {:snapshot, from, ref, labels(labels), kept}, dropped}
  end

  def parse({@tag, :delta, from, ops}) when is_pid(from) and is_list(ops) do
    {kept, dropped} = keep(ops, &op(&1, node(from)))
    {:ok, {:delta, from, kept}, dropped}
  end

  def parse({@tag, :subscribe, _from, _ref}), do: {:error, :bad_subscribe}
  def parse({@tag, :snapshot, _from, _ref, _labels, _entries}), do: {:error, :bad_snapshot}
  def parse({@tag, :delta, _from, _ops}), do: {:error, :bad_delta}

  def parse(message) when is_tuple(message) and elem(message, 0) == @tag,
    do: {:error, :unexpected}

  def parse(_message), do: :other

  @doc "The load update request for the local agent `id`."
  @spec update_load(term(), number()) :: tuple()
  def update_load(id, load), do: {:update_load, id, load}

  @doc "The request removing the local agent `id`."
  @spec unregister(term()) :: tuple()
  def unregister(id), do: {:unregister, id}

  @doc "The request for the nodes whose agents the replica holds."
  @spec peers() :: :peers
  def peers, do: :peers

  @doc """
  Checks a request to the Directory server (any node may send one):
  `{:ok, request}`, `{:error, {:not_local, pid}}` for a registration of a
  pid of another node, or `{:error, :bad_call}`. A registration must carry
  a pid of this node, valid patterns and a load; a load update a load.

      iex> alias Jido.Distributed.Directory.Wire
      iex> Wire.parse_call(Wire.register("a", self(), ["x.*"], 1))
      {:ok, {:register, {"a", self(), ["x.*"], 1}}}
      iex> Wire.parse_call({:register, "a", self(), ["x..y"], 1})
      {:error, :bad_call}
      iex> Wire.parse_call(Wire.update_load("a", -1))
      {:error, :bad_call}
      iex> Wire.parse_call(Wire.peers())
      {:ok, :peers}
  """
  @spec parse_call(term()) ::
          {:ok,
           {:register, entry()}
           | {:update_load, term(), number()}
           | {:unregister, term()}
           | :peers}
          | {:error, {:not_local, pid()} | :bad_call}
  def parse_call({:register, _id, pid, _sources, _load}) when is_pid(pid) and node(pid) != node(),
    do: {:error, {:not_local, pid}}

  def parse_call({:register, id, pid, sources, load}) do
    case entry({id, pid, sources, load}, node()) do
      {:ok, {_id, _pid, ^sources, ^load} = entry} -> {:ok, {:register, entry}}
      _ -> {:error, :bad_call}
    end
  end

  def parse_call({:update_load, _id, load} = request),
    do: if(load?(load), do: {:ok, request}, else: {:error, :bad_call})

  def parse_call({:unregister, _id} = request), do: {:ok, request}
  def parse_call(:peers), do: {:ok, :peers}
  def parse_call(_request), do: {:error, :bad_call}

  @doc "True for a load: a non-negative number."
  @spec load?(term()) :: boolean()
  def load?(load), do: (is_integer(load) and load >= 0) or (is_float(load) and load >= 0)

  # -- checks ---------------------------------------------------------------------

  defp keep(items, check) do
    {kept, dropped} =
      Enum.reduce(items, {[], 0}, fn item, {kept, dropped} ->
        case check.(item) do
          {:ok, item} -> {[item | kept], dropped}
          :error -> {kept, dropped + 1}
        end
      end)

    {Enum.reverse(kept), dropped}
  end

  # A pid of the sending node and a list of patterns; a pattern that is not
  # valid is left out (the agent keeps its others), a bad load counts as 0.
  defp entry({id, pid, sources, load}, node)
       when is_pid(pid) and node(pid) == node and is_list(sources) do
    sources = for source <- sources, is_binary(source), Pattern.valid?(source), do: source
    {:ok, {id, pid, sources, if(load?(load), do: load, else: 0)}}
  end

  defp entry(_entry, _node), do: :error

  defp op({:put, id, pid, sources, load}, node) do
    case entry({id, pid, sources, load}, node) do
      {:ok, {id, pid, sources, load}} -> {:ok, {:put, id, pid, sources, load}}
      :error -> :error
    end
  end

  defp op({:del, _id} = op, _node), do: {:ok, op}
  defp op({:load, _id, load} = op, _node), do: if(load?(load), do: {:ok, op}, else: :error)
  defp op(_op, _node), do: :error

  defp labels(labels) when is_map(labels) do
    if Map.keys(labels) -- @label_keys == [],
      do: Map.merge(%{region: nil, zone: nil, rack: nil}, labels),
      else: nil
  end

  defp labels(_labels), do: nil
end

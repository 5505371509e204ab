defmodule Jido.Distributed.Broadcast.Wire do
  @moduledoc """
  The messages of tree broadcast that cross nodes: built here, and checked
  here before `Jido.Distributed.Broadcast.Server` uses them. Any node can send
  anything to a registered name, so every such message is hostile input:
  `check/2` and `check_start/2` look at the whole shape, bounded, and
  answer `:ok` or `{:error, reason}`; they never raise. Pure, except
  `send_to/2`.

  Both messages go to the destination node's broadcast process:

    * `{:jido_bcast, id, parent, frame, atoms, subtree, budget_ms}` - a
      broadcast for the node at the top of `subtree`: the broadcast `id`
      (`{root_node, instance, counter}`, see `t:id/0`), the `parent` node to
      report to, the `frame` bytes (checked by `Jido.Distributed.Frame` when
      decoded), the atoms the frame holds (a list of atoms, or `:same`), the
      node's subtree (`{node, [subtree]}`, node atoms only) and the
      milliseconds it has to report (a positive integer);
    * `{:jido_bcast_acks, node, acks}` - acks from the child `node`, a list
      of `{:got, id}` (receipt), `{:done, id, delivered, missing}` (report of
      a subtree: a count of nodes, and a list of nodes) and
      `{:retry, id, node}` (a node the child could not reach, for the parent
      to try, see `Jido.Distributed.TreeBroadcast`).

  A broadcast may also be started by a call or cast to the broadcast
  process, `{:start, id, signal, size, tree, timeout_ms, fanout}`; those
  arrive from other nodes as well and are checked by `check_start/2`.

  ## Bounds

  A tree holds at most 65,536 nodes and is at most 4,096 deep; an atom
  list holds at most 65,536 atoms; a report at most 65,536 missing nodes;
  an acks message at most 4,096 acks. Larger ones are refused.

      iex> alias Jido.Distributed.Broadcast.Wire
      iex> message = Wire.bcast({:r@h, 1, 2}, :p@h, "frame", [:type], {:me@h, [{:c@h, []}]}, 900)
      iex> Wire.check(message, :me@h)
      :ok
      iex> Wire.check(message, :other@h)
      {:error, :not_for_this_node}
      iex> Wire.check(Wire.bcast({:r@h, 1, 2}, :p@h, "frame", [:type], {:me@h, ["c@h"]}, 900), :me@h)
      {:error, :bad_subtree}
      iex> Wire.check(Wire.acks(:c@h, [Wire.got({:r@h, 1, 2}), Wire.retry({:r@h, 1, 2}, :d@h)]), :me@h)
      :ok
  """

  @max_nodes 65_536
  @max_depth 4_096
  @max_atoms 65_536
  @max_acks 4_096

  @typedoc "A broadcast id: the root node, its instance, a counter."
  @type id :: {node(), non_neg_integer(), pos_integer()}

  @typedoc "A tree: a node and its subtrees (see `Jido.Distributed.TreePlanner`)."
  @type tree :: {node(), [tree()]}

  @typedoc "An ack from a child to its parent."
  @type ack ::
          {:got, id()}
          | {:done, id(), non_neg_integer(), [node()]}
          | {:retry, id(), node()}

  @typedoc "A message between broadcast processes."
  @type message ::
          {:jido_bcast, id(), node(), binary(), [atom()] | :same, tree(), pos_integer()}
          | {:jido_bcast_acks, node(), [ack()]}

  @typedoc """
  Why a message was refused: the part of it that is wrong
  (`:bad_id`, `:bad_parent`, ...), `:not_for_this_node` for a broadcast
  whose subtree is another node's, `:unknown_message` for anything else.
  """
  @type reason ::
          :bad_id
          | :bad_parent
          | :bad_frame
          | :bad_atoms
          | :bad_subtree
          | :not_for_this_node
          | :bad_budget
          | :bad_sender
          | :bad_acks
          | :bad_ack
          | :bad_signal
          | :bad_size
          | :bad_tree
          | :bad_timeout
          | :bad_fanout
          | :unknown_message

  # --- building ---------------------------------------------------------------------

  @doc "A broadcast message for the node at the top of `subtree`."
  @spec bcast(id(), node(), binary(), [atom()] | :same, tree(), pos_integer()) :: message()
  def bcast(id, parent, frame, atoms, subtree, budget_ms),
    do: {:jido_bcast, id, parent, frame, atoms, subtree, budget_ms}

  @doc "An acks message from `node`, with `acks` in the order they were made."
  @spec acks(node(), [ack()]) :: message()
  def acks(node, acks), do: {:jido_bcast_acks, node, acks}

  @doc "A receipt of the broadcast `id`."
  @spec got(id()) :: ack()
  def got(id), do: {:got, id}

  @doc "A report of a subtree: `delivered` nodes, and the `missing` ones."
  @spec done(id(), non_neg_integer(), [node()]) :: ack()
  def done(id, delivered, missing), do: {:done, id, delivered, missing}

  @doc "A node the sender could not reach, for its parent to try."
  @spec retry(id(), node()) :: ack()
  def retry(id, node), do: {:retry, id, node}

  # --- sending ----------------------------------------------------------------------

  @doc """
  The name every node's broadcast process is registered under (the
  public module's name, so that nodes of any version find it).
  """
  @spec name() :: atom()
  def name, do: Jido.Distributed.TreeBroadcast

  @doc """
  The start of a broadcast rooted at this node, sent by the caller to its
  own broadcast process (see `check_start/2`).
  """
  @spec start(id(), map(), non_neg_integer(), tree(), pos_integer(), pos_integer()) ::
          {:start, id(), map(), non_neg_integer(), tree(), pos_integer(), pos_integer()}
  def start(id, signal, size, tree, timeout_ms, fanout),
    do: {:start, id, signal, size, tree, timeout_ms, fanout}

  @doc """
  Sends `message` to the broadcast process of `node`, without trying to
  connect. Returns `:noconnect` when `node` is not connected, also for a
  destination that is not a node name at all (it never raises).
  """
  @spec send_to(node(), term()) :: :ok | :noconnect
  def send_to(node, message) when is_atom(node) do
    :erlang.send({name(), node}, message, [:noconnect])
  rescue
    ArgumentError -> :noconnect
  end

  def send_to(_node, _message), do: :noconnect

  # --- checking ---------------------------------------------------------------------

  @doc """
  Checks a message that arrived at node `me`: `:ok` if it is a broadcast for
  `me` or an acks message, each with every part of the expected shape and
  within bounds; otherwise `{:error, reason}`.

      iex> alias Jido.Distributed.Broadcast.Wire
      iex> Wire.check(Wire.acks(:c@h, [{:done, {:r@h, 0, 1}, -1, []}]), :me@h)
      {:error, :bad_ack}
      iex> Wire.check({:hello, :there}, :me@h)
      {:error, :unknown_message}
  """
  @spec check(term(), node()) :: :ok | {:error, reason()}
  def check({:jido_bcast, id, parent, frame, atoms, subtree, budget}, me) do
    cond do
      not id?(id) -> {:error, :bad_id}
      not is_atom(parent) -> {:error, :bad_parent}
      not is_binary(frame) -> {:error, :bad_frame}
      not atoms?(atoms) -> {:error, :bad_atoms}
      not tree?(subtree) -> {:error, :bad_subtree}
      elem(subtree, 0) != me -> {:error, :not_for_this_node}
      not (is_integer(budget) and budget > 0) -> {:error, :bad_budget}
      true -> :ok
    end
  end

  def check({:jido_bcast_acks, node, acks}, _me) do
    cond do
      not is_atom(node) -> {:error, :bad_sender}
      not is_list(acks) -> {:error, :bad_acks}
      true -> check_acks(acks, @max_acks)
    end
  end

  def check(_message, _me), do: {:error, :unknown_message}

  @doc """
  Checks the start of a broadcast rooted at `me`,
  `{:start, id, signal, size, tree, timeout_ms, fanout}`: `:ok` or
  `{:error, reason}`.
  """
  @spec check_start(term(), node()) :: :ok | {:error, reason()}
  def check_start({:start, id, signal, size, tree, timeout, fanout}, me) do
    cond do
      not id?(id) -> {:error, :bad_id}
      not match?(%{id: _, type: _}, signal) -> {:error, :bad_signal}
      not (is_integer(size) and size >= 0) -> {:error, :bad_size}
      not (tree?(tree) and elem(tree, 0) == me) -> {:error, :bad_tree}
      not (is_integer(timeout) and timeout > 0) -> {:error, :bad_timeout}
      not (is_integer(fanout) and fanout > 0) -> {:error, :bad_fanout}
      true -> :ok
    end
  end

  def check_start(_start, _me), do: {:error, :unknown_message}

  @doc """
  True for a tree of node atoms, `{node, [subtree]}`, within the bounds
  (see "Bounds").

      iex> alias Jido.Distributed.Broadcast.Wire
      iex> Wire.tree?({:a@h, [{:b@h, []}, {:c@h, [{:d@h, []}]}]})
      true
      iex> Wire.tree?({:a@h, [{:b@h, []} | :c@h]})
      false
  """
  @spec tree?(term()) :: boolean()
  def tree?(tree), do: tree(tree, 1, @max_nodes) != :error

  @doc "True for a broadcast id, `{root_node, instance, counter}`."
  @spec id?(term()) :: boolean()
  def id?({root, instance, counter})
      when is_atom(root) and is_integer(instance) and instance >= 0 and is_integer(counter) and
             counter > 0,
      do: true

  def id?(_), do: false

  # Returns how many more nodes may follow, or :error. Depth is checked
  # before descending, so recursion is bounded too.
  defp tree({node, children}, depth, left)
       when is_atom(node) and depth <= @max_depth and left > 0,
       do: subtrees(children, depth + 1, left - 1)

  defp tree(_tree, _depth, _left), do: :error

  defp subtrees([], _depth, left), do: left

  defp subtrees([tree | rest], depth, left) do
    case tree(tree, depth, left) do
      :error -> :error
      left -> subtrees(rest, depth, left)
    end
  end

  defp subtrees(_improper, _depth, _left), do: :error

  defp atoms?(:same), do: true
  defp atoms?(atoms), do: atoms(atoms, @max_atoms)

  defp atoms([], _left), do: true
  defp atoms([atom | rest], left) when is_atom(atom) and left > 0, do: atoms(rest, left - 1)
  defp atoms(_other, _left), do: false

  defp check_acks([], _left), do: :ok

  defp check_acks([ack | rest], left) when left > 0 do
    if ack?(ack), do: check_acks(rest, left - 1), else: {:error, :bad_ack}
  end

  defp check_acks(_other, _left), do: {:error, :bad_acks}

  defp ack?({:got, id}), do: id?(id)

  defp ack?({:done, id, delivered, missing})
       when is_integer(delivered) and delivered >= 0 and delivered <= @max_nodes,
       do: id?(id) and nodes?(missing, @max_nodes)

  defp ack?({:retry, id, node}) when is_atom(node), do: id?(id)
  defp ack?(_ack), do: false

  defp nodes?([], _left), do: true
  defp nodes?([node | rest], left) when is_atom(node) and left > 0, do: nodes?(rest, left - 1)
  defp nodes?(_other, _left), do: false
end

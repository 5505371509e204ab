defmodule Jido.Distributed.Optimizer do
  @moduledoc """
  Pure planning of deliveries: which signals stay local, which go to which
  node, and how remote ones are chunked by network cost. No processes, no
  encoding.
  """

  alias Jido.Distributed.Routing.Location

  @typedoc "Where a signal goes: a pid, or a registered name on a node."
  @type target :: pid() | {atom(), node()} | atom()

  @typedoc "A signal with its target."
  @type entry :: {target(), term()}

  @typedoc "A routing group: local entries, or entries bound for one remote node."
  @type group :: {:local, [entry()]} | {:remote, node(), [entry()]}

  @doc """
  Groups entries by destination node. Local entries come first (they are
  never encoded), then one group per remote node in first-seen order; each
  group keeps the entries' order.

      iex> a = {:svc, :"a@host"}
      iex> b = {:svc, :"b@host"}
      iex> Jido.Distributed.Optimizer.optimize_routing([{a, 1}, {:local_name, 2}, {b, 3}, {a, 4}])
      [{:local, [{:local_name, 2}]}, {:remote, :"a@host", [{a, 1}, {a, 4}]}, {:remote, :"b@host", [{b, 3}]}]
  """
  @spec optimize_routing([entry()]) :: [group()]
  def optimize_routing(entries) when is_list(entries) do
    self_node = node()

    {order, groups} =
      Enum.reduce(entries, {[], %{}}, fn {target, _} = entry, {order, groups} ->
        dest = target_node(target)
        key = if dest == self_node, do: :local, else: dest

        case groups do
          %{^key => list} -> {order, %{groups | key => [entry | list]}}
          _ -> {[key | order], Map.put(groups, key, [entry])}
        end
      end)

    local = if Map.has_key?(groups, :local), do: [{:local, Enum.reverse(groups.local)}], else: []

    remote =
      for key <- Enum.reverse(order), key != :local do
        {:remote, key, Enum.reverse(Map.fetch!(groups, key))}
      end

    local ++ remote
  end

  @doc """
  Groups remote groups by distance class and chunks each node's entries with
  its class's batch size. Returns `{class, node, batches}` tuples, nearest
  class first.

  ## Options

    * `:class_of` - function from node to distance class; defaults to
      `Jido.Distributed.Routing.Location.class_of/1`.
    * `:batch_sizes` - keyword list class => batch size; defaults to the
      `:batch_sizes` setting.

        iex> groups = [{:remote, :"far@h", [{{:x, :"far@h"}, 1}, {{:x, :"far@h"}, 2}, {{:x, :"far@h"}, 3}]},
        ...>           {:remote, :"near@h", [{{:x, :"near@h"}, 4}]}]
        iex> classes = %{"far@h": :remote, "near@h": :same_zone}
        iex> Jido.Distributed.Optimizer.batch_by_network_cost(groups,
        ...>   class_of: &Map.fetch!(classes, &1), batch_sizes: [same_zone: 1, remote: 2])
        [{:same_zone, :"near@h", [[{{:x, :"near@h"}, 4}]]},
         {:remote, :"far@h", [[{{:x, :"far@h"}, 1}, {{:x, :"far@h"}, 2}], [{{:x, :"far@h"}, 3}]]}]
  """
  @spec batch_by_network_cost([group()], keyword()) :: [{Location.class(), node(), [[entry()]]}]
  def batch_by_network_cost(groups, opts \\ []) when is_list(groups) do
    class_of = Keyword.get(opts, :class_of, &Location.class_of/1)

    sizes =
      Keyword.get_lazy(opts, :batch_sizes, fn -> Jido.Distributed.Options.get(:batch_sizes) end)

    groups
    |> Enum.flat_map(fn
      {:remote, node, entries} -> [{class_of.(node), node, entries}]
      {:local, _} -> []
    end)
    |> Enum.map(fn {class, node, entries} ->
      {class, node, Enum.chunk_every(entries, batch_size(class, sizes))}
    end)
    |> Enum.sort_by(fn {class, _, _} -> class_rank(class) end)
  end

  @doc """
  The batch size for a distance class.

      iex> Jido.Distributed.Optimizer.batch_size(:remote, remote: 300)
      300
  """
  @spec batch_size(Location.class(), keyword()) :: pos_integer()
  def batch_size(class, sizes) do
    Keyword.get(sizes, class) || Keyword.get(sizes, :remote) ||
      Jido.Distributed.Options.get(:link)[:batch_size]
  end

  @doc """
  The node a target lives on.

      iex> Jido.Distributed.Optimizer.target_node({:name, :"n@h"})
      :"n@h"
      iex> Jido.Distributed.Optimizer.target_node(self()) == node()
      true
  """
  @spec target_node(target()) :: node()
  def target_node(pid) when is_pid(pid), do: node(pid)
  def target_node({name, node}) when is_atom(name) and is_atom(node), do: node
  def target_node(name) when is_atom(name), do: node()

  defp class_rank(class), do: Enum.find_index(Location.classes(), &(&1 == class)) || 99
end

defmodule Jido.Distributed.Routing.Location do
  @moduledoc """
  Location labels of nodes (region, zone, rack) and the network distance
  class between two nodes.

  The local node's labels come from `config :jido_distributed, location: [...]`.
  A remote node's labels are asked once, over `:erpc`, and cached.

  Distance classes, nearest first: `:local` (same node), `:same_zone`,
  `:same_region`, `:remote` (other region, or labels unknown).
  """

  @typedoc "Location labels of one node; `nil` where unknown."
  @type t :: %{region: term(), zone: term(), rack: term()}

  @typedoc "How far apart two nodes are, nearest first."
  @type class :: :local | :same_zone | :same_region | :remote

  @classes [:local, :same_zone, :same_region, :remote]
  @table :jido_distributed_locations
  @unknown %{region: nil, zone: nil, rack: nil}

  @doc "All classes, nearest first."
  @spec classes() :: [class()]
  def classes, do: @classes

  @doc "The local node's labels."
  @spec local() :: t()
  def local, do: Map.new(Jido.Distributed.Options.get(:location))

  @doc """
  The labels of `node`: the local ones for `node()`, otherwise asked of the
  node once and cached. Unknown labels (node unreachable, or not running
  this library) are `nil` and are not cached.
  """
  @spec of(node()) :: t()
  def of(node) when node == node(), do: local()

  def of(node) when is_atom(node) do
    case lookup(node) do
      {:ok, location} ->
        location

      :error ->
        case fetch(node) do
          {:ok, location} ->
            put(node, location)
            location

          :error ->
            @unknown
        end
    end
  end

  @doc "Forgets the cached labels of `node` (for example when it goes down)."
  @spec forget(node()) :: :ok
  def forget(node) do
    if :ets.whereis(@table) != :undefined, do: :ets.delete(@table, node)
    :ok
  end

  @doc """
  The distance class between two locations.

      iex> alias Jido.Distributed.Routing.Location
      iex> Location.class(%{region: "eu", zone: "a", rack: nil}, %{region: "eu", zone: "a", rack: nil})
      :same_zone
      iex> Location.class(%{region: "eu", zone: "a", rack: nil}, %{region: "eu", zone: "b", rack: nil})
      :same_region
      iex> Location.class(%{region: "eu", zone: "a", rack: nil}, %{region: "us", zone: "a", rack: nil})
      :remote
      iex> Location.class(%{region: nil, zone: nil, rack: nil}, %{region: nil, zone: nil, rack: nil})
      :remote
  """
  @spec class(t(), t()) :: class()
  def class(%{region: r, zone: z}, %{region: r, zone: z}) when r != nil and z != nil,
    do: :same_zone

  def class(%{region: r}, %{region: r}) when r != nil, do: :same_region
  def class(_, _), do: :remote

  @doc "The distance class from this node to `node`."
  @spec class_of(node()) :: class()
  def class_of(node) when node == node(), do: :local
  def class_of(node), do: class(local(), of(node))

  @doc false
  @spec table() :: atom()
  def table, do: @table

  defp lookup(node) do
    if :ets.whereis(@table) != :undefined do
      case :ets.lookup(@table, node) do
        [{^node, location}] -> {:ok, location}
        [] -> :error
      end
    else
      :error
    end
  end

  @doc """
  Caches the labels of `node` learned another way (the Directory receives
  them with each node's agents), so `of/1` need not ask the node.
  """
  @spec put(node(), t()) :: :ok
  def put(node, location) when is_atom(node) and is_map(location) do
    if :ets.whereis(@table) != :undefined, do: :ets.insert(@table, {node, location})
    :ok
  end

  defp fetch(node) do
    {:ok, :erpc.call(node, __MODULE__, :local, [], 2_000)}
  catch
    _, _ -> :error
  end
end

defmodule Jido.Distributed.Counters do
  @moduledoc """
  Named `:counters` arrays: a module lists its counter names once, and each
  name's index in the array is its position in that list, from 1.

      iex> alias Jido.Distributed.Counters
      iex> names = [:sent, :dropped]
      iex> ref = Counters.new(names)
      iex> :counters.add(ref, Counters.index!(names, :dropped), 2)
      iex> Counters.read(ref, names)
      %{sent: 0, dropped: 2}
      iex> Counters.read(nil, names)
      %{sent: 0, dropped: 0}
  """

  @doc "A `:counters` array with one counter per name; `opts` as for `:counters.new/2`."
  @spec new([atom()], [:atomics | :write_concurrency]) :: :counters.counters_ref()
  def new(names, opts \\ []) when is_list(names), do: :counters.new(length(names), opts)

  @doc """
  The index of `name` in `names`. Meant for compile time (a macro, or
  generated function clauses), so that a hot path bumps a literal index.
  Raises `ArgumentError` for a name not in the list.
  """
  @spec index!([atom()], atom()) :: pos_integer()
  def index!(names, name) do
    case Enum.find_index(names, &(&1 == name)) do
      nil -> raise ArgumentError, "unknown counter #{inspect(name)}, known: #{inspect(names)}"
      index -> index + 1
    end
  end

  @doc "Every counter of `names` in `ref`, as a map; all zero for `nil` (no array yet)."
  @spec read(:counters.counters_ref() | nil, [atom()]) :: %{atom() => non_neg_integer()}
  def read(nil, names), do: Map.new(names, &{&1, 0})

  def read(ref, names) do
    names
    |> Enum.with_index(1)
    |> Map.new(fn {name, index} -> {name, :counters.get(ref, index)} end)
  end
end

defmodule Jido.Distributed.Broadcast.Atoms do
  @moduledoc """
  The atom lists that travel with broadcast frames, remembered per node so
  a repeat is sent as `:same`. Pure data.

  A frame is sent with the list of atoms it holds, so the receiving node's
  distribution layer creates them before the safe decode. Most signals of
  a stream have the same atoms, and each atom in a message costs encoding:
  a parent sends `:same` for the list it last sent that child, and the
  child remembers the list its parent last sent. Both sides forget a node
  when it goes down or comes up (`forget/2`), and a parent forgets a child
  it could not send to (`unsent/2`).

      iex> alias Jido.Distributed.Broadcast.Atoms
      iex> {[:a], a} = Atoms.to_child(Atoms.new(), :c@h, [:a])
      iex> {:same, _} = Atoms.to_child(a, :c@h, [:a])
      iex> {[:a], from} = Atoms.from_parent(Atoms.new(), :p@h, [:a])
      iex> Atoms.from_parent(from, :p@h, :same) |> elem(0)
      [:a]
  """

  defstruct sent: %{}, from: %{}

  @typedoc "`sent`: child => the list last sent to it; `from`: parent => the list last received."
  @type t :: %__MODULE__{sent: %{node() => [atom()]}, from: %{node() => [atom()]}}

  @doc "Nothing remembered."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc "What to send `child` for `atoms`: the list, or `:same` if it was sent the same last."
  @spec to_child(t(), node(), [atom()]) :: {[atom()] | :same, t()}
  def to_child(%__MODULE__{sent: sent} = a, child, atoms) do
    case sent do
      %{^child => ^atoms} -> {:same, a}
      _ -> {atoms, %{a | sent: Map.put(sent, child, atoms)}}
    end
  end

  @doc "Forgets the list sent to `child`, which did not get it."
  @spec unsent(t(), node()) :: t()
  def unsent(%__MODULE__{sent: sent} = a, child), do: %{a | sent: Map.delete(sent, child)}

  @doc """
  The list a frame from `parent` holds, given what came with it (a list, or
  `:same`); `nil` for `:same` from a parent of which no list is remembered
  (this process restarted).
  """
  @spec from_parent(t(), node(), [atom()] | :same) :: {[atom()] | nil, t()}
  def from_parent(%__MODULE__{from: from} = a, parent, :same), do: {Map.get(from, parent), a}

  def from_parent(%__MODULE__{from: from} = a, parent, atoms) do
    case from do
      %{^parent => ^atoms} -> {atoms, a}
      _ -> {atoms, %{a | from: Map.put(from, parent, atoms)}}
    end
  end

  @doc "Forgets both directions of `node`."
  @spec forget(t(), node()) :: t()
  def forget(%__MODULE__{} = a, node),
    do: %{a | sent: Map.delete(a.sent, node), from: Map.delete(a.from, node)}
end

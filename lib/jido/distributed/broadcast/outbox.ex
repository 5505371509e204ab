defmodule Jido.Distributed.Broadcast.Outbox do
  @moduledoc """
  The acks a node owes its parents, queued per parent so they travel in
  batches (`Jido.Distributed.Broadcast.Wire.acks/2`). Pure data;
  `Jido.Distributed.Broadcast.Server` sends what `take/2` returns.

  A parent's queue goes out when the server has nothing else to do, when it
  holds `max_acks/0` acks (`put/4` says so), or when its oldest ack has
  waited `linger_ms/0` (`due?/2`). A report (`{:done, id, ...}`) supersedes
  a receipt (`{:got, id}`) of the same broadcast still queued for the same
  parent: the receipt is dropped.

      iex> alias Jido.Distributed.Broadcast.Outbox
      iex> {o, false} = Outbox.put(Outbox.new(), :p@h, {:got, :b}, 0)
      iex> {o, false} = Outbox.put(o, :p@h, {:done, :b, 1, []}, 1)
      iex> {acks, o} = Outbox.take(o, :p@h)
      iex> {acks, Outbox.empty?(o)}
      {[{:done, :b, 1, []}], true}
  """

  @max_acks 64
  @linger_ms 5

  defstruct queues: %{}, since: nil

  @typedoc """
  The queues: `parent => {count, acks newest first}`, and `since`, when the
  oldest queued ack was queued (nil when there is none).
  """
  @type t :: %__MODULE__{
          queues: %{term() => {pos_integer(), [term()]}},
          since: integer() | nil
        }

  @doc "An empty outbox."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc "Most acks queued for one parent before they must go."
  @spec max_acks() :: pos_integer()
  def max_acks, do: @max_acks

  @doc "Most milliseconds an ack waits while the server stays busy."
  @spec linger_ms() :: pos_integer()
  def linger_ms, do: @linger_ms

  @doc """
  Queues `ack` for `parent` at `now` (milliseconds). Returns the outbox and
  whether the parent's queue is full (`take/2` it now).

      iex> alias Jido.Distributed.Broadcast.Outbox
      iex> o = Enum.reduce(1..63, Outbox.new(), fn i, o -> elem(Outbox.put(o, :p, {:got, i}, 0), 0) end)
      iex> {_o, full?} = Outbox.put(o, :p, {:got, 64}, 0)
      iex> full?
      true
  """
  @spec put(t(), term(), term(), integer()) :: {t(), boolean()}
  def put(%__MODULE__{queues: queues} = o, parent, ack, now) do
    {n, acks} =
      case {queues, ack} do
        {%{^parent => {n, acks}}, {:done, id, _, _}} ->
          if {:got, id} in acks, do: {n - 1, List.delete(acks, {:got, id})}, else: {n, acks}

        {%{^parent => queued}, _} ->
          queued

        _ ->
          {0, []}
      end

    o = %{o | queues: Map.put(queues, parent, {n + 1, [ack | acks]}), since: o.since || now}
    {o, n + 1 >= @max_acks}
  end

  @doc "Takes `parent`'s queued acks, oldest first (`nil` when there are none)."
  @spec take(t(), term()) :: {[term()] | nil, t()}
  def take(%__MODULE__{queues: queues} = o, parent) do
    case Map.pop(queues, parent) do
      {nil, _} ->
        {nil, o}

      {{_n, acks}, queues} ->
        {Enum.reverse(acks),
         %{o | queues: queues, since: if(queues == %{}, do: nil, else: o.since)}}
    end
  end

  @doc "The parents with queued acks."
  @spec parents(t()) :: [term()]
  def parents(%__MODULE__{queues: queues}), do: Map.keys(queues)

  @doc "True when nothing is queued."
  @spec empty?(t()) :: boolean()
  def empty?(%__MODULE__{queues: queues}), do: queues == %{}

  @doc """
  True when the oldest queued ack has waited `linger_ms/0` at `now`.

      iex> alias Jido.Distributed.Broadcast.Outbox
      iex> {o, _} = Outbox.put(Outbox.new(), :p, {:got, 1}, 10)
      iex> {Outbox.due?(o, 14), Outbox.due?(o, 15), Outbox.due?(Outbox.new(), 99)}
      {false, true, false}
  """
  @spec due?(t(), integer()) :: boolean()
  def due?(%__MODULE__{since: nil}, _now), do: false
  def due?(%__MODULE__{since: since}, now), do: now - since >= @linger_ms
end

defmodule Jido.Distributed.Broadcast.Recent do
  @moduledoc """
  A bounded memory of recent broadcast ids, each with a value (its outcome
  on this node), bounded both by count and by age. Pure data.

  Ids are forgotten oldest first: when there are more than `max_size`, or
  when the oldest is older than `ttl_ms`. Updating an id's value keeps its
  age. Ids remembered together by `put_all/4` are forgotten together.
  Pruning by age happens on `put/4`, `put_all/4` and `prune/2`, so a node
  that stops receiving broadcasts keeps its last ids until the next call
  to one of them.

      iex> alias Jido.Distributed.Broadcast.Recent
      iex> r = Recent.new(2, 1_000)
      iex> r = r |> Recent.put(:a, 1, 0) |> Recent.put(:b, 2, 10) |> Recent.put(:c, 3, 20)
      iex> {Recent.get(r, :a), Recent.get(r, :c), Recent.size(r)}
      {nil, 3, 2}
      iex> r |> Recent.prune(1_015) |> Recent.size()
      1
  """

  @enforce_keys [:max_size, :ttl_ms]
  defstruct [:max_size, :ttl_ms, values: %{}, order: :queue.new()]

  @opaque t :: %__MODULE__{
            max_size: pos_integer(),
            ttl_ms: pos_integer(),
            values: map(),
            order: :queue.queue({integer(), [term()]})
          }

  @doc "An empty memory of at most `max_size` ids, each kept at most `ttl_ms`."
  @spec new(pos_integer(), pos_integer()) :: t()
  def new(max_size, ttl_ms)
      when is_integer(max_size) and max_size > 0 and is_integer(ttl_ms) and ttl_ms > 0,
      do: %__MODULE__{max_size: max_size, ttl_ms: ttl_ms}

  @doc "The value of `id`, or `nil` if it is not remembered."
  @spec get(t(), term()) :: term()
  def get(%__MODULE__{values: values}, id), do: Map.get(values, id)

  @doc "True if `id` is remembered."
  @spec member?(t(), term()) :: boolean()
  def member?(%__MODULE__{values: values}, id), do: Map.has_key?(values, id)

  @doc """
  Remembers `id` with `value` at time `now_ms` (any monotonic clock in
  milliseconds), then forgets what is too old or too many. An id already
  remembered gets the new value and keeps its age.
  """
  @spec put(t(), term(), term(), integer()) :: t()
  def put(%__MODULE__{values: values} = r, id, value, now_ms) do
    if Map.has_key?(values, id) do
      %{r | values: Map.put(values, id, value)}
    else
      prune(
        %{r | values: Map.put(values, id, value), order: :queue.in({now_ms, [id]}, r.order)},
        now_ms
      )
    end
  end

  @doc """
  Remembers every id of `ids` with the same `value` at `now_ms`, as
  `put/4` does for each, in one step: those not remembered yet are
  forgotten together, when the oldest of them would be.

      iex> alias Jido.Distributed.Broadcast.Recent
      iex> r = Recent.new(3, 1_000) |> Recent.put(:a, 1, 0) |> Recent.put_all([:b, :c], 2, 5)
      iex> {Recent.get(r, :a), Recent.get(r, :c)}
      {1, 2}
      iex> r = Recent.put(r, :d, 3, 6)
      iex> {Recent.get(r, :a), Recent.size(r)}
      {nil, 3}
      iex> r |> Recent.put(:e, 4, 7) |> Recent.size()
      2
  """
  @spec put_all(t(), [term()], term(), integer()) :: t()
  def put_all(%__MODULE__{values: values} = r, ids, value, now_ms) when is_list(ids) do
    {values, new} =
      Enum.reduce(ids, {values, []}, fn id, {values, new} ->
        new = if Map.has_key?(values, id), do: new, else: [id | new]
        {Map.put(values, id, value), new}
      end)

    order = if new == [], do: r.order, else: :queue.in({now_ms, new}, r.order)
    prune(%{r | values: values, order: order}, now_ms)
  end

  @doc "Forgets ids older than the time-to-live at `now_ms`, and any beyond the size bound."
  @spec prune(t(), integer()) :: t()
  def prune(%__MODULE__{} = r, now_ms) do
    case :queue.peek(r.order) do
      {:value, {at, ids}} when map_size(r.values) > r.max_size or now_ms - at > r.ttl_ms ->
        prune(%{r | values: Map.drop(r.values, ids), order: :queue.drop(r.order)}, now_ms)

      _ ->
        r
    end
  end

  @doc "How many ids are remembered."
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{values: values}), do: map_size(values)
end

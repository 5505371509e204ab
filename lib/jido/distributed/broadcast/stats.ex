defmodule Jido.Distributed.Broadcast.Stats do
  @moduledoc """
  The broadcast counters (`Jido.Distributed.TreeBroadcast.stats/0` lists
  what each counts), in one `:counters` array per broadcast process.
  `count/3` bumps one by a literal index, as it is on every broadcast's
  path.
  """

  alias Jido.Distributed.Counters

  @names [
    :started,
    :batches,
    :received,
    :duplicates,
    :delivered,
    :forwarded,
    :adopted,
    :failed_children,
    :handed_up,
    :retried,
    :acks_sent,
    :ack_messages,
    :malformed
  ]

  @doc "A new array of the counters, all zero."
  @spec new() :: :counters.counters_ref()
  def new, do: Counters.new(@names)

  @doc "The counters as a map."
  @spec read(:counters.counters_ref()) :: %{atom() => non_neg_integer()}
  def read(counters), do: Counters.read(counters, @names)

  @doc "Bumps the counter `name` (a literal atom) of `counters` by `n`."
  defmacro count(counters, name, n \\ 1) do
    index = Counters.index!(@names, name)
    quote do: :counters.add(unquote(counters), unquote(index), unquote(n))
  end

  @doc "Bumps the counter `name`, known only at run time, by `n`."
  @spec add(:counters.counters_ref(), atom(), integer()) :: :ok
  def add(counters, name, n), do: :counters.add(counters, Counters.index!(@names, name), n)
end

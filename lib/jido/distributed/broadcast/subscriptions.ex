defmodule Jido.Distributed.Broadcast.Subscriptions do
  @moduledoc """
  A node's broadcast subscribers: who gets which signal types, and the
  delivery of signals to them. Used by `Jido.Distributed.Broadcast.Server`,
  the only process that changes them.

  Every subscription, `{pid, pattern, format}`, is mirrored into an ETS
  table owned by `Jido.Distributed.Broadcast.Supervisor`, so a restarted
  server picks them up again (`load/1`). Subscribers are monitored by the
  calling process; `down/3` removes one that exited. The subscribers of
  each signal type are looked up once (`Jido.Distributed.Routing.CapabilityIndex`)
  and kept until subscriptions change, for at most 1,024 types.
  """

  require Logger

  alias Jido.Distributed.Message
  alias Jido.Distributed.Routing.CapabilityIndex

  @max_routes 1_024

  @enforce_keys [:table, :index]
  defstruct [:table, :index, subscribers: %{}, routes: %{}]

  @typedoc """
  `:table` - the ETS mirror; `:index` - patterns to `{pid, format}`;
  `:subscribers` - `pid => {monitor ref, MapSet of {pattern, format}}`;
  `:routes` - `type => [{pid, format}]`, the cached lookups.
  """
  @type t :: %__MODULE__{
          table: :ets.table(),
          index: CapabilityIndex.t(),
          subscribers: %{pid() => {reference(), MapSet.t()}},
          routes: %{String.t() => [{pid(), Message.format()}]}
        }

  @doc """
  The subscriptions stored in `table` (from before a restart), each
  subscriber monitored by the caller; one that died meanwhile is removed
  when its monitor fires.
  """
  @spec load(:ets.table()) :: t()
  def load(table) do
    rows = :ets.tab2list(table)

    subscribers =
      rows
      |> Enum.group_by(&elem(&1, 0), &{elem(&1, 1), elem(&1, 2)})
      |> Map.new(fn {pid, entries} -> {pid, {Process.monitor(pid), MapSet.new(entries)}} end)

    index = CapabilityIndex.new(for {pid, pattern, format} <- rows, do: {pattern, {pid, format}})
    %__MODULE__{table: table, index: index, subscribers: subscribers}
  end

  @doc "Subscribes `pid` to `pattern` (a compiled pattern's source) with `format`."
  @spec subscribe(t(), pid(), String.t(), Message.format()) :: t()
  def subscribe(%__MODULE__{} = s, pid, pattern, format) do
    {ref, entries} =
      case s.subscribers do
        %{^pid => existing} -> existing
        _ -> {Process.monitor(pid), MapSet.new()}
      end

    :ets.insert(s.table, {pid, pattern, format})

    %{
      s
      | index: CapabilityIndex.put(s.index, pattern, {pid, format}),
        routes: %{},
        subscribers: Map.put(s.subscribers, pid, {ref, MapSet.put(entries, {pattern, format})})
    }
  end

  @doc "Removes `pid`'s subscriptions to `pattern`, whatever their formats."
  @spec unsubscribe(t(), pid(), String.t()) :: t()
  def unsubscribe(%__MODULE__{} = s, pid, pattern) do
    case s.subscribers do
      %{^pid => {ref, entries}} ->
        {gone, kept} = Enum.split_with(entries, &match?({^pattern, _}, &1))
        :ets.match_delete(s.table, {pid, pattern, :_})

        index =
          Enum.reduce(gone, s.index, fn {pattern, format}, index ->
            CapabilityIndex.delete(index, pattern, {pid, format})
          end)

        subscribers =
          if kept == [] do
            Process.demonitor(ref, [:flush])
            Map.delete(s.subscribers, pid)
          else
            Map.put(s.subscribers, pid, {ref, MapSet.new(kept)})
          end

        %{s | index: index, routes: %{}, subscribers: subscribers}

      _ ->
        s
    end
  end

  @doc """
  Removes every subscription of `pid` if `ref` is its monitor (it exited);
  `:error` for a monitor that is not a subscriber's.
  """
  @spec down(t(), reference(), pid()) :: {:ok, t()} | :error
  def down(%__MODULE__{} = s, ref, pid) do
    case s.subscribers do
      %{^pid => {^ref, entries}} ->
        :ets.delete(s.table, pid)

        index =
          Enum.reduce(entries, s.index, fn {_pattern, format}, index ->
            CapabilityIndex.delete_value(index, {pid, format})
          end)

        {:ok, %{s | index: index, routes: %{}, subscribers: Map.delete(s.subscribers, pid)}}

      _ ->
        :error
    end
  end

  @doc "How many processes are subscribed."
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{subscribers: subscribers}), do: map_size(subscribers)

  @doc """
  Delivers each signal, in order, to its local subscribers. Returns the
  subscriptions (with the lookups cached) and how many messages were sent.
  """
  @spec deliver(t(), [term()]) :: {t(), non_neg_integer()}
  def deliver(%__MODULE__{} = s, signals) when is_list(signals),
    do: Enum.reduce(signals, {s, 0}, &deliver_one/2)

  defp deliver_one(signal, {s, sent}) do
    {subscribers, s} = lookup(s, signal)
    Enum.each(subscribers, fn {pid, format} -> send(pid, format(signal, format)) end)
    {s, sent + length(subscribers)}
  end

  defp lookup(s, %{type: type}) when is_binary(type) do
    case s.routes do
      %{^type => subscribers} ->
        {subscribers, s}

      routes ->
        subscribers = CapabilityIndex.lookup(s.index, type)
        routes = if map_size(routes) >= @max_routes, do: %{}, else: routes
        {subscribers, %{s | routes: Map.put(routes, type, subscribers)}}
    end
  end

  defp lookup(s, _signal), do: {[], s}

  defp format(signal, format) when is_function(format, 1) do
    format.(signal)
  rescue
    e ->
      Logger.error("#{inspect(__MODULE__)} message format failed: #{Exception.message(e)}")
      {:signal, signal}
  end

  defp format(signal, format), do: Message.format(signal, format)
end

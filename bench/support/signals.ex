defmodule Jido.Distributed.Bench.Signals do
  @moduledoc """
  The project's standard signal, for benchmarks, tests and the demo.

  A standard signal is a CloudEvents-shaped map with atom keys, the shape of
  jido_signal's `Jido.Signal`:

    * `:id` - a 36-byte version-4 UUID string;
    * `:source` - `"/agents/<agent id>"`, agent ids being `"agent-0000"` ...;
    * `:type` - a dotted type such as `"order.item.added"`;
    * `:subject` - the order the event is about, `"orders/<order id>"`;
    * `:time` - ISO-8601 UTC with milliseconds, e.g. `"2026-01-01T00:00:00.137Z"`;
    * `:specversion` - `"1.0.2"`; `:datacontenttype` - `"application/json"`;
    * `:data` - a map of 11 fields (ids, sku, quantities, prices, a float, a
      tag list, a free-text note of varying length).

  In external term format a standard signal takes 300 to 1000 bytes.

  Everything is derived from `(seed, index)` alone: the same pair always gives
  the same signal, whatever else was generated before, so `batch(n, seed)`
  equals `Enum.map(0..(n - 1), &standard(&1, seed))`. Signal `i` comes from
  agent `rem(i, agents)` and, within a batch, times increase with `i`.

      iex> alias Jido.Distributed.Bench.Signals
      iex> s = Signals.standard(7)
      iex> {byte_size(s.id), s.source, s == Signals.standard(7)}
      {36, "/agents/agent-0007", true}
      iex> Signals.external_size(s) in 300..1000
      true
  """

  @default_seed 1
  @default_agents 100
  # 2026-01-01T00:00:00Z in milliseconds.
  @epoch_ms 1_767_225_600_000

  @types ~w(
    order.item.added order.item.removed order.placed order.cancelled
    payment.authorized payment.captured inventory.reserved inventory.released
    shipment.dispatched shipment.delivered customer.address.updated
  )
  @currencies ~w(EUR USD GBP CHF SEK)
  @warehouses ~w(wh-eu-west-1 wh-eu-central-1 wh-us-east-1 wh-us-west-2 wh-ap-south-1)
  @priorities ~w(low normal normal normal high urgent)
  @tags ~w(gift fragile express bulk returning-customer promo b2b oversize)
  @words ~w(
    please deliver to the back door ring twice leave with neighbour call before
    arrival fragile contents handle with care customer requested morning slot
    invoice separately gift wrap no signature needed office reception
  )

  @typedoc "A standard signal (see the module doc)."
  @type t :: %{
          id: String.t(),
          source: String.t(),
          type: String.t(),
          subject: String.t(),
          time: String.t(),
          specversion: String.t(),
          datacontenttype: String.t(),
          data: %{atom() => term()}
        }

  @typedoc """
  Options:

    * `:agents` - how many distinct agents (sources) the signals come from;
      defaults to #{@default_agents}.
  """
  @type option :: {:agents, pos_integer()}

  @doc """
  The `index`-th standard signal for `seed` (default #{@default_seed}).
  """
  @spec standard(non_neg_integer(), integer(), [option()]) :: t()
  def standard(index, seed \\ @default_seed, opts \\ [])
      when is_integer(index) and index >= 0 and is_integer(seed) and is_list(opts) do
    agents = agents!(opts)
    rand = :rand.seed_s(:exsss, {seed, index, 0x5EED})

    {uuid_bytes, rand} = :rand.bytes_s(16, rand)
    {type, rand} = pick(@types, rand)
    {jitter, rand} = :rand.uniform_s(100, rand)
    {order, rand} = :rand.uniform_s(999_999, rand)
    {data, _rand} = data(order, rand)
    order_id = "ord-" <> pad(order, 6)

    %{
      id: uuid(uuid_bytes),
      source: "/agents/" <> agent_id(rem(index, agents)),
      type: type,
      subject: "orders/" <> order_id,
      time: iso8601(@epoch_ms + index * 137 + jitter),
      specversion: "1.0.2",
      datacontenttype: "application/json",
      data: data
    }
  end

  @doc """
  Signals `0..n-1` for `seed`, in order.
  """
  @spec batch(non_neg_integer(), integer(), [option()]) :: [t()]
  def batch(n, seed \\ @default_seed, opts \\ []) when is_integer(n) and n >= 0 do
    agents!(opts)
    if n == 0, do: [], else: Enum.map(0..(n - 1), &standard(&1, seed, opts))
  end

  @doc """
  An endless lazy stream of the signals for `seed`, starting at index 0.
  """
  @spec stream(integer(), [option()]) :: Enumerable.t()
  def stream(seed \\ @default_seed, opts \\ []) when is_integer(seed) do
    agents!(opts)
    Stream.map(Stream.iterate(0, &(&1 + 1)), &standard(&1, seed, opts))
  end

  @doc """
  The id of agent number `n`, as used in sources: `"agent-0042"`.

      iex> Jido.Distributed.Bench.Signals.agent_id(42)
      "agent-0042"
  """
  @spec agent_id(non_neg_integer()) :: String.t()
  def agent_id(n) when is_integer(n) and n >= 0, do: "agent-" <> pad(n, 4)

  @doc """
  Size in bytes of `term` in external term format (`:erlang.term_to_binary/1`).
  """
  @spec external_size(term()) :: non_neg_integer()
  def external_size(term), do: byte_size(:erlang.term_to_binary(term))

  defp data(order, rand) do
    {customer, rand} = :rand.uniform_s(99_999, rand)
    {sku, rand} = :rand.uniform_s(99_999, rand)
    {quantity, rand} = :rand.uniform_s(12, rand)
    {price, rand} = :rand.uniform_s(49_999, rand)
    {currency, rand} = pick(@currencies, rand)
    {warehouse, rand} = pick(@warehouses, rand)
    {priority, rand} = pick(@priorities, rand)
    {discount, rand} = :rand.uniform_s(rand)
    {tag_count, rand} = :rand.uniform_s(4, rand)
    {tags, rand} = pick_many(@tags, tag_count - 1, rand)
    {word_count, rand} = :rand.uniform_s(30, rand)
    {words, rand} = pick_many(@words, word_count + 2, rand)

    data = %{
      order_id: "ord-" <> pad(order, 6),
      customer_id: "cust-" <> pad(customer, 5),
      sku: "SKU-" <> pad(sku, 5),
      quantity: quantity,
      unit_price_cents: price,
      currency: currency,
      warehouse: warehouse,
      priority: priority,
      discount: Float.round(discount * 0.3, 4),
      tags: tags,
      note: Enum.join(words, " ")
    }

    {data, rand}
  end

  defp pick(list, rand) do
    {n, rand} = :rand.uniform_s(length(list), rand)
    {Enum.at(list, n - 1), rand}
  end

  defp pick_many(list, count, rand) do
    {picked, rand} =
      Enum.reduce(1..count//1, {[], rand}, fn _, {acc, rand} ->
        {item, rand} = pick(list, rand)
        {[item | acc], rand}
      end)

    {Enum.reverse(picked), rand}
  end

  # RFC 4122 version 4 layout: version nibble 4, variant bits 10.
  defp uuid(<<a::48, _::4, b::12, _::2, c::62>>) do
    <<u0::32, u1::16, u2::16, u3::16, u4::48>> = <<a::48, 4::4, b::12, 2::2, c::62>>

    [hex(u0, 8), hex(u1, 4), hex(u2, 4), hex(u3, 4), hex(u4, 12)]
    |> Enum.join("-")
  end

  defp hex(n, width),
    do: n |> Integer.to_string(16) |> String.downcase() |> String.pad_leading(width, "0")

  defp pad(n, width), do: n |> Integer.to_string() |> String.pad_leading(width, "0")

  defp iso8601(ms), do: ms |> DateTime.from_unix!(:millisecond) |> DateTime.to_iso8601()

  defp agents!(opts) do
    case Keyword.get(opts, :agents, @default_agents) do
      n when is_integer(n) and n > 0 ->
        n

      other ->
        raise ArgumentError,
              "the :agents option must be a positive integer, got: #{inspect(other)}"
    end
  end
end

defmodule Jido.Distributed.Test.Testbed.Rules do
  @moduledoc """
  Which packets the testbed drops, as pure data, and the nftables script that
  makes one host drop them.

  The state is a set of directed cuts `{from, to}` between host names: a cut
  drops every IP packet from `from`'s address to `to`'s address. Both ends
  enforce it (the sender's `output` chain and the receiver's `input` chain),
  so each end's counters show what it held back. Packets are dropped without
  an answer (no ICMP, no TCP reset): the partition is silent.

      iex> alias Jido.Distributed.Test.Testbed.Rules
      iex> cuts = Rules.partition(Rules.new(), [[:a], [:b, :c]])
      iex> Enum.sort(cuts)
      [{:a, :b}, {:a, :c}, {:b, :a}, {:c, :a}]
      iex> cuts |> Rules.heal() |> Enum.to_list()
      []
  """

  @typedoc "A host name."
  @type host :: atom()

  @typedoc "A set of directed cuts: packets from the first host to the second are dropped."
  @type t :: MapSet.t({host(), host()})

  @table "jdtb"

  @doc "No cuts."
  @spec new() :: t()
  def new, do: MapSet.new()

  @doc """
  Adds cuts in both directions between every two hosts of different groups.
  Hosts in no group keep reaching everyone, so `[[:a], [:b]]` cuts only
  a<->b (a partial partition: both still reach a third host).
  """
  @spec partition(t(), [[host()]]) :: t()
  def partition(cuts, groups) when is_list(groups) do
    for {g1, i} <- Enum.with_index(groups),
        {g2, j} <- Enum.with_index(groups),
        i != j,
        a <- g1,
        b <- g2,
        reduce: cuts do
      acc -> MapSet.put(acc, {a, b})
    end
  end

  @doc "Adds one cut: packets from `a` to `b` are dropped, `b` to `a` still pass."
  @spec cut_one_way(t(), host(), host()) :: t()
  def cut_one_way(cuts, a, b) when a != b, do: MapSet.put(cuts, {a, b})

  @doc "Removes every cut."
  @spec heal(t()) :: t()
  def heal(_cuts), do: new()

  @doc "Whether `a` and `b` can exchange packets both ways (needed for a TCP connection)."
  @spec connected?(t(), host(), host()) :: boolean()
  def connected?(cuts, a, b),
    do: not MapSet.member?(cuts, {a, b}) and not MapSet.member?(cuts, {b, a})

  @doc """
  The nftables script that gives `host` exactly the drop rules `cuts` need,
  replacing whatever the testbed table held before (atomically: `nft -f`
  applies a script as one transaction). `addresses` maps host names to
  their address strings. Each rule has a counter and a comment
  `"out <host>"` or `"in <host>"` naming the other end (see `parse_counters/1`).
  """
  @spec script(host(), t(), %{host() => String.t()}) :: String.t()
  def script(host, cuts, addresses) do
    outs = for {^host, to} <- Enum.sort(cuts), do: rule("daddr", addresses[to], "out", to)
    ins = for {from, ^host} <- Enum.sort(cuts), do: rule("saddr", addresses[from], "in", from)

    """
    table inet #{@table}
    delete table inet #{@table}
    table inet #{@table} {
      chain input {
        type filter hook input priority 0; policy accept;
    #{Enum.join(ins)}  }
      chain output {
        type filter hook output priority 0; policy accept;
    #{Enum.join(outs)}  }
    }
    """
  end

  defp rule(field, address, dir, other),
    do: "    ip #{field} #{address} counter drop comment \"#{dir} #{other}\"\n"

  @doc """
  Reads the drop counters from `nft list table inet jdtb` output: a map from
  `{:in | :out, other_host_name}` (the name as a string) to
  `%{packets: n, bytes: n}`.
  """
  @spec parse_counters(String.t()) :: %{
          {:in | :out, String.t()} => %{packets: non_neg_integer(), bytes: non_neg_integer()}
        }
  def parse_counters(text) do
    ~r/counter packets (\d+) bytes (\d+) drop comment "(in|out) ([^"]+)"/
    |> Regex.scan(text, capture: :all_but_first)
    |> Map.new(fn [packets, bytes, dir, other] ->
      {{String.to_existing_atom(dir), other},
       %{packets: String.to_integer(packets), bytes: String.to_integer(bytes)}}
    end)
  end
end

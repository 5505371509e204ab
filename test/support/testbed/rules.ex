defmodule Jido.Distributed.Test.Testbed.Rules do
  @moduledoc """
  Which packets the testbed drops, as pure data, and the nftables script that
  makes one host drop them.

  The state is a set of directed cuts `{from, to}` between host names: a cut
  drops every IP packet from `from`'s address to `to`'s address. The drop
  happens in the bridge, that is in the network between the hosts: the
  sender's kernel hands the packet over as usual and nothing ever answers
  (no ICMP, no TCP reset, no local error), so the partition is silent. (A
  drop in the sender's own `output` chain would not be: the kernel returns
  `EPERM` to the sending socket.)

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
  The nftables script for the bridge namespace that drops exactly what
  `cuts` says, replacing whatever the testbed table held before (atomically:
  `nft -f` applies a script as one transaction). `addresses` maps host names
  to address strings. Each cut is one rule in the bridge's `forward` chain
  with a counter and the comment `"<from> <to>"` (see `parse_counters/1`).
  Frames the bridge itself would originate are dropped too, so that only
  what the hosts send is ever on the wire.
  """
  @spec script(t(), %{host() => String.t()}) :: String.t()
  def script(cuts, addresses) do
    rules =
      for {from, to} <- Enum.sort(cuts) do
        "    ip saddr #{addresses[from]} ip daddr #{addresses[to]} counter drop comment \"#{from} #{to}\"\n"
      end

    """
    table bridge #{@table}
    delete table bridge #{@table}
    table bridge #{@table} {
      chain forward {
        type filter hook forward priority 0; policy accept;
    #{Enum.join(rules)}  }
      chain output {
        type filter hook output priority 0; policy drop;
      }
    }
    """
  end

  @doc """
  Reads the drop counters from `nft list table bridge jdtb` output: a map
  from `{from, to}` (host names as strings) to `%{packets: n, bytes: n}`.
  """
  @spec parse_counters(String.t()) :: %{
          {String.t(), String.t()} => %{packets: non_neg_integer(), bytes: non_neg_integer()}
        }
  def parse_counters(text) do
    ~r/counter packets (\d+) bytes (\d+) drop comment "(\S+) (\S+)"/
    |> Regex.scan(text, capture: :all_but_first)
    |> Map.new(fn [packets, bytes, from, to] ->
      {{from, to}, %{packets: String.to_integer(packets), bytes: String.to_integer(bytes)}}
    end)
  end
end

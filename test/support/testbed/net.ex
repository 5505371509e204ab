defmodule Jido.Distributed.Test.Testbed.Net do
  @moduledoc """
  The operating-system side of `Jido.Distributed.Test.Testbed`: network
  namespaces, the bridge between them, drop rules, bandwidth limits and
  interface counters, through the `ip`, `nft` and `tc` commands (run as root).

  ## Layout

  One testbed with prefix `P` (always `jdtb<owner OS pid>_<n>_`) makes:

    * a namespace `Pbr` holding a bridge `br0` and one veth end `hI` per host;
    * a namespace `PhI` per host holding the other end, `eth0`, with address
      `10.213.0.(10 + I)/24`, a fixed MAC, permanent neighbour entries for
      every other host (so no ARP crosses the bridge) and IPv6 off (so no
      neighbour discovery either): every packet on the wire is one the
      host's programs sent, which lets tests read the interface counters.

  The bridge itself sends nothing (no spanning tree, no multicast queries,
  and the drop rules of `Jido.Distributed.Test.Testbed.Rules` drop any frame
  it would originate). The root namespace gets no interface, address or rule: nothing here is
  reachable or routed from it. The addresses live only on the bridge of
  this testbed, so two testbeds (two test runs) never see each other.

  ## Leftovers

  `destroy/1` kills every process inside the namespaces (`ip netns pids`)
  and deletes them; deleting the bridge namespace removes the veth pairs.
  `sweep/0` does the same for testbeds whose owner OS process is gone, so a
  test VM killed in the middle leaves nothing behind for long.
  """

  @prefix "jdtb"
  @subnet "10.213.0"
  @bridge "br0"
  @dev "eth0"

  @typedoc "What a namespace set is called: its prefix (`jdtb<pid>_<n>_`)."
  @type prefix :: String.t()

  @typedoc "Interface counters read from sysfs."
  @type counters :: %{
          rx_packets: non_neg_integer(),
          tx_packets: non_neg_integer(),
          rx_bytes: non_neg_integer(),
          tx_bytes: non_neg_integer()
        }

  @doc "A fresh prefix owned by this OS process."
  @spec new_prefix() :: prefix()
  def new_prefix, do: "#{@prefix}#{System.pid()}_#{System.unique_integer([:positive])}_"

  @doc "The namespace of host number `i` (1-based)."
  @spec host_ns(prefix(), pos_integer()) :: String.t()
  def host_ns(prefix, i), do: "#{prefix}h#{i}"

  @doc "The bridge namespace."
  @spec bridge_ns(prefix()) :: String.t()
  def bridge_ns(prefix), do: "#{prefix}br"

  @doc "The bridge-side interface of host `i` (in `bridge_ns/1`)."
  @spec bridge_port(pos_integer()) :: String.t()
  def bridge_port(i), do: "h#{i}"

  @doc "The host-side interface name."
  @spec device() :: String.t()
  def device, do: @dev

  @doc "The address of host number `i` (1-based, at most 200)."
  @spec address(pos_integer()) :: String.t()
  def address(i) when i in 1..200, do: "#{@subnet}.#{10 + i}"

  defp mac(i), do: "02:00:0a:d5:00:" <> String.pad_leading(Integer.to_string(10 + i, 16), 2, "0")

  @doc """
  Why namespaces cannot be used here, or `nil` when they can: checks root,
  the `ip`, `nft` and `tc` commands, and creates and deletes a namespace.
  """
  @spec unavailable_reason() :: String.t() | nil
  def unavailable_reason do
    missing = Enum.reject(~w(ip nft tc epmd erl), &System.find_executable/1)

    cond do
      elem(System.cmd("id", ["-u"]), 0) != "0\n" ->
        "the testbed needs root (network namespaces, nftables, tc)"

      missing != [] ->
        "the testbed needs #{Enum.join(missing, ", ")} (run scripts/ensure_deps.sh as root)"

      true ->
        probe = new_prefix() <> "probe"

        case cmd("ip", ["netns", "add", probe]) do
          {:ok, _} ->
            _ = cmd("ip", ["netns", "del", probe])
            nil

          {:error, message} ->
            "cannot create network namespaces: #{message}"
        end
    end
  end

  @doc """
  Creates the bridge namespace and `count` host namespaces, wired as the
  module doc says. Raises (after removing what it made) when a command fails.
  """
  @spec create!(prefix(), pos_integer()) :: :ok
  def create!(prefix, count) when count in 1..200 do
    br = bridge_ns(prefix)
    new_ns!(br)
    ip!(~w(-n #{br} link add #{@bridge} type bridge stp_state 0 mcast_snooping 0))
    ip!(["-n", br, "link", "set", @bridge, "up"])
    Enum.each(1..count, &create_host!(prefix, &1, count))
    :ok
  rescue
    e ->
      destroy(prefix)
      reraise e, __STACKTRACE__
  end

  defp create_host!(prefix, i, count) do
    ns = host_ns(prefix, i)
    br = bridge_ns(prefix)
    port = bridge_port(i)
    new_ns!(ns)
    ip!(["-n", br, "link", "add", port, "type", "veth", "peer", "name", @dev, "netns", ns])
    ip!(["-n", ns, "link", "set", @dev, "address", mac(i)])
    ip!(["-n", ns, "addr", "add", address(i) <> "/24", "dev", @dev])
    ip!(["-n", ns, "link", "set", @dev, "up"])
    ip!(["-n", br, "link", "set", port, "master", @bridge, "up"])

    for j <- 1..count, j != i do
      ip!(~w(-n #{ns} neigh replace #{address(j)} lladdr #{mac(j)} dev #{@dev} nud permanent))
    end

    :ok
  end

  # A namespace with loopback up and IPv6 off (no neighbour discovery, no
  # router solicitations: nothing on the wire that nobody asked for).
  defp new_ns!(ns) do
    ip!(["netns", "add", ns])
    ip!(["-n", ns, "link", "set", "lo", "up"])

    for key <- ~w(all default) do
      in_ns!(ns, "sysctl", ["-q", "-w", "net.ipv6.conf.#{key}.disable_ipv6=1"])
    end

    :ok
  end

  @doc "Runs `program args` inside namespace `ns`; `{:ok, output}` or `{:error, message}`."
  @spec in_ns(String.t(), String.t(), [String.t()]) :: {:ok, String.t()} | {:error, String.t()}
  def in_ns(ns, program, args), do: cmd("ip", ["netns", "exec", ns, program | args])

  @doc "Like `in_ns/3`, raising when the command fails."
  @spec in_ns!(String.t(), String.t(), [String.t()]) :: String.t()
  def in_ns!(ns, program, args), do: ok!(in_ns(ns, program, args))

  @doc "Starts `epmd -daemon` inside `ns`."
  @spec start_epmd!(String.t()) :: :ok
  def start_epmd!(ns) do
    in_ns!(ns, "epmd", ["-daemon"])
    :ok
  end

  @doc "Replaces the drop rules in `ns` (the bridge's) with the nftables `script` (one transaction)."
  @spec apply_rules!(String.t(), String.t()) :: :ok
  def apply_rules!(ns, script) do
    path = Path.join(System.tmp_dir!(), "#{ns}_#{System.unique_integer([:positive])}.nft")
    File.write!(path, script)

    try do
      in_ns!(ns, "nft", ["-f", path])
      :ok
    after
      File.rm(path)
    end
  end

  @doc "The text of the drop rule table in `ns` (`\"\"` when it has none yet)."
  @spec rules_text(String.t()) :: String.t()
  def rules_text(ns) do
    case in_ns(ns, "nft", ["list", "table", "bridge", "jdtb"]) do
      {:ok, text} -> text
      {:error, _} -> ""
    end
  end

  @doc """
  Limits what leaves `dev` in `ns` to `mbit` Mbit/s with a token bucket
  (`tc ... tbf`); `nil` removes the limit. The bucket holds 10 ms of traffic
  (at least 32 KiB) and the queue at most 50 ms.
  """
  @spec set_rate!(String.t(), String.t(), pos_integer() | nil) :: :ok
  def set_rate!(ns, dev, nil) do
    _ = in_ns(ns, "tc", ["qdisc", "del", "dev", dev, "root"])
    :ok
  end

  def set_rate!(ns, dev, mbit) when is_integer(mbit) and mbit > 0 do
    burst = max(32_768, div(mbit * 1_000_000, 8 * 100))

    in_ns!(
      ns,
      "tc",
      ~w(qdisc replace dev #{dev} root tbf rate #{mbit}mbit burst #{burst} latency 50ms)
    )

    :ok
  end

  @doc "Packet and byte counters of interface `dev` in `ns`."
  @spec counters(String.t(), String.t()) :: counters()
  def counters(ns, dev) do
    keys = ~w(rx_packets tx_packets rx_bytes tx_bytes)
    files = Enum.map(keys, &"/sys/class/net/#{dev}/statistics/#{&1}")

    values =
      ns
      |> in_ns!("cat", files)
      |> String.split()
      |> Enum.map(&String.to_integer/1)

    keys |> Enum.map(&String.to_atom/1) |> Enum.zip(values) |> Map.new()
  end

  @doc "OS pids of every process inside namespace `ns`."
  @spec pids(String.t()) :: [pos_integer()]
  def pids(ns) do
    case cmd("ip", ["netns", "pids", ns]) do
      {:ok, out} -> out |> String.split() |> Enum.map(&String.to_integer/1)
      {:error, _} -> []
    end
  end

  @doc "Every namespace whose name starts with `prefix` (default: every testbed's)."
  @spec namespaces(String.t()) :: [String.t()]
  def namespaces(prefix \\ @prefix) do
    case cmd("ip", ["netns", "list"]) do
      {:ok, out} ->
        for line <- String.split(out, "\n", trim: true),
            [name | _] = String.split(line),
            String.starts_with?(name, prefix),
            do: name

      {:error, _} ->
        []
    end
  end

  @doc """
  Removes every namespace starting with `prefix`: kills all processes inside
  (SIGKILL, waiting until they are gone) and deletes the namespaces.
  Returns the pids it killed. Safe to call twice.
  """
  @spec destroy(prefix()) :: [pos_integer()]
  def destroy(prefix) do
    namespaces = namespaces(prefix)
    killed = Enum.flat_map(namespaces, &kill_all/1)
    Enum.each(namespaces, &cmd("ip", ["netns", "del", &1]))
    killed
  end

  defp kill_all(ns) do
    pids = pids(ns)
    signal(pids, "KILL")
    await_gone(pids, 100)
    pids
  end

  @doc """
  Destroys the testbeds left by OS processes that no longer run (a test VM
  killed mid-run). Testbeds of running owners are left alone. Returns the
  prefixes removed.
  """
  @spec sweep() :: [prefix()]
  def sweep do
    namespaces()
    |> Enum.flat_map(fn name ->
      case Regex.run(~r/^(#{@prefix}(\d+)_\d+_)/, name) do
        [_, prefix, owner] -> if alive?(String.to_integer(owner)), do: [], else: [prefix]
        nil -> []
      end
    end)
    |> Enum.uniq()
    |> Enum.map(fn prefix ->
      destroy(prefix)
      prefix
    end)
  end

  @doc "Whether OS process `pid` exists."
  @spec alive?(pos_integer()) :: boolean()
  def alive?(pid), do: File.exists?("/proc/#{pid}")

  @doc "Sends `signal` (`\"STOP\"`, `\"CONT\"`, `\"KILL\"`, ...) to OS processes; ignores ones that are gone."
  @spec signal([pos_integer()], String.t()) :: :ok
  def signal([], _signal), do: :ok

  def signal(pids, signal) do
    _ = cmd("kill", ["-" <> signal | Enum.map(pids, &Integer.to_string/1)])
    :ok
  end

  @doc "Waits (up to `tries` * 50 ms) until none of `pids` exists; returns whether they are gone."
  @spec await_gone([pos_integer()], non_neg_integer()) :: boolean()
  def await_gone(pids, tries) do
    cond do
      not Enum.any?(pids, &alive?/1) ->
        true

      tries == 0 ->
        false

      true ->
        Process.sleep(50)
        await_gone(pids, tries - 1)
    end
  end

  defp ip!(args), do: ok!(cmd("ip", args))

  defp ok!({:ok, out}), do: out
  defp ok!({:error, message}), do: raise(message)

  defp cmd(program, args) do
    case System.cmd(program, args, stderr_to_stdout: true) do
      {out, 0} -> {:ok, out}
      {out, status} -> {:error, "#{program} #{Enum.join(args, " ")} exited #{status}: #{out}"}
    end
  rescue
    e in ErlangError -> {:error, "#{program}: #{inspect(e.original)}"}
  end
end

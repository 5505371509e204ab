defmodule Jido.Distributed.Transport.NodeCheck do
  @max_attempts 32

  @moduledoc """
  Decides whether signals for a remote node may be accepted, so that a
  made-up or mistyped node name can neither start a Link nor leave
  processes behind.

  A node is *known* when it is connected now, when this node has been
  connected to it before (every `nodeup` is remembered, see
  `Jido.Distributed.Transport.LinkStore`), when it has a link row, or when
  it is listed in the `:known_nodes` setting (nodes expected to join).
  Signals for a known node are accepted and, while it is unreachable,
  buffered by its Link. A node name that is well formed but unknown is
  refused with `{:error, {:unknown_node, node}}` at once; one connection
  attempt is made in the background, so that later sends work once it has
  connected.

  ## Connection attempts

  `:net_kernel.connect_node/1` can block for seconds (name resolution,
  connect timeouts), so attempts run in their own short-lived processes and
  callers never wait for them. There is at most one attempt per node at any
  time, and at most #{@max_attempts} attempts for unknown nodes at once (beyond
  that the error is returned without an attempt). An attempt for an unknown
  node that fails keeps its place for the `:reconnect_ms` link setting
  before it ends, so such a node is tried at most that often, and a flood of
  made-up names costs a bounded number of processes that all end within
  about that time. (A Link reconnecting to a known node paces its own
  attempts.)

  The tables live as long as the LinkStore, which creates them.
  """

  alias Jido.Distributed.Options
  alias Jido.Distributed.Transport.LinkStore

  @known :jido_distributed_known_nodes
  @attempts :jido_distributed_connect_attempts
  # The key of the counter of bounded attempts (never a valid node name).
  @count :count

  @typedoc "Why signals for a node are refused."
  @type error :: {:invalid_node, term()} | {:unknown_node, node()} | :not_distributed

  @doc false
  # Called by the LinkStore's init: the known set starts with the
  # `:known_nodes` setting and the nodes connected now.
  @spec create_tables() :: :ok
  def create_tables do
    :ets.new(@known, [:named_table, :public, :set, read_concurrency: true])
    :ets.new(@attempts, [:named_table, :public, :set, write_concurrency: true])
    :ets.insert(@attempts, {@count, 0})

    Enum.each(Options.get(:known_nodes) ++ Node.list([:visible, :hidden]), &seen/1)
  end

  @doc """
  True when `name` is a well-formed node name: an atom with exactly one
  `@`, a non-empty name part of letters, digits, `_` and `-` (what
  `:net_kernel` accepts), and a non-empty host part of printable Latin-1
  characters other than space.

      iex> alias Jido.Distributed.Transport.NodeCheck
      iex> NodeCheck.valid_name?(:"app@host.example")
      true
      iex> Enum.map([:"@", :"a@b@c", :"nohost@", :"@host", :"a b@h", :noatsign, "a@h"], &NodeCheck.valid_name?/1)
      [false, false, false, false, false, false, false]
  """
  @spec valid_name?(term()) :: boolean()
  def valid_name?(name) when is_atom(name) do
    case :binary.split(Atom.to_string(name), "@", [:global]) do
      [head, host] when head != "" and host != "" -> valid_head?(head) and valid_host?(host)
      _ -> false
    end
  end

  def valid_name?(_), do: false

  defp valid_head?(<<c, rest::binary>>)
       when c in ?a..?z or c in ?A..?Z or c in ?0..?9 or c == ?_ or c == ?-,
       do: valid_head?(rest)

  defp valid_head?(<<>>), do: true
  defp valid_head?(_), do: false

  defp valid_host?(<<c::utf8, rest::binary>>) when c in 0x21..0xFF, do: valid_host?(rest)
  defp valid_host?(<<>>), do: true
  defp valid_host?(_), do: false

  @doc """
  Whether signals for the remote `node` may be accepted now: `:ok` for a
  known node (see the module doc), otherwise an error. An unknown,
  well-formed node gets one background connection attempt (see
  `connect/2`).
  """
  @spec check(node()) :: :ok | {:error, error()}
  def check(node) do
    cond do
      not valid_name?(node) ->
        {:error, {:invalid_node, node}}

      not Node.alive?() ->
        {:error, :not_distributed}

      known?(node) ->
        :ok

      true ->
        connect(node, :bounded)
        {:error, {:unknown_node, node}}
    end
  end

  @doc """
  True when `node` is known: remembered, with a link row, or connected now
  (then it is remembered).
  """
  @spec known?(node()) :: boolean()
  def known?(node) do
    cond do
      :ets.member(@known, node) ->
        true

      LinkStore.lookup(node) != nil ->
        true

      :lists.member(node, Node.list([:visible, :hidden])) ->
        seen(node)

      true ->
        false
    end
  end

  @doc "Remembers that this node has been connected to `node`."
  @spec seen(node()) :: true
  def seen(node), do: :ets.insert(@known, {node})

  @doc """
  Starts a connection attempt to `node` in the background unless one is
  under way. `:bounded` attempts (for unknown nodes) also count against the
  limit on attempts at once; `:unbounded` ones (a Link reconnecting to a
  known node) do not. Returns `:started`, `:pending` (an attempt for `node`
  is under way) or `:busy` (too many bounded attempts).
  """
  @spec connect(node(), :bounded | :unbounded) :: :started | :pending | :busy
  def connect(node, bound) when bound in [:bounded, :unbounded] do
    if bound == :bounded and :ets.update_counter(@attempts, @count, 1) > @max_attempts do
      release_slot(:bounded)
      :busy
    else
      ref = make_ref()

      if :ets.insert_new(@attempts, {node, ref, bound}) do
        cooldown = Options.get(:link)[:reconnect_ms]
        spawn(fn -> attempt(node, ref, bound, cooldown) end)
        :started
      else
        release_slot(bound)
        :pending
      end
    end
  end

  @doc "The number of attempts for unknown nodes under way (at most #{@max_attempts})."
  @spec attempts() :: non_neg_integer()
  def attempts, do: :ets.lookup_element(@attempts, @count, 2)

  defp attempt(node, ref, bound, cooldown) do
    cond do
      :net_kernel.connect_node(node) == true -> seen(node)
      bound == :bounded -> Process.sleep(cooldown)
      true -> :ok
    end
  rescue
    # The tables went with a stopped LinkStore.
    ArgumentError -> :ok
  after
    # Only this attempt's row, and only if the tables are still the ones it
    # was counted in (a restarted LinkStore starts afresh; a stopped one
    # took them along).
    try do
      if :ets.select_delete(@attempts, [{{node, ref, :_}, [], [true]}]) == 1,
        do: release_slot(bound)
    rescue
      ArgumentError -> :ok
    end
  end

  defp release_slot(:bounded), do: :ets.update_counter(@attempts, @count, -1)
  defp release_slot(:unbounded), do: :ok
end

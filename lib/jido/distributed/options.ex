defmodule Jido.Distributed.Options do
  @moduledoc """
  The one schema of `:jido_distributed` settings, validated once at start.

  Settings come from `config :jido_distributed, ...`. Each key has a type, a
  default and a doc; `validate!/1` raises `ArgumentError` naming the key and
  the bad value, and `docs/0` renders the schema for `@doc`s. The settings
  are listed in `Jido.Distributed`.
  """

  alias Jido.Distributed.Transport.NodeCheck

  @schema [
    max_frame_size: [
      type: :pos_integer,
      default: 64 * 1024 * 1024,
      doc: "Largest uncompressed frame payload a Receiver accepts, in bytes."
    ],
    known_nodes: [
      type: :nodes,
      default: [],
      doc:
        "Nodes expected to join that this node has not been connected to yet. Signals " <>
          "for them are accepted and buffered until they connect, as for a node that " <>
          "was connected and went away; signals for other never-seen nodes are " <>
          "refused with `{:error, {:unknown_node, node}}`."
    ],
    location: [
      type: :keyword_list,
      default: [],
      keys: [
        region: [type: :label, default: nil, doc: "Region label of this node."],
        zone: [type: :label, default: nil, doc: "Zone label of this node."],
        rack: [type: :label, default: nil, doc: "Rack label of this node."]
      ],
      doc: "Location labels of the local node, used for distance classes."
    ],
    link: [
      type: :keyword_list,
      default: [],
      keys: [
        batch_size: [
          type: :pos_integer,
          default: 256,
          doc: "Most signals in one frame (for nodes whose distance class has no own size)."
        ],
        batch_bytes: [
          type: :pos_integer,
          default: 256 * 1024,
          doc: "Most uncompressed bytes in one frame (one larger signal still goes alone)."
        ],
        linger_ms: [
          type: :non_neg_integer,
          default: 3,
          doc:
            "How long a busy link waits to fill a frame. A signal on an idle link " <>
              "(nothing flushed for this long) goes out at once."
        ],
        max_buffer_entries: [
          type: :pos_integer,
          default: 100_000,
          doc: "Bound on signals held per remote node (pending plus unacknowledged)."
        ],
        max_buffer_bytes: [
          type: :pos_integer,
          default: 64 * 1024 * 1024,
          doc: "Bound on bytes held per remote node (uncompressed)."
        ],
        overflow: [
          type: {:in, [:reject, :drop_oldest]},
          default: :reject,
          doc:
            "When the buffer is full: `:reject` returns `{:error, :buffer_full}`; " <>
              "`:drop_oldest` drops the oldest signals and reports them."
        ],
        retransmit_ms: [
          type: :pos_integer,
          default: 1_000,
          doc: "Unacknowledged frames are sent again after this long without progress."
        ],
        reconnect_ms: [
          type: :pos_integer,
          default: 500,
          doc: "How often a link tries to reconnect to an unreachable node holding data for it."
        ]
      ],
      doc: "Per-remote-node Link settings."
    ],
    batch_sizes: [
      type: :keyword_list,
      default: [],
      keys: [
        same_zone: [
          type: :pos_integer,
          default: 128,
          doc: "Batch size toward nodes in the same zone."
        ],
        same_region: [
          type: :pos_integer,
          default: 256,
          doc: "Batch size toward nodes in the same region, other zone."
        ],
        remote: [
          type: :pos_integer,
          default: 512,
          doc: "Batch size toward other regions or unlabelled nodes."
        ]
      ],
      doc: "Frame sizes by network distance class: farther nodes get larger batches."
    ],
    monitor: [
      type: :keyword_list,
      default: [],
      keys: [
        heartbeat_ms: [
          type: :pos_integer,
          default: 100,
          doc: "Interval of the UDP heartbeats sent to every peer."
        ],
        udp_port: [
          type: :non_neg_integer,
          default: 0,
          doc: "UDP port of the heartbeats; `0` picks a free one (peers learn it)."
        ],
        suspect_phi: [
          type: :number,
          default: 5.0,
          doc: "Suspicion (phi) at which a silent peer becomes `:suspect`..."
        ],
        unreachable_phi: [
          type: :number,
          default: 8.0,
          doc: "...and `:unreachable`."
        ],
        min_std_ms: [
          type: :pos_integer,
          default: 50,
          doc: "Lowest deviation of heartbeat intervals the detector assumes."
        ],
        indirect_probes: [
          type: :non_neg_integer,
          default: 3,
          doc: "Peers asked whether they still hear a suspect peer."
        ],
        indirect_grace_ms: [
          type: :non_neg_integer,
          default: 500,
          doc: "A suspect that others still hear is unreachable only after this much silence."
        ],
        stall_ms: [
          type: :pos_integer,
          default: 100,
          doc:
            "A heartbeat tick this late means this node itself was stalled: " <>
              "the silence of peers meanwhile is excused."
        ],
        down_after_ms: [
          type: :pos_integer,
          default: 30_000,
          doc: "An unreachable peer is `:down` after this long without a sign of life."
        ],
        rtt_probe_ms: [
          type: :pos_integer,
          default: 2_000,
          doc: "Interval of RTT pings over distribution."
        ],
        gossip_ms: [
          type: :pos_integer,
          default: 2_000,
          doc: "Interval at which each node sends its row of the latency matrix."
        ],
        same_zone_rtt_us: [
          type: :pos_integer,
          default: 1_000,
          doc: "Measured RTT up to which a peer is `:same_zone`..."
        ],
        same_region_rtt_us: [
          type: :pos_integer,
          default: 10_000,
          doc: "...and `:same_region` (above: `:remote`)."
        ],
        class_margin: [
          type: :number,
          default: 0.2,
          doc: "Hysteresis: a class changes only when the RTT is this fraction past a bound."
        ]
      ],
      doc: "Failure detection and latency measurement (`Jido.Distributed.Monitor`)."
    ],
    receiver: [
      type: :keyword_list,
      default: [],
      keys: [
        ack_delay_ms: [
          type: :non_neg_integer,
          default: 20,
          doc: "Acks are batched: at most one per origin node per this many ms..."
        ],
        ack_every: [
          type: :pos_integer,
          default: 32,
          doc: "...unless this many frames arrived unacked, then one goes at once."
        ],
        session_grace_ms: [
          type: :pos_integer,
          default: 60_000,
          doc:
            "The sequencing state of a node that went down is forgotten this long after, " <>
              "if that node had confirmed every frame delivered..."
        ],
        session_ttl_ms: [
          type: :pos_integer,
          default: 3_600_000,
          doc:
            "...and this long after in any case (a node partitioned longer may then " <>
              "see frames in flight at the cut delivered twice)."
        ]
      ],
      doc: "Receiver settings."
    ],
    directory: [
      type: :keyword_list,
      default: [],
      keys: [
        max_batch: [
          type: :pos_integer,
          default: 1_024,
          doc:
            "Most agent changes in one message to another node's Directory; this many " <>
              "waiting changes are sent at once."
        ],
        max_delay_ms: [
          type: :pos_integer,
          default: 20,
          doc:
            "Changes go to other nodes when the Directory is idle, or at the latest " <>
              "this long after the first one while it stays busy."
        ]
      ],
      doc: "Agent directory replication (see `Jido.Distributed.Directory`)."
    ],
    broadcast: [
      type: :keyword_list,
      default: [],
      keys: [
        fanout: [
          type: :pos_integer,
          default: 4,
          doc: "Most copies of a broadcast any node sends (its children in the tree)."
        ],
        timeout_ms: [
          type: :pos_integer,
          default: 5_000,
          doc:
            "How long a broadcast may take; nodes not confirmed by then are reported " <>
              "missing. The default of the `:timeout` option of `broadcast/2`."
        ],
        ack_timeout_ms: [
          type: :pos_integer,
          default: 1_000,
          doc:
            "How long a node waits for a child to confirm receipt before treating it as " <>
              "unreachable and sending to the child's children itself."
        ],
        dedup_size: [
          type: :pos_integer,
          default: 10_000,
          doc:
            "Most broadcast ids each node remembers, to drop duplicates and to answer " <>
              "`await/2`."
        ],
        dedup_ttl_ms: [
          type: :pos_integer,
          default: 60_000,
          doc: "How long each node remembers a broadcast id."
        ]
      ],
      doc: "Tree broadcast settings (`Jido.Distributed.TreeBroadcast`)."
    ],
    relay: [
      type: :keyword_list,
      default: nil,
      keys: [
        name: [type: :string, default: "jido_relay", doc: "Node name (before `@`) of the relay."],
        host: [type: :string, default: nil, doc: "Host part; defaults to this node's host."],
        cookie: [type: :atom, default: nil, doc: "Cookie; defaults to this node's cookie."],
        tick_interval_ms: [
          type: :pos_integer,
          default: 15_000,
          doc: "How often the relay sends distribution ticks."
        ],
        restart_backoff_ms: [
          type: :pos_integer,
          default: 1_000,
          doc: "Delay before the relay process is started again after it dies."
        ],
        port: [
          type: :non_neg_integer,
          default: 0,
          doc: "Distribution listen port of the relay; `0` picks a free port."
        ],
        startup_timeout_ms: [
          type: :pos_integer,
          default: 10_000,
          doc: "How long to wait for the relay to register with epmd and report ready."
        ],
        log_level: [
          type: {:in, [:error, :warning, :info, :debug]},
          default: :info,
          doc: "Most verbose relay log level forwarded to `Logger`."
        ]
      ],
      doc: "Start the relay C-node (`jido_relay`) when set; `nil` (default) leaves it off."
    ]
  ]

  @doc "The schema: a keyword list of `key: [type:, default:, doc:]`."
  @spec schema() :: keyword()
  def schema, do: @schema

  @doc """
  Validates `opts` against the schema, filling defaults.

      iex> Jido.Distributed.Options.validate!(max_frame_size: 1024)[:max_frame_size]
      1024

      iex> Jido.Distributed.Options.validate!(max_frame_size: -1)
      ** (ArgumentError) the :max_frame_size option must be a positive integer, got: -1
  """
  @spec validate!(keyword()) :: keyword()
  def validate!(opts), do: validate!(opts, @schema, [])

  @doc """
  Validates per-call `opts` against `schema` (of the same form as
  `schema/0`), filling defaults: one way for every function that takes
  options. Raises `ArgumentError` naming the key and the bad value.

  Besides the setting types, per-call schemas may use `:timeout` (a
  non-negative integer or `:infinity`), `:list`, `:any` and
  `{:custom, fun, description}` (`fun` returns a boolean; `description`
  completes "must be ...").

      iex> schema = [timeout: [type: :timeout, default: 5_000, doc: "How long."]]
      iex> Jido.Distributed.Options.validate!([], schema)
      [timeout: 5000]

      iex> schema = [timeout: [type: :timeout, default: 5_000, doc: "How long."]]
      iex> Jido.Distributed.Options.validate!([timeout: -1], schema)
      ** (ArgumentError) the :timeout option must be a non-negative integer or :infinity, got: -1

      iex> schema = [timeout: [type: :timeout, default: 5_000, doc: "How long."]]
      iex> Jido.Distributed.Options.validate!([tmeout: 1], schema)
      ** (ArgumentError) unknown option :tmeout, known: [:timeout]

      iex> Jido.Distributed.Options.validate!(:raw, timeout: [type: :timeout, default: 1])
      ** (ArgumentError) the opts argument must be a keyword list, got: :raw
  """
  @spec validate!(term(), keyword()) :: keyword()
  def validate!(opts, schema) when is_list(schema), do: validate!(opts, schema, [])

  @doc "A per-call `schema` rendered as Markdown, for `@doc`s (an `## Options` list)."
  @spec docs(keyword()) :: String.t()
  def docs(schema) when is_list(schema), do: render(schema, "")

  @doc """
  The validated settings, as stored at application start (or read from the
  application environment if the application has not started).
  """
  @spec get(atom()) :: term()
  def get(key) when is_atom(key) do
    opts = :persistent_term.get(__MODULE__, nil) || from_env()
    Keyword.fetch!(opts, key)
  end

  @doc "Validates the application environment and stores it for `get/1`."
  @spec load!() :: keyword()
  def load! do
    opts = from_env()
    :persistent_term.put(__MODULE__, opts)
    opts
  end

  @doc "Reads and validates the application environment."
  @spec from_env() :: keyword()
  def from_env do
    :jido_distributed
    |> Application.get_all_env()
    |> Keyword.take(Keyword.keys(@schema))
    |> validate!()
  end

  @doc "The schema rendered as Markdown, for `@doc`s."
  @spec docs() :: String.t()
  def docs, do: render(@schema, "")

  defp validate!(opts, schema, path) when is_list(opts) do
    unless Keyword.keyword?(opts) do
      raise ArgumentError, "the #{name(path)} must be a keyword list, got: #{inspect(opts)}"
    end

    known = Keyword.keys(schema)

    case Keyword.keys(opts) -- known do
      [] ->
        :ok

      [key | _] ->
        raise ArgumentError,
              "unknown option #{inspect(key)}#{where(path)}, known: #{inspect(known)}"
    end

    Enum.map(schema, fn {key, spec} ->
      value = Keyword.get(opts, key, spec[:default])
      {key, check!(value, spec, path ++ [key])}
    end)
  end

  defp validate!(opts, _schema, path),
    do: raise(ArgumentError, "the #{name(path)} must be a keyword list, got: #{inspect(opts)}")

  defp check!(value, spec, path) do
    if value == nil and spec[:default] == nil,
      do: nil,
      else: check_type!(spec[:type], value, spec, path)
  end

  defp check_type!(:keyword_list, value, spec, path), do: validate!(value, spec[:keys], path)
  defp check_type!(:pos_integer, v, _, _) when is_integer(v) and v > 0, do: v
  defp check_type!(:non_neg_integer, v, _, _) when is_integer(v) and v >= 0, do: v
  defp check_type!(:boolean, v, _, _) when is_boolean(v), do: v
  defp check_type!(:atom, v, _, _) when is_atom(v), do: v
  defp check_type!(:string, v, _, _) when is_binary(v), do: v
  defp check_type!(:label, v, _, _) when is_binary(v) or is_atom(v), do: v
  defp check_type!(:number, v, _, _) when is_number(v) and v >= 0, do: v
  defp check_type!(:timeout, v, _, _) when (is_integer(v) and v >= 0) or v == :infinity, do: v
  defp check_type!(:list, v, _, _) when is_list(v), do: v
  defp check_type!(:any, v, _, _), do: v

  defp check_type!({:custom, fun, what}, v, _, path) when is_function(fun, 1) do
    if fun.(v), do: v, else: bad!(path, what, v)
  end

  defp check_type!(:nodes, v, _, path) do
    if is_list(v) and Enum.all?(v, &NodeCheck.valid_name?/1),
      do: v,
      else: bad!(path, describe(:nodes), v)
  end

  defp check_type!({:in, values}, v, _, path) do
    if v in values, do: v, else: bad!(path, "one of #{inspect(values)}", v)
  end

  defp check_type!(type, v, _, path), do: bad!(path, describe(type), v)

  defp bad!(path, what, value),
    do: raise(ArgumentError, "the #{name(path)} must be #{what}, got: #{inspect(value)}")

  defp describe(:pos_integer), do: "a positive integer"
  defp describe(:non_neg_integer), do: "a non-negative integer"
  defp describe(:boolean), do: "a boolean"
  defp describe(:atom), do: "an atom"
  defp describe(:string), do: "a string"
  defp describe(:label), do: "a string or an atom"
  defp describe(:number), do: "a non-negative number"
  defp describe(:timeout), do: "a non-negative integer or :infinity"
  defp describe(:list), do: "a list"
  defp describe(:nodes), do: "a list of node names (atoms such as :\"app@host\")"

  defp name([]), do: "opts argument"
  defp name(path), do: "#{Enum.map_join(path, " ", &inspect/1)} option"
  defp where([]), do: ""
  defp where(path), do: " in the #{name(path)}"

  defp render(schema, indent) do
    Enum.map_join(schema, fn {key, spec} ->
      default =
        if spec[:default] == nil, do: "", else: " Defaults to `#{inspect(spec[:default])}`."

      line = "#{indent}  * `#{inspect(key)}` - #{spec[:doc]}#{default}\n"
      if spec[:keys], do: line <> "\n" <> render(spec[:keys], indent <> "    "), else: line
    end)
  end
end

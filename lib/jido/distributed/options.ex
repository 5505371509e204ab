defmodule Jido.Distributed.Options do
  @moduledoc """
  The one schema of `:jido_distributed` settings, validated once at start.

  Settings come from `config :jido_distributed, ...`. Each key has a type, a
  default and a doc; `validate!/1` raises `ArgumentError` naming the key and
  the bad value, and `docs/0` renders the schema for `@doc`s. The settings
  are listed in `Jido.Distributed`.
  """

  @schema [
    max_frame_size: [
      type: :pos_integer,
      default: 64 * 1024 * 1024,
      doc: "Largest uncompressed frame payload a Receiver accepts, in bytes."
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

defmodule Jido.Distributed.Bench.JSON do
  @moduledoc """
  A small JSON encoder for benchmark results (the project cannot use Jason).

  Encodes:

    * `nil` as `null`, `true`/`false` as themselves, other atoms as strings;
    * integers as themselves and floats in their shortest round-trip form
      (`1.5`, `1.0e-7`), which is valid JSON;
    * UTF-8 binaries as strings, escaping `"`, `\\` and every control
      character below U+0020; a binary that is not valid UTF-8 raises;
    * lists as arrays;
    * maps as objects whose keys (atoms, strings or integers) are turned
      into strings and sorted, so the same data always gives the same bytes.
      Two keys that become the same string (`:a` and `"a"`) raise.

  Anything else (tuples, pids, functions, ...) raises `ArgumentError`.

      iex> Jido.Distributed.Bench.JSON.encode!(%{b: [1, 2.5, nil], a: "x\\ny"})
      ~s({"a":"x\\\\ny","b":[1,2.5,null]})
  """

  @typedoc "A term `encode!/2` accepts."
  @type value ::
          nil
          | boolean()
          | atom()
          | number()
          | String.t()
          | [value()]
          | %{optional(atom() | String.t() | integer()) => value()}

  @doc """
  Encodes `value` as JSON text.

  ## Options

    * `:pretty` - when `true`, puts every array element and object member on
      its own line, indented by two spaces per level, and ends the text with
      a newline. Defaults to `false` (compact, no whitespace).
  """
  @spec encode!(value(), keyword()) :: String.t()
  def encode!(value, opts \\ []) when is_list(opts) do
    if Keyword.get(opts, :pretty, false) do
      IO.iodata_to_binary([pretty(value, 0), ?\n])
    else
      IO.iodata_to_binary(compact(value))
    end
  end

  defp compact(value) when is_list(value) do
    [?[, value |> Enum.map(&compact/1) |> Enum.intersperse(?,), ?]]
  end

  defp compact(value) when is_map(value) and not is_struct(value) do
    members =
      value
      |> sorted_members()
      |> Enum.map(fn {key, val} -> [string(key), ?:, compact(val)] end)
      |> Enum.intersperse(?,)

    [?{, members, ?}]
  end

  defp compact(value), do: scalar(value)

  defp pretty([], _level), do: "[]"

  defp pretty(value, level) when is_list(value) do
    inner = indent(level + 1)
    items = Enum.map(value, fn item -> [inner, pretty(item, level + 1)] end)
    [?[, ?\n, Enum.intersperse(items, ",\n"), ?\n, indent(level), ?]]
  end

  defp pretty(value, level) when is_map(value) and not is_struct(value) do
    case sorted_members(value) do
      [] ->
        "{}"

      members ->
        inner = indent(level + 1)

        items =
          Enum.map(members, fn {key, val} ->
            [inner, string(key), ": ", pretty(val, level + 1)]
          end)

        [?{, ?\n, Enum.intersperse(items, ",\n"), ?\n, indent(level), ?}]
    end
  end

  defp pretty(value, _level), do: scalar(value)

  defp indent(level), do: String.duplicate("  ", level)

  defp scalar(nil), do: "null"
  defp scalar(true), do: "true"
  defp scalar(false), do: "false"
  defp scalar(value) when is_atom(value), do: string(Atom.to_string(value))
  defp scalar(value) when is_integer(value), do: Integer.to_string(value)
  defp scalar(value) when is_float(value), do: :erlang.float_to_binary(value, [:short])
  defp scalar(value) when is_binary(value), do: string(value)

  defp scalar(value) do
    raise ArgumentError, "cannot encode #{inspect(value)} as JSON"
  end

  defp sorted_members(map) do
    members = Enum.map(map, fn {key, val} -> {key_string(key), val} end)
    sorted = Enum.sort_by(members, &elem(&1, 0))

    sorted
    |> Enum.chunk_every(2, 1, :discard)
    |> Enum.each(fn
      [{same, _}, {same, _}] ->
        raise ArgumentError, "duplicate JSON object key #{inspect(same)} in #{inspect(map)}"

      _ ->
        :ok
    end)

    sorted
  end

  defp key_string(key) when is_binary(key), do: key
  defp key_string(key) when is_atom(key) and not is_nil(key), do: Atom.to_string(key)
  defp key_string(key) when is_integer(key), do: Integer.to_string(key)

  defp key_string(key) do
    raise ArgumentError, "cannot use #{inspect(key)} as a JSON object key"
  end

  defp string(value) do
    unless String.valid?(value) do
      raise ArgumentError, "cannot encode a binary that is not UTF-8 as JSON: #{inspect(value)}"
    end

    [?", escape(value, 0, value, []), ?"]
  end

  # Copies runs of characters that need no escaping as whole sub-binaries.
  defp escape(<<char, rest::binary>>, len, original, acc)
       when char < 0x20 or char == ?" or char == ?\\ do
    run = binary_part(original, byte_size(original) - byte_size(rest) - 1 - len, len)
    escape(rest, 0, original, [acc, run | escape_char(char)])
  end

  defp escape(<<_char, rest::binary>>, len, original, acc),
    do: escape(rest, len + 1, original, acc)

  defp escape(<<>>, len, original, acc),
    do: [acc | binary_part(original, byte_size(original) - len, len)]

  defp escape_char(?"), do: "\\\""
  defp escape_char(?\\), do: "\\\\"
  defp escape_char(?\n), do: "\\n"
  defp escape_char(?\r), do: "\\r"
  defp escape_char(?\t), do: "\\t"
  defp escape_char(?\b), do: "\\b"
  defp escape_char(?\f), do: "\\f"

  defp escape_char(char) do
    hex = char |> Integer.to_string(16) |> String.pad_leading(4, "0")
    ["\\u", hex]
  end
end

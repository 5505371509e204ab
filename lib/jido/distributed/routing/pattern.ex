defmodule Jido.Distributed.Routing.Pattern do
  @moduledoc """
  Signal type patterns with jido_signal's router semantics, in pure Elixir.

  A signal type is a dot-separated list of segments, such as
  `"order.item.added"`. A pattern is a type in which a whole segment may be a
  wildcard:

    * `*` matches exactly one segment;
    * `**` matches zero or more segments, and may appear at the start, in the
      middle or at the end of a pattern, more than once.

  Matching is case-sensitive and compares whole segments: `"order.*"` matches
  `"order.created"` but neither `"order"` nor `"order.item.added"`, while
  `"order.**"` matches all three.

  ## Validation

  Segments must be non-empty, so `""`, `".a"`, `"a."` and `"a..b"` are rejected
  both as patterns and as types. In a pattern, `*` may only form a whole
  segment (`"a*"` and `"***"` are rejected); a type may not contain `*` at all.
  Segment characters are not otherwise restricted.

  Two deliberate differences from jido_signal's `Router`, which does the same
  matching: it also limits segment characters to `[A-Za-z0-9_-]`, and rejects
  `**` directly followed by `**`. Here `"**.**"` is accepted and means the same
  as `"**"`.

  Invalid types match nothing: `match?/2` returns `false` for them, as the
  router does, since types arrive from the wire. An invalid pattern is a
  programming error, so `match?/2` raises for it; use `compile/1` to check one.

  ## Examples

      iex> Jido.Distributed.Routing.Pattern.match?("order.*.added", "order.item.added")
      true

      iex> Jido.Distributed.Routing.Pattern.match?("order.**", "order")
      true

      iex> Jido.Distributed.Routing.Pattern.match?("**.added", "order.item.removed")
      false

      iex> {:ok, pattern} = Jido.Distributed.Routing.Pattern.compile("audit.**.failed")
      iex> Jido.Distributed.Routing.Pattern.match?(pattern, "audit.payment.card.failed")
      true

      iex> Jido.Distributed.Routing.Pattern.compile("order..added")
      {:error, :empty_segment}
  """

  import Kernel, except: [match?: 2]

  @enforce_keys [:source, :segments, :exact?]
  defstruct [:source, :segments, :exact?]

  @typedoc "One compiled segment: a literal, `:one` for `*`, or `:any` for `**`."
  @type segment :: String.t() | :one | :any

  @typedoc """
  A compiled pattern.

    * `:source` - the pattern as written;
    * `:segments` - its segments, with `*` as `:one` and `**` as `:any`;
    * `:exact?` - `true` when the pattern has no wildcard.
  """
  @type t :: %__MODULE__{source: String.t(), segments: [segment(), ...], exact?: boolean()}

  @typedoc """
  Why a pattern or a type is invalid.

    * `:not_a_string` - it is not a binary;
    * `:empty` - it is the empty string;
    * `:empty_segment` - it starts or ends with a dot, or has two dots in a row;
    * `:partial_wildcard` - a pattern segment mixes `*` with other characters,
      or is `***` or longer;
    * `:wildcard_in_type` - a type contains `*`.
  """
  @type error_reason ::
          :not_a_string | :empty | :empty_segment | :partial_wildcard | :wildcard_in_type

  @doc """
  Compiles a pattern, or returns a compiled pattern unchanged.

      iex> {:ok, pattern} = Jido.Distributed.Routing.Pattern.compile("user.*")
      iex> pattern.segments
      ["user", :one]

      iex> Jido.Distributed.Routing.Pattern.compile("user.*x")
      {:error, :partial_wildcard}
  """
  @spec compile(String.t() | t()) :: {:ok, t()} | {:error, error_reason()}
  def compile(%__MODULE__{} = pattern), do: {:ok, pattern}
  def compile(""), do: {:error, :empty}

  def compile(pattern) when is_binary(pattern) do
    pattern
    |> :binary.split(".", [:global])
    |> compile_segments([], true)
    |> case do
      {:ok, segments, exact?} ->
        {:ok, %__MODULE__{source: pattern, segments: segments, exact?: exact?}}

      {:error, _reason} = error ->
        error
    end
  end

  def compile(_other), do: {:error, :not_a_string}

  @doc """
  Compiles a pattern like `compile/1`, raising `ArgumentError` if it is invalid.

      iex> Jido.Distributed.Routing.Pattern.compile!("a.**").exact?
      false

      iex> Jido.Distributed.Routing.Pattern.compile!("a..b")
      ** (ArgumentError) invalid signal pattern "a..b": segments cannot be empty (no leading, trailing or doubled dots)
  """
  @spec compile!(String.t() | t()) :: t()
  def compile!(pattern) do
    case compile(pattern) do
      {:ok, compiled} -> compiled
      {:error, reason} -> raise ArgumentError, message("signal pattern", pattern, reason)
    end
  end

  @doc """
  Returns `true` if `pattern` is a valid pattern (a string or a compiled one).

      iex> Jido.Distributed.Routing.Pattern.valid?("**.failed")
      true

      iex> Jido.Distributed.Routing.Pattern.valid?("a.")
      false
  """
  @spec valid?(term()) :: boolean()
  def valid?(pattern), do: Kernel.match?({:ok, _}, compile(pattern))

  @doc """
  Returns `true` if `type` matches `pattern`.

  `pattern` is a string or a compiled pattern; compile once with `compile/1`
  when matching many types. Raises `ArgumentError` for an invalid pattern and
  returns `false` for an invalid type.

      iex> Jido.Distributed.Routing.Pattern.match?("**.item.**", "item")
      true

      iex> Jido.Distributed.Routing.Pattern.match?("user.*", "User.created")
      false

      iex> Jido.Distributed.Routing.Pattern.match?("**", "a..b")
      false
  """
  @spec match?(String.t() | t(), String.t()) :: boolean()
  def match?(%__MODULE__{exact?: true, source: source}, type), do: source === type

  def match?(%__MODULE__{segments: segments}, type) when is_binary(type) do
    case split_type(type) do
      {:ok, type_segments} -> glob(segments, type_segments, nil, nil)
      {:error, _reason} -> false
    end
  end

  def match?(%__MODULE__{}, _type), do: false
  def match?(pattern, type), do: match?(compile!(pattern), type)

  @doc """
  Splits a signal type into its segments, validating it.

      iex> Jido.Distributed.Routing.Pattern.split_type("order.item.added")
      {:ok, ["order", "item", "added"]}

      iex> Jido.Distributed.Routing.Pattern.split_type("order.*")
      {:error, :wildcard_in_type}
  """
  @spec split_type(term()) :: {:ok, [String.t(), ...]} | {:error, error_reason()}
  def split_type(""), do: {:error, :empty}

  def split_type(type) when is_binary(type) do
    segments = :binary.split(type, ".", [:global])

    cond do
      :binary.match(type, "*") != :nomatch -> {:error, :wildcard_in_type}
      :lists.member("", segments) -> {:error, :empty_segment}
      true -> {:ok, segments}
    end
  end

  def split_type(_type), do: {:error, :not_a_string}

  @doc """
  Validates a signal type: a non-empty string of non-empty segments without `*`.

      iex> Jido.Distributed.Routing.Pattern.validate_type("order.created")
      :ok

      iex> Jido.Distributed.Routing.Pattern.validate_type(".order")
      {:error, :empty_segment}
  """
  @spec validate_type(term()) :: :ok | {:error, error_reason()}
  def validate_type(type) do
    case split_type(type) do
      {:ok, _segments} -> :ok
      {:error, _reason} = error -> error
    end
  end

  @doc """
  Returns `true` if `type` is a valid signal type (see `validate_type/1`).

      iex> Jido.Distributed.Routing.Pattern.valid_type?("order.created")
      true

      iex> Jido.Distributed.Routing.Pattern.valid_type?("order.*")
      false
  """
  @spec valid_type?(term()) :: boolean()
  def valid_type?(type), do: validate_type(type) == :ok

  @doc """
  Returns a readable explanation of an `t:error_reason/0`.

      iex> Jido.Distributed.Routing.Pattern.format_error(:partial_wildcard)
      "a wildcard must be a whole segment, either * or **"
  """
  @spec format_error(error_reason()) :: String.t()
  def format_error(:not_a_string), do: "it must be a string"
  def format_error(:empty), do: "it cannot be empty"

  def format_error(:empty_segment),
    do: "segments cannot be empty (no leading, trailing or doubled dots)"

  def format_error(:partial_wildcard), do: "a wildcard must be a whole segment, either * or **"
  def format_error(:wildcard_in_type), do: "a signal type cannot contain wildcards"

  defp message(what, value, reason),
    do: "invalid #{what} #{inspect(value)}: #{format_error(reason)}"

  defp compile_segments([], acc, exact?), do: {:ok, :lists.reverse(acc), exact?}
  defp compile_segments(["" | _], _acc, _exact?), do: {:error, :empty_segment}

  defp compile_segments(["*" | rest], acc, _exact?),
    do: compile_segments(rest, [:one | acc], false)

  defp compile_segments(["**" | rest], acc, _exact?),
    do: compile_segments(rest, [:any | acc], false)

  defp compile_segments([segment | rest], acc, exact?) do
    case :binary.match(segment, "*") do
      :nomatch -> compile_segments(rest, [segment | acc], exact?)
      _found -> {:error, :partial_wildcard}
    end
  end

  # Wildcard matching in one pass with a single backtrack point: on a
  # mismatch, the most recent `**` takes one more segment and matching resumes
  # after it. Only the latest `**` needs to be retried, since any longer
  # stretch an earlier `**` could take can be taken by the later one instead,
  # so this is O(pattern * type) in the worst case and linear in practice.
  # `back` is the pattern after that `**`, `back_type` where it resumed.
  defp glob([:any], _type, _back, _back_type), do: true
  defp glob([:any | rest], type, _back, _back_type), do: glob(rest, type, rest, type)
  defp glob([:one | rest], [_ | type], back, back_type), do: glob(rest, type, back, back_type)
  defp glob([seg | rest], [seg | type], back, back_type), do: glob(rest, type, back, back_type)
  defp glob([], [], _back, _back_type), do: true
  defp glob(_pattern, _type, nil, _back_type), do: false
  defp glob(_pattern, _type, back, [_ | type]), do: glob(back, type, back, type)
  defp glob(_pattern, _type, _back, []), do: false
end

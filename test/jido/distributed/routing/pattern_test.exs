defmodule Jido.Distributed.Routing.PatternTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Routing.Pattern

  alias Jido.Distributed.Routing.Pattern

  # {pattern, type, matches?} - jido_signal router semantics.
  @cases [
    # exact
    {"user.created", "user.created", true},
    {"user.created", "user.updated", false},
    {"user.created", "user", false},
    {"user.created", "user.created.v1", false},
    {"user", "user", true},
    {"a.b.c.d.e", "a.b.c.d.e", true},
    # case sensitivity
    {"user.created", "User.created", false},
    {"User.*", "user.created", false},
    {"user.*", "user.Created", true},
    # `*` matches exactly one segment
    {"user.*", "user.created", true},
    {"user.*", "user", false},
    {"user.*", "user.profile.updated", false},
    {"*", "user", true},
    {"*", "user.created", false},
    {"*.created", "user.created", true},
    {"*.created", "created", false},
    {"user.*.updated", "user.profile.updated", true},
    {"user.*.updated", "user.updated", false},
    {"*.*", "a.b", true},
    {"*.*", "a.b.c", false},
    # `**` at the end
    {"user.**", "user.created", true},
    {"user.**", "user.profile.updated", true},
    {"user.**", "user", true},
    {"user.**", "users.created", false},
    {"**", "a", true},
    {"**", "a.b.c.d", true},
    # `**` at the start
    {"**.created", "user.created", true},
    {"**.created", "created", true},
    {"**.created", "org.user.created", true},
    {"**.created", "user.created.v1", false},
    # `**` in the middle
    {"user.**.updated", "user.updated", true},
    {"user.**.updated", "user.profile.updated", true},
    {"user.**.updated", "user.profile.email.updated", true},
    {"user.**.updated", "user.profile.deleted", false},
    {"user.**.updated", "admin.profile.updated", false},
    # several `**`
    {"**.item.**", "item", true},
    {"**.item.**", "order.item.added", true},
    {"**.item.**", "order.items.added", false},
    {"a.**.b.**.c", "a.b.c", true},
    {"a.**.b.**.c", "a.x.b.y.z.c", true},
    {"a.**.b.**.c", "a.x.c.b", false},
    {"**.**", "a", true},
    {"**.**.**.a", "x.y.z.a", true},
    {"**.**.**.a", "x.y.z.b", false},
    # `*` and `**` together
    {"*.**", "a", true},
    {"*.**", "a.b.c", true},
    {"**.*", "a", true},
    {"*.**.*", "a", false},
    {"*.**.*", "a.b", true},
    {"*.**.*", "a.b.c.d", true},
    {"**.*.b", "b", false},
    {"**.*.b", "a.b", true},
    {"**.a.*", "a.a.a", true},
    {"order.*.**.done", "order.1.done", true},
    {"order.*.**.done", "order.done", false},
    # literals that look special
    {"a-b.c_d", "a-b.c_d", true},
    {"v1.2", "v1.2", true},
    # invalid types match nothing
    {"**", "a..b", false},
    {"**", ".a", false},
    {"**", "a.", false},
    {"**", "", false},
    {"*", "*", false},
    {"a.**", "a.**", false}
  ]

  describe "match?/2" do
    for {{pattern, type, expected}, i} <- Enum.with_index(@cases) do
      test "##{i}: #{inspect(pattern)} vs #{inspect(type)} is #{expected}" do
        assert Pattern.match?(unquote(pattern), unquote(type)) == unquote(expected)
        compiled = Pattern.compile!(unquote(pattern))
        assert Pattern.match?(compiled, unquote(type)) == unquote(expected)
        assert reference_match?(unquote(pattern), unquote(type)) == unquote(expected)
      end
    end

    test "returns false for a type that is not a string" do
      refute Pattern.match?("**", nil)
      refute Pattern.match?("a", :a)
      refute Pattern.match?(Pattern.compile!("a"), 'a')
    end

    test "raises for an invalid pattern" do
      assert_raise ArgumentError, ~r/invalid signal pattern "a\.\.b"/, fn ->
        Pattern.match?("a..b", "a.b")
      end
    end

    test "stays fast on patterns with many `**`" do
      pattern = Pattern.compile!(Enum.join(List.duplicate("**", 30), ".") <> ".a")
      type = Enum.join(List.duplicate("x", 300), ".") <> ".b"
      {micros, false} = :timer.tc(fn -> Pattern.match?(pattern, type) end)
      # The naive recursive matcher would take longer than the universe's age.
      assert micros < 1_000_000
    end

    test "agrees with a reference matcher on random patterns and types" do
      :rand.seed(:exsss, {7, 11, 13})

      for _ <- 1..3000 do
        pattern = random_pattern()
        type = random_type()

        assert Pattern.match?(pattern, type) == reference_match?(pattern, type),
               "#{pattern} vs #{type}"
      end
    end
  end

  describe "compile/1" do
    test "compiles segments and keeps the source" do
      assert {:ok, %Pattern{source: "a.*.**.b", segments: ["a", :one, :any, "b"], exact?: false}} =
               Pattern.compile("a.*.**.b")

      assert {:ok, %Pattern{segments: ["a", "b"], exact?: true}} = Pattern.compile("a.b")
    end

    test "returns a compiled pattern unchanged" do
      compiled = Pattern.compile!("a.*")
      assert Pattern.compile(compiled) == {:ok, compiled}
    end

    for {pattern, reason} <- [
          {"", :empty},
          {".", :empty_segment},
          {".a", :empty_segment},
          {"a.", :empty_segment},
          {"a..b", :empty_segment},
          {"a.*.", :empty_segment},
          {"**..a", :empty_segment},
          {"a*", :partial_wildcard},
          {"*a", :partial_wildcard},
          {"a.***", :partial_wildcard},
          {"a.b*c.d", :partial_wildcard},
          {nil, :not_a_string},
          {:a, :not_a_string},
          {'a.b', :not_a_string}
        ] do
      test "rejects #{inspect(pattern)} with #{inspect(reason)}" do
        assert Pattern.compile(unquote(pattern)) == {:error, unquote(reason)}
        refute Pattern.valid?(unquote(pattern))

        assert_raise ArgumentError, ~r/^invalid signal pattern .+: .+/, fn ->
          Pattern.compile!(unquote(pattern))
        end
      end
    end

    test "compile!/1 names the pattern and the problem" do
      assert_raise ArgumentError,
                   ~s(invalid signal pattern "a.b*": a wildcard must be a whole segment, either * or **),
                   fn -> Pattern.compile!("a.b*") end
    end

    test "valid?/1 accepts every wildcard position" do
      for p <- ["a", "*", "**", "a.*", "*.a", "a.**", "**.a", "a.**.b", "**.**", "*.**.*"] do
        assert Pattern.valid?(p), p
      end
    end
  end

  describe "types" do
    test "validate_type/1 accepts plain dotted types" do
      for t <- ["a", "a.b", "order.item.added", "A-1.b_2.3"],
          do: assert(Pattern.validate_type(t) == :ok)
    end

    test "validate_type/1 rejects wildcards and empty segments" do
      assert Pattern.validate_type("") == {:error, :empty}
      assert Pattern.validate_type("a..b") == {:error, :empty_segment}
      assert Pattern.validate_type(".a") == {:error, :empty_segment}
      assert Pattern.validate_type("a.") == {:error, :empty_segment}
      assert Pattern.validate_type("a.*") == {:error, :wildcard_in_type}
      assert Pattern.validate_type("a.**") == {:error, :wildcard_in_type}
      assert Pattern.validate_type("a.b*") == {:error, :wildcard_in_type}
      assert Pattern.validate_type(:a) == {:error, :not_a_string}
      refute Pattern.valid_type?("a.*")
      assert Pattern.valid_type?("a.b")
    end

    test "split_type/1 returns the segments" do
      assert Pattern.split_type("a.b.c") == {:ok, ["a", "b", "c"]}
      assert Pattern.split_type("a") == {:ok, ["a"]}
    end
  end

  # The semantics stated directly, exponential in the worst case: fine for
  # short inputs, and independent of the implementation under test.
  defp reference_match?(pattern, type) do
    type_segments = String.split(type, ".")

    if type == "" or "" in type_segments or String.contains?(type, "*") do
      false
    else
      ref(String.split(pattern, "."), type_segments)
    end
  end

  defp ref([], []), do: true
  defp ref(["**" | p], t), do: ref(p, t) or (t != [] and ref(["**" | p], tl(t)))
  defp ref(["*" | p], [_ | t]), do: ref(p, t)
  defp ref([s | p], [s | t]), do: ref(p, t)
  defp ref(_p, _t), do: false

  @alphabet ["a", "b", "c"]

  defp random_pattern do
    Enum.map_join(1..:rand.uniform(5), ".", fn _ ->
      case :rand.uniform(6) do
        1 -> "*"
        2 -> "**"
        _ -> Enum.random(@alphabet)
      end
    end)
  end

  defp random_type do
    Enum.map_join(1..:rand.uniform(6), ".", fn _ -> Enum.random(@alphabet) end)
  end
end

defmodule Jido.Distributed.OptionsTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Options

  alias Jido.Distributed.Options

  test "defaults fill nested keyword lists" do
    opts = Options.validate!([])
    assert opts[:link][:overflow] == :reject
    assert opts[:link][:linger_ms] == 3
    assert opts[:relay] == nil
    assert opts[:location] == [region: nil, zone: nil, rack: nil]
  end

  test "errors name the key and the bad value" do
    assert_raise ArgumentError,
                 "the :link :overflow option must be one of [:reject, :drop_oldest], got: :spill",
                 fn ->
                   Options.validate!(link: [overflow: :spill])
                 end

    assert_raise ArgumentError, ~r/unknown option :bogus in the :link option/, fn ->
      Options.validate!(link: [bogus: 1])
    end

    assert_raise ArgumentError, ~r/unknown option :nope/, fn -> Options.validate!(nope: 1) end

    assert_raise ArgumentError, "the :link option must be a keyword list, got: 5", fn ->
      Options.validate!(link: 5)
    end
  end

  test "known_nodes takes well-formed node names only" do
    assert Options.validate!([])[:known_nodes] == []

    assert Options.validate!(known_nodes: [:a@h, :"b-1@h.example"])[:known_nodes] == [
             :a@h,
             :"b-1@h.example"
           ]

    for bad <- [:a@h, [:a@b@c], [:nohost@], ["a@h"], [:noatsign]] do
      assert_raise ArgumentError,
                   ~s(the :known_nodes option must be a list of node names (atoms such as :"app@host"\), got: ) <>
                     inspect(bad),
                   fn -> Options.validate!(known_nodes: bad) end
    end
  end

  test "docs list every key" do
    docs = Options.docs()
    for {key, _} <- Options.schema(), do: assert(docs =~ inspect(key))
  end
end

defmodule Jido.Distributed.Directory.WireTest do
  use ExUnit.Case, async: true

  alias Jido.Distributed.Directory.Wire

  doctest Wire

  # A pid of another node, made without starting one (NEW_PID_EXT).
  defp remote_pid(node \\ "other@host", id \\ 1) do
    :erlang.binary_to_term(
      <<131, 88, 100, byte_size(node)::16, node::binary, id::32, 0::32, 1::32>>
    )
  end

  test "messages of another node's Directory round-trip" do
    from = remote_pid()
    agent = remote_pid("other@host", 2)
    ref = make_ref()

    assert Wire.parse(Wire.subscribe(from, ref)) == {:ok, {:subscribe, from, ref}, 0}

    labels = %{region: "eu"}
    entries = [{"a", agent, ["x.*", "y"], 1.5}]

    assert Wire.parse(Wire.snapshot(from, ref, labels, entries)) ==
             {:ok, {:snapshot, from, ref, %{region: "eu", zone: nil, rack: nil}, entries}, 0}

    ops = [{:put, "a", agent, ["x.*"], 2}, {:load, "a", 0.5}, {:del, "a"}]
    assert Wire.parse(Wire.delta(from, ops)) == {:ok, {:delta, from, ops}, 0}
  end

  test "bad entries and ops are left out and counted; good ones are kept" do
    from = remote_pid()
    agent = remote_pid("other@host", 2)
    elsewhere = remote_pid("third@host", 3)
    ref = make_ref()

    entries = [
      {"ok", agent, ["x.*", "bad..pattern", 7], :not_a_load},
      {"local pid", self(), ["x"], 0},
      {"other node", elsewhere, ["x"], 0},
      {"no list", agent, "x", 0},
      :garbage
    ]

    assert {:ok, {:snapshot, ^from, ^ref, nil, [{"ok", ^agent, ["x.*"], 0}]}, 4} =
             Wire.parse({:"$jido_directory", :snapshot, from, ref, %{planet: "mars"}, entries})

    ops = [
      {:load, "a", -1},
      {:load, "a", 3},
      {:put, "b", elsewhere, [], 0},
      {:what, 1},
      {:del, "c"}
    ]

    assert Wire.parse(Wire.delta(from, ops)) ==
             {:ok, {:delta, from, [{:load, "a", 3}, {:del, "c"}]}, 3}
  end

  test "messages of the wrong shape are refused by kind, never raise" do
    from = remote_pid()
    ref = make_ref()

    assert Wire.parse({:"$jido_directory", :subscribe, self(), ref}) == {:error, :bad_subscribe}
    assert Wire.parse({:"$jido_directory", :subscribe, from, :ref}) == {:error, :bad_subscribe}

    assert Wire.parse({:"$jido_directory", :snapshot, from, ref, %{}, :x}) ==
             {:error, :bad_snapshot}

    assert Wire.parse({:"$jido_directory", :snapshot, :pid, ref, %{}, []}) ==
             {:error, :bad_snapshot}

    assert Wire.parse({:"$jido_directory", :delta, :pid, []}) == {:error, :bad_delta}
    assert Wire.parse({:"$jido_directory", :subscribe}) == {:error, :unexpected}
    assert Wire.parse({:"$jido_directory"}) == {:error, :unexpected}
    assert Wire.parse(:hello) == :other
    assert Wire.parse({}) == :other
  end

  test "requests: registration of a local pid with valid patterns and a load; load updates" do
    assert Wire.parse_call(Wire.register("a", self(), [], 0)) ==
             {:ok, {:register, {"a", self(), [], 0}}}

    assert Wire.parse_call({:register, "a", self(), ["x"], -1}) == {:error, :bad_call}
    pid = remote_pid()
    assert Wire.parse_call({:register, "a", pid, ["x"], 0}) == {:error, {:not_local, pid}}
    assert Wire.parse_call({:register, "a", :pid, ["x"], 0}) == {:error, :bad_call}
    assert Wire.parse_call(Wire.update_load("a", 0.5)) == {:ok, {:update_load, "a", 0.5}}
    assert Wire.parse_call({:update_load, "a", :busy}) == {:error, :bad_call}
    assert Wire.parse_call(Wire.unregister("a")) == {:ok, {:unregister, "a"}}
    assert Wire.parse_call({:register, "a", self(), "x", 0}) == {:error, :bad_call}
    assert Wire.parse_call(:peers?) == {:error, :bad_call}
  end

  test "loads" do
    assert Wire.load?(0) and Wire.load?(2.5)
    refute Wire.load?(-0.1) or Wire.load?(:x) or Wire.load?(nil)
  end
end

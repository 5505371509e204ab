defmodule Jido.Distributed.Broadcast.BatchTest do
  # Node-free: the test process's own mailbox stands in for the server's.
  use ExUnit.Case, async: true

  alias Jido.Distributed.Broadcast.{Batch, Wire}

  @tree {:a@h, [{:b@h, []}]}

  defp start(n, opts \\ []) do
    Wire.start(
      {:a@h, 1, n},
      %{id: n, type: "t"},
      Keyword.get(opts, :size, 10),
      Keyword.get(opts, :tree, @tree),
      1_000,
      4
    )
  end

  defp ids(entries), do: for({{_, _, n}, _, _} <- entries, do: n)

  test "takes the queued starts of the same tree, in order, calls and casts" do
    from = {self(), make_ref()}
    send(self(), {:"$gen_cast", start(2)})
    send(self(), {:"$gen_call", from, start(3)})
    {entries, nil} = Batch.collect(start(1), nil)
    assert ids(entries) == [1, 2, 3]
    assert [{_, _, nil}, {_, _, nil}, {_, _, ^from}] = entries
  end

  test "a start for another tree ends the batch and is returned" do
    send(self(), {:"$gen_cast", start(2)})
    other = start(3, tree: {:a@h, []})
    send(self(), {:"$gen_cast", other})
    send(self(), {:"$gen_cast", start(4)})
    assert {entries, {^other, nil}} = Batch.collect(start(1), nil)
    assert ids(entries) == [1, 2]
    assert_received {:"$gen_cast", {:start, {_, _, 4}, _, _, _, _, _}}
  end

  test "at most max_batch broadcasts and max_batch_bytes bytes" do
    for n <- 2..(Batch.max_batch() + 1), do: send(self(), {:"$gen_cast", start(n)})
    {entries, nil} = Batch.collect(start(1), nil)
    assert length(entries) == Batch.max_batch()

    last = Batch.max_batch() + 1

    assert_received {:"$gen_cast", {:start, {_, _, ^last}, _, _, _, _, _}}

    big = start(3, size: Batch.max_batch_bytes())
    send(self(), {:"$gen_cast", start(2, size: 1)})
    send(self(), {:"$gen_cast", big})
    assert {entries, {^big, nil}} = Batch.collect(start(1, size: 0), nil)
    assert ids(entries) == [1, 2]
  end

  test "a queued start with a bad id is not taken into the batch" do
    bad = put_elem(start(2), 1, {:a@h, -1, 0})
    send(self(), {:"$gen_cast", bad})
    assert {[_], {^bad, nil}} = Batch.collect(start(1), nil)
  end
end

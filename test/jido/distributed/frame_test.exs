defmodule Jido.Distributed.FrameTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed.Frame

  alias Jido.Distributed.{Frame, Native}
  require Native

  defp signal(i) do
    %{
      id: "00000000-0000-4000-8000-#{String.pad_leading(Integer.to_string(i), 12, "0")}",
      type: "order.item.added",
      source: "/agents/#{rem(i, 50)}",
      data: %{sku: "SKU-#{i}", qty: rem(i, 7), tags: [:a, :b], price: i * 1.5}
    }
  end

  test "round-trips terms of every kind, compressed or not" do
    terms = [
      signal(1),
      self(),
      make_ref(),
      {:tuple, 1, 2.5, "bin", <<1::3>>},
      [],
      %{},
      String.duplicate("x", 100_000),
      fn -> :ok end
    ]

    for mode <- [:auto, :lz4, :none] do
      assert {:ok, frame} = Frame.encode(terms, compression: mode)
      assert {:ok, ^terms} = Frame.decode(frame)
    end
  end

  test "large frames round-trip (dirty schedulers) and compress" do
    signals = Enum.map(1..5_000, &signal/1)
    assert {:ok, frame} = Frame.encode(signals)
    assert byte_size(frame) < byte_size(:erlang.term_to_binary(signals))
    assert {:ok, %{count: 5_000, compressed: true}} = Frame.header(frame)
    assert {:ok, ^signals} = Frame.decode(frame)
  end

  test "encode_binaries frames pre-encoded terms" do
    bins = Enum.map(1..10, &:erlang.term_to_binary(signal(&1)))
    assert {:ok, frame} = Frame.encode_binaries(bins)
    assert {:ok, decoded} = Frame.decode(frame)
    assert decoded == Enum.map(1..10, &signal/1)
    assert {:error, :bad_term} = Frame.encode_binaries([:not_a_binary])
  end

  test "rejects truncated, corrupted, oversized and foreign binaries" do
    {:ok, frame} = Frame.encode(Enum.map(1..20, &signal/1))
    size = byte_size(frame)

    assert {:error, :truncated} = Frame.decode(binary_part(frame, 0, 10))
    assert {:error, :truncated} = Frame.decode(binary_part(frame, 0, size - 1))
    assert {:error, :trailing_bytes} = Frame.decode(frame <> <<0>>)
    assert {:error, :bad_magic} = Frame.decode(:erlang.term_to_binary(:hello))
    assert {:error, :truncated} = Frame.decode("")
    assert {:error, :too_large} = Frame.decode(frame, max_decoded_size: 100)

    <<head::binary-size(size - 1), last>> = frame
    assert {:error, :checksum_mismatch} = Frame.decode(head <> <<Bitwise.bxor(last, 0xFF)>>)
  end

  test "terms are decoded safely: unknown atoms are refused" do
    atom_name = "jido_never_seen_#{System.unique_integer([:positive])}"
    # External term format of a brand-new atom, built by hand.
    entry = <<131, 119, byte_size(atom_name)>> <> atom_name
    {:ok, frame} = Frame.encode_binaries([entry], compression: :none)
    assert {:error, :bad_term} = Frame.decode(frame)
    assert_raise ArgumentError, fn -> String.to_existing_atom(atom_name) end
  end

  test "bad options raise clear errors" do
    assert_raise ArgumentError, ~r/:compression option must be/, fn ->
      Frame.encode([1], compression: :zstd)
    end

    assert_raise ArgumentError, ~r/:max_decoded_size option must be/, fn ->
      Frame.decode("x", max_decoded_size: -1)
    end
  end

  test "100_000 random and mutated binaries never crash the decoder" do
    seeds =
      for n <- [1, 5, 50],
          mode <- [:lz4, :none],
          do: elem(Frame.encode(Enum.map(1..n, &signal/1), compression: mode), 1)

    :rand.seed(:exsss, {1, 2, 3})

    results =
      for i <- 1..100_000 do
        input =
          case rem(i, 3) do
            0 -> :crypto.strong_rand_bytes(:rand.uniform(64))
            _ -> mutate(Enum.at(seeds, rem(i, length(seeds))), rem(i, 2) == 0)
          end

        case Frame.decode(input, max_decoded_size: 1_000_000) do
          {:ok, list} when is_list(list) -> :ok
          {:error, reason} when is_atom(reason) -> reason
        end
      end

    assert Enum.count(results, &(&1 != :ok)) > 90_000
  end

  defp mutate(frame, truncate?) do
    bytes = :binary.bin_to_list(frame)
    pos = :rand.uniform(length(bytes)) - 1
    bytes = List.replace_at(bytes, pos, :rand.uniform(256) - 1)
    bin = :binary.list_to_bin(bytes)
    if truncate?, do: binary_part(bin, 0, :rand.uniform(byte_size(bin))), else: bin
  end

  describe "atoms" do
    test "encode_with_atoms and atoms list the same atoms, Unicode names included" do
      term = %{:日本 => :ok, :plain => [:ünï, {:x, "y"}], "s" => self()}
      {:ok, frame, atoms} = Frame.encode_with_atoms([term, :extra])
      assert {:ok, listed} = Frame.atoms(frame)
      assert Enum.sort(listed) == Enum.sort(atoms)
      assert Frame.decode(frame) == {:ok, [term, :extra]}

      assert Enum.sort(atoms) ==
               Enum.sort([:日本, :ok, :plain, :ünï, :x, :extra, node()])
    end

    test "encode_with_atoms lists the atoms of plain terms, deep, wide or improper ones too" do
      deep = Enum.reduce(1..100, :bottom, &{&1, [&2]})
      wide = Map.new(1..100, &{:"wide_key_#{&1}", &1})
      improper = [:a, [:b | :c], {:d, %{e: [1.5, "f" | :g]}}]

      for terms <- [[improper], [deep], [wide], [%{}, [], {}, 1, "x"], [true, nil, false]] do
        {:ok, frame, atoms} = Frame.encode_with_atoms(terms)
        assert {:ok, listed} = Frame.atoms(frame)
        assert Enum.sort(atoms) == Enum.sort(listed)
        assert length(atoms) == length(Enum.uniq(atoms))
        assert Frame.decode(frame) == {:ok, terms}
      end
    end

    test "atoms of a broken frame is an error" do
      assert Frame.atoms("nope") == {:error, :bad_magic}
    end
  end

  describe "native errors and scheduling" do
    test "error_reason/0 lists exactly the reasons the NIF names from its Rust enums" do
      {:ok, types} = Code.Typespec.fetch_types(Frame)

      [union] = for {:type, {:error_reason, {:type, _, :union, atoms}, []}} <- types, do: atoms

      typed = Enum.sort(for {:atom, _, name} <- union, do: name)
      names = Map.new(Native.error_names(), fn {domain, names} -> {domain, names} end)
      from_rust = Enum.map(names["frame"] ++ ["bad_term"], &String.to_atom/1)
      assert typed == Enum.sort(from_rust)
      assert "buffer_full" in names["push"] and "bad_fanout" in names["plan"]
    end

    # The sizes are jido_core::schedule::{ENCODE_ENTRIES, DECODE_BYTES}.
    test "a normal-scheduler NIF hands large work to its dirty twin" do
      assert {:ok, _} = Native.frame_encode(Enum.to_list(1..64), :auto)
      assert :dirty = Native.frame_encode(Enum.to_list(1..65), :auto)
      assert :dirty = Native.frame_encode_binaries(List.duplicate("x", 65), :auto)
      assert :dirty = Native.frame_encode_atoms(Enum.to_list(1..65), :auto)

      {:ok, big} = Frame.encode([:crypto.strong_rand_bytes(70_000)], compression: :none)
      assert :dirty = Native.frame_decode(big, 1_000_000)
      assert :dirty = Native.frame_atoms(big, 1_000_000)
      assert {:ok, [_]} = Native.frame_decode_dirty(big, 1_000_000)
      assert {:ok, [_]} = Frame.decode(big)
      assert {:ok, []} = Frame.atoms(big)
    end

    test "scheduled/1 evaluates each argument once, whichever twin runs" do
      for n <- [1, 65] do
        terms = Native.scheduled(Native.frame_encode(tap_send(Enum.to_list(1..n)), :auto))
        assert {:ok, frame} = terms
        assert {:ok, %{count: ^n}} = Frame.header(frame)
        assert_received {:evaluated, _}
        refute_received {:evaluated, _}
      end
    end

    test "the fast paths accept what the option schemas accept, and nothing else" do
      {:ok, frame} = Frame.encode([1], compression: :none)
      assert {:ok, %{compressed: false}} = Frame.header(frame)
      assert {:ok, [1]} = Frame.decode(frame, max_decoded_size: 100)
      assert {:ok, [1]} = Frame.decode(frame, max_decoded_size: nil)
      assert {:error, :too_large} = Frame.decode(frame, max_decoded_size: 0)

      assert_raise ArgumentError, ~r/unknown option :level/, fn ->
        Frame.encode([1], level: 3)
      end

      assert_raise ArgumentError, ~r/:max_decoded_size option must be/, fn ->
        Frame.atoms(frame, max_decoded_size: :big)
      end
    end
  end

  defp tap_send(value) do
    send(self(), {:evaluated, value})
    value
  end
end

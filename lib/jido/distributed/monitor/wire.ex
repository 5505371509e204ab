defmodule Jido.Distributed.Monitor.Wire do
  @moduledoc """
  Every message the Monitor exchanges with other nodes, built and checked
  here.

  ## Heartbeats (UDP)

  A heartbeat is one UDP datagram, sent every `:heartbeat_ms` to every
  peer, so that liveness never queues behind data frames on the
  distribution connection and is seen again the moment a partition heals:

      "JH" version:8 seq:32 ack:32 from_len:8 from mac:12

  `seq` counts this sender's heartbeats to that peer, `ack` is the last
  `seq` the sender heard *from* that peer (0 for none, which tells the
  peer its heartbeats do not arrive). `mac` is HMAC-SHA256 over everything
  before it followed by the recipient's name (which is not sent: about 70
  bytes a datagram on the wire), keyed with the cookie the two nodes share
  (`:erlang.get_cookie/1`), truncated to 12 bytes: a datagram from a node
  without the cookie, or meant for another node, is refused.

  ## Over distribution

    * `{:jido_mon, :hello, from, udp_port, reply?}` - the sender's heartbeat
      port, 0 for none (`reply?`: answer with yours);
    * `{:jido_mon, :ping, from, ref, sent_us}` / `{:jido_mon, :pong, from,
      ref, sent_us}` - RTT probes (the reply echoes `sent_us`);
    * `{:jido_mon, :beat, from}` - a heartbeat over distribution, for a
      peer that does not hear our UDP heartbeats;
    * `{:jido_mon, :probe, from, ref, target}` / `{:jido_mon, :probe_ack,
      from, ref, target, heard_ms}` - indirect probe: when did you last
      hear `target`;
    * `{:jido_mon, :row, from, %{node => srtt_us}}` - the sender's row of
      the latency matrix.

  `check/1` validates such a message; anything else is `:error`.
  """

  @version 1
  @mac_bytes 12

  @typedoc "A checked message from another node's Monitor."
  @type message ::
          {:hello, node(), :inet.port_number(), boolean()}
          | {:ping | :pong, node(), reference(), integer()}
          | {:beat, node()}
          | {:probe, node(), reference(), node()}
          | {:probe_ack, node(), reference(), node(), non_neg_integer() | nil}
          | {:row, node(), %{node() => number()}}

  @doc """
  The heartbeat datagram from `from` to `to`.

      iex> alias Jido.Distributed.Monitor.Wire
      iex> bin = Wire.heartbeat(:"a@h", :"b@h", 7, 3, "secret")
      iex> Wire.parse_heartbeat(bin, :"b@h", fn :"a@h" -> "secret" end)
      {:ok, %{from: :"a@h", seq: 7, ack: 3}}
      iex> Wire.parse_heartbeat(bin, :"b@h", fn _ -> "other" end)
      {:error, :bad_mac}
      iex> Wire.parse_heartbeat(bin, :"c@h", fn _ -> "secret" end)
      {:error, :bad_mac}
  """
  @spec heartbeat(node(), node(), non_neg_integer(), non_neg_integer(), binary()) :: binary()
  def heartbeat(from, to, seq, ack, key) do
    from = Atom.to_string(from)
    body = <<"JH", @version, seq::32, ack::32, byte_size(from)::8, from::binary>>
    body <> mac(key, [body | Atom.to_string(to)])
  end

  @doc """
  Checks a heartbeat datagram received by `me`. `key_for` gives the shared
  key for the claimed sender (`nil` to refuse it). The sender's name must
  be an existing atom (a datagram never creates atoms).
  """
  @spec parse_heartbeat(binary(), node(), (node() -> binary() | nil)) ::
          {:ok, %{from: node(), seq: non_neg_integer(), ack: non_neg_integer()}}
          | {:error, :malformed | :unknown_node | :bad_mac}
  def parse_heartbeat(bin, me, key_for) when is_binary(bin) do
    with <<"JH", @version, seq::32, ack::32, fl::8, from::binary-size(fl),
           mac::binary-size(@mac_bytes)>> <- bin,
         {:ok, from_node} <- existing_node(from),
         key when is_binary(key) <- key_for.(from_node) || {:error, :unknown_node},
         body = binary_part(bin, 0, byte_size(bin) - @mac_bytes),
         expected = mac(key, [body | Atom.to_string(me)]),
         true <- :crypto.hash_equals(expected, mac) || {:error, :bad_mac} do
      {:ok, %{from: from_node, seq: seq, ack: ack}}
    else
      {:error, _} = error -> error
      _ -> {:error, :malformed}
    end
  end

  def parse_heartbeat(_bin, _me, _key_for), do: {:error, :malformed}

  @doc "The key two nodes share: the cookie this node uses toward `node`, as a binary."
  @spec key(node()) :: binary()
  def key(node), do: Atom.to_string(:erlang.get_cookie(node))

  defp mac(key, body), do: binary_part(:crypto.mac(:hmac, :sha256, key, body), 0, @mac_bytes)

  defp existing_node(name) do
    {:ok, String.to_existing_atom(name)}
  rescue
    ArgumentError -> {:error, :unknown_node}
  end

  @doc "Builds a distribution message (see the module doc)."
  @spec build(message()) :: tuple()
  def build(message) when is_tuple(message), do: Tuple.insert_at(message, 0, :jido_mon)

  @doc """
  Checks a message received over distribution.

      iex> alias Jido.Distributed.Monitor.Wire
      iex> Wire.check(Wire.build({:hello, :"a@h", 4000, true}))
      {:ok, {:hello, :"a@h", 4000, true}}
      iex> Wire.check({:jido_mon, :hello, "a@h", 4000, true})
      :error
      iex> Wire.check({:jido_mon, :row, :"a@h", %{:"b@h" => -1}})
      :error
  """
  @spec check(term()) :: {:ok, message()} | :error
  def check({:jido_mon, :hello, from, port, reply?} = m)
      when is_atom(from) and is_integer(port) and port in 0..65_535 and is_boolean(reply?),
      do: ok(m)

  def check({:jido_mon, kind, from, ref, sent} = m)
      when kind in [:ping, :pong] and is_atom(from) and is_reference(ref) and is_integer(sent),
      do: ok(m)

  def check({:jido_mon, :beat, from} = m) when is_atom(from), do: ok(m)

  def check({:jido_mon, :probe, from, ref, target} = m)
      when is_atom(from) and is_reference(ref) and is_atom(target),
      do: ok(m)

  def check({:jido_mon, :probe_ack, from, ref, target, heard} = m)
      when is_atom(from) and is_reference(ref) and is_atom(target) and
             (heard == nil or (is_integer(heard) and heard >= 0)),
      do: ok(m)

  def check({:jido_mon, :row, from, row} = m) when is_atom(from) and is_map(row) do
    if map_size(row) <= 4_096 and
         Enum.all?(row, fn {n, rtt} -> is_atom(n) and is_number(rtt) and rtt >= 0 end),
       do: ok(m),
       else: :error
  end

  def check(_other), do: :error

  defp ok(message), do: {:ok, Tuple.delete_at(message, 0)}
end

defmodule Jido.Distributed.Transport.Wire do
  @moduledoc """
  Every message the transport sends between nodes, built and matched here
  and nowhere else: the wire protocol of Links and Receivers.

    * **frame** - a Link to the Receiver of the node it serves:
      `{:jido_frame, link, epoch, seq, base, frame, atoms}`. `link` is the
      sending Link's pid (its node is the frame's origin), `epoch` the
      sender's buffer epoch, `seq` the frame's sequence number, `base` the
      oldest frame the sender still holds (frames below it were acked or
      dropped), `frame` the `Jido.Distributed.Frame` bytes and `atoms` the
      atoms its entries contain (receiving the message makes the
      distribution layer create them, so a safe decode accepts them).
    * **ack** - a Receiver straight to the Link that sent the frames:
      `{:jido_ack, epoch, upto, gap?}`, cumulative up to frame `upto` of
      `epoch`; `gap?` asks for everything after `upto` again.

  Both are sent with `:noconnect`: the transport never sets up a connection
  by sending (Links reconnect on their own schedule), and a message lost
  with a connection is covered by retransmission. An ack to a Link that
  has since restarted is lost too: the new Link sends its unacked frames
  again at start, and the Receiver acks those to it.

  Messages from other nodes are hostile input: `parse_frame/1` and
  `parse_ack/1` accept only the exact shapes, with every field checked.
  """

  @typedoc "A frame message on the wire."
  @type frame_message ::
          {:jido_frame, pid(), pos_integer(), pos_integer(), pos_integer(), binary(), [atom()]}

  @typedoc "An ack message on the wire."
  @type ack_message :: {:jido_ack, pos_integer(), non_neg_integer(), boolean()}

  @typedoc "A parsed ack."
  @type ack :: %{epoch: pos_integer(), upto: non_neg_integer(), gap?: boolean()}

  @doc """
  The frame message a Link sends.

      iex> alias Jido.Distributed.Transport.Wire
      iex> msg = Wire.frame(self(), 7, 3, 2, "bytes", [:ok])
      iex> {:ok, %{origin: origin, link: link, seq: 3}, "bytes"} = Wire.parse_frame(msg)
      iex> {origin, link} == {node(), self()}
      true
  """
  @spec frame(pid(), pos_integer(), pos_integer(), pos_integer(), binary(), [atom()]) ::
          frame_message()
  def frame(link, epoch, seq, base, frame, atoms)
      when is_pid(link) and is_binary(frame) and is_list(atoms),
      do: {:jido_frame, link, epoch, seq, base, frame, atoms}

  @doc "Sends a frame from the Link `link` to the Receiver (`receiver`, registered) of `node`."
  @spec send_frame(atom(), node(), pid(), pos_integer(), pos_integer(), pos_integer(), binary(), [
          atom()
        ]) :: :ok
  def send_frame(receiver, node, link, epoch, seq, base, bytes, atoms) do
    _ = :erlang.send({receiver, node}, frame(link, epoch, seq, base, bytes, atoms), [:noconnect])
    :ok
  end

  @doc """
  Matches a frame message: the sequencing header (see
  `t:Jido.Distributed.Transport.Inbound.header/0`, plus the sending `link`)
  and the frame bytes, or `:error` for anything else.

      iex> alias Jido.Distributed.Transport.Wire
      iex> Wire.parse_frame({:jido_frame, :"a@h", 1, 1, 1, "f", []})
      :error
      iex> Wire.parse_frame({:jido_frame, self(), 1, 2, 3, "f", []})
      :error
  """
  @spec parse_frame(term()) ::
          {:ok,
           %{
             link: pid(),
             origin: node(),
             epoch: pos_integer(),
             seq: pos_integer(),
             base: pos_integer()
           }, binary()}
          | :error
  def parse_frame({:jido_frame, link, epoch, seq, base, frame, atoms})
      when is_pid(link) and is_integer(epoch) and epoch > 0 and is_integer(seq) and seq > 0 and
             is_integer(base) and base > 0 and base <= seq and is_binary(frame) and
             is_list(atoms) do
    {:ok, %{link: link, origin: node(link), epoch: epoch, seq: seq, base: base}, frame}
  end

  def parse_frame(_other), do: :error

  @doc """
  The ack message a Receiver sends.

      iex> alias Jido.Distributed.Transport.Wire
      iex> Wire.parse_ack(Wire.ack(5, 9, false))
      {:ok, %{epoch: 5, upto: 9, gap?: false}}
      iex> Wire.parse_ack({:jido_ack, 0, 9, false})
      :error
  """
  @spec ack(pos_integer(), non_neg_integer(), boolean()) :: ack_message()
  def ack(epoch, upto, gap?), do: {:jido_ack, epoch, upto, gap?}

  @doc "Sends an ack straight to the Link `link`."
  @spec send_ack(pid(), pos_integer(), non_neg_integer(), boolean()) :: :ok
  def send_ack(link, epoch, upto, gap?) when is_pid(link) do
    _ = :erlang.send(link, ack(epoch, upto, gap?), [:noconnect])
    :ok
  end

  @doc "Matches an ack message; `:error` for anything else."
  @spec parse_ack(term()) :: {:ok, ack()} | :error
  def parse_ack({:jido_ack, epoch, upto, gap?})
      when is_integer(epoch) and epoch > 0 and is_integer(upto) and upto >= 0 and
             is_boolean(gap?),
      do: {:ok, %{epoch: epoch, upto: upto, gap?: gap?}}

  def parse_ack(_other), do: :error

  @doc """
  Guard: true for a message that claims to be an ack (a tuple tagged
  `:jido_ack`), so a Link can count a malformed one instead of ignoring it.
  """
  defguard is_ack_message(msg)
           when is_tuple(msg) and tuple_size(msg) > 0 and elem(msg, 0) == :jido_ack
end

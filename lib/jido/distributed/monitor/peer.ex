defmodule Jido.Distributed.Monitor.Peer do
  @moduledoc """
  What one node knows of one peer: its reachability, a phi-accrual
  detector over its signs of life, and its round-trip time. The transitions
  are pure functions of the events and the time, each returning the new
  peer and the topology events it causes.

  Reachability:

    * `:up` - signs of life arrive as expected;
    * `:suspect` - silent for longer than usual (`phi >= suspect_phi`);
    * `:unreachable` - no direct path now (`phi >= unreachable_phi`, or a
      suspect the indirect probes did not clear); a relay may still reach
      it. Becomes `:down` after `down_after_ms` without a sign of life;
    * `:down` - gone: its connection closed while it was reachable, or it
      stayed unreachable for `down_after_ms`.

  Events: `:node_up` (first seen, or back from `:down`), `:suspect`,
  `:unreachable`, `:recovered` (a sign of life from a suspect or
  unreachable peer), `:node_down`.

      iex> alias Jido.Distributed.Monitor.Peer
      iex> p = Peer.new(:"b@h", 0, expected_ms: 100)
      iex> {p, [:node_up]} = Peer.alive(p, 0)
      iex> p = Enum.reduce(1..10, p, fn i, p -> elem(Peer.alive(p, i * 100), 0) end)
      iex> {p, []} = Peer.check(p, 1_050)
      iex> {p, [:suspect]} = Peer.check(p, 1_210)
      iex> {p, [:unreachable]} = Peer.check(p, 1_400)
      iex> {p, [:recovered]} = Peer.alive(p, 1_500)
      iex> p.status
      :up
  """

  alias Jido.Distributed.Monitor.{Phi, Rtt}

  @enforce_keys [:node, :status, :since, :detector, :rtt]
  defstruct [
    :node,
    :status,
    :since,
    :detector,
    :rtt,
    :last_alive,
    heard_via: [],
    class: nil,
    indirect_grace_ms: 500,
    suspect_phi: 5.0,
    unreachable_phi: 8.0,
    down_after_ms: 30_000
  ]

  @typedoc "Reachability of a peer."
  @type status :: :up | :suspect | :unreachable | :down

  @typedoc "A topology event."
  @type event :: :node_up | :suspect | :unreachable | :recovered | :node_down

  @typedoc "A peer."
  @type t :: %__MODULE__{
          node: node(),
          status: status(),
          since: integer(),
          detector: Phi.t(),
          rtt: Rtt.t(),
          last_alive: integer() | nil,
          heard_via: [node()],
          class: Jido.Distributed.Routing.Location.class() | nil,
          indirect_grace_ms: non_neg_integer(),
          suspect_phi: float(),
          unreachable_phi: float(),
          down_after_ms: pos_integer()
        }

  @doc """
  A peer not heard from yet (status `:down` until its first sign of life).

  ## Options

  `:suspect_phi` (default 5.0), `:unreachable_phi` (8.0), `:down_after_ms`
  (30,000), `:indirect_grace_ms` (500), and the options of `Jido.Distributed.Monitor.Phi.new/1`.
  """
  @spec new(node(), integer(), keyword()) :: t()
  def new(node, now, opts \\ []) do
    %__MODULE__{
      node: node,
      status: :down,
      since: now,
      detector: Phi.new(opts),
      rtt: Rtt.new(),
      suspect_phi: Keyword.get(opts, :suspect_phi, 5.0),
      unreachable_phi: Keyword.get(opts, :unreachable_phi, 8.0),
      down_after_ms: Keyword.get(opts, :down_after_ms, 30_000),
      indirect_grace_ms: Keyword.get(opts, :indirect_grace_ms, 500)
    }
  end

  @doc "A sign of life at `now`: a heartbeat, a reply, a frame or an ack."
  @spec alive(t(), integer()) :: {t(), [event()]}
  def alive(%__MODULE__{} = p, now) do
    # The silence that made a peer suspect or unreachable is an outage, not
    # a sample of its heartbeat intervals: learning it would make the next
    # outage slower to detect.
    detector =
      if p.status == :up,
        do: Phi.heartbeat(p.detector, now),
        else: Phi.restart(p.detector, now)

    p = %{p | detector: detector, last_alive: now, heard_via: []}

    case p.status do
      :up -> {p, []}
      :suspect -> {%{p | status: :up, since: now}, []}
      :unreachable -> {%{p | status: :up, since: now}, [:recovered]}
      :down -> {%{p | status: :up, since: now}, [:node_up]}
    end
  end

  @doc "Adds a round-trip sample in µs."
  @spec rtt_sample(t(), number()) :: t()
  def rtt_sample(%__MODULE__{} = p, us), do: %{p | rtt: Rtt.sample(p.rtt, us)}

  @doc """
  An indirect probe through `helper` reached the peer while it was silent
  to this node: it is alive, only the direct path is in doubt. Such a peer
  is declared unreachable only at twice the usual suspicion (a congested
  path gets more time; a cut one is still found).
  """
  @spec heard_via(t(), node()) :: t()
  def heard_via(%__MODULE__{} = p, helper) do
    if helper in p.heard_via, do: p, else: %{p | heard_via: [helper | p.heard_via]}
  end

  @doc "Re-evaluates the peer at `now`."
  @spec check(t(), integer()) :: {t(), [event()]}
  def check(%__MODULE__{status: :down} = p, _now), do: {p, []}

  def check(%__MODULE__{status: :unreachable} = p, now) do
    if now - (p.last_alive || p.since) >= p.down_after_ms,
      do: {%{p | status: :down, since: now}, [:node_down]},
      else: {p, []}
  end

  def check(%__MODULE__{} = p, now) do
    phi = Phi.phi(p.detector, now)

    cond do
      phi >= p.unreachable_phi and
          (p.heard_via == [] or now - p.last_alive >= p.indirect_grace_ms) ->
        {%{p | status: :unreachable, since: now}, [:unreachable]}

      phi >= p.suspect_phi and p.status == :up ->
        {%{p | status: :suspect, since: now}, [:suspect]}

      true ->
        {p, []}
    end
  end

  @doc """
  The node's distribution connection closed at `now`. A reachable peer is
  then `:down`; one already unreachable stays so (its connection was cut
  because it could not be reached, see `Jido.Distributed.Monitor`) until
  `down_after_ms` have passed without a sign of life.
  """
  @spec disconnected(t(), integer()) :: {t(), [event()]}
  def disconnected(%__MODULE__{status: status} = p, _now) when status in [:unreachable, :down],
    do: {p, []}

  def disconnected(%__MODULE__{} = p, now), do: {%{p | status: :down, since: now}, [:node_down]}

  @doc "Forgets the silence before `now` (after this node itself stalled)."
  @spec excuse(t(), integer()) :: t()
  def excuse(%__MODULE__{last_alive: nil} = p, _now), do: p

  def excuse(%__MODULE__{} = p, now),
    do: %{p | detector: %{p.detector | last: max(p.detector.last, now - 1)}}

  @doc """
  The distance class measured from the smoothed RTT, with hysteresis:
  `thresholds` are the upper RTT bounds in µs of `:same_zone` and
  `:same_region` (above: `:remote`); a class changes only when the RTT is
  beyond the bound by `margin` (a fraction), and only after 3 samples.
  Returns the peer and `[{:class_changed, old, new}]` or `[]`.

      iex> alias Jido.Distributed.Monitor.Peer
      iex> p = Enum.reduce(1..3, Peer.new(:"b@h", 0), &Peer.rtt_sample(&2, 400 + &1))
      iex> {p, [{:class_changed, nil, :same_zone}]} = Peer.classify(p, {1_000, 10_000}, 0.2)
      iex> p = Enum.reduce(1..30, p, fn _, p -> Peer.rtt_sample(p, 1_100) end)
      iex> {p, []} = Peer.classify(p, {1_000, 10_000}, 0.2)
      iex> p = Enum.reduce(1..30, p, fn _, p -> Peer.rtt_sample(p, 1_300) end)
      iex> {_p, [{:class_changed, :same_zone, :same_region}]} = Peer.classify(p, {1_000, 10_000}, 0.2)
  """
  @spec classify(t(), {number(), number()}, float()) :: {t(), [tuple()]}
  def classify(%__MODULE__{} = p, {zone_us, region_us}, margin) do
    srtt = Rtt.srtt(p.rtt)

    new =
      cond do
        srtt == nil or Rtt.count(p.rtt) < 3 -> p.class
        p.class == nil -> bucket(srtt, zone_us, region_us)
        true -> hysteresis(p.class, srtt, zone_us, region_us, margin)
      end

    if new == p.class,
      do: {p, []},
      else: {%{p | class: new}, [{:class_changed, p.class, new}]}
  end

  defp bucket(srtt, zone_us, _region_us) when srtt <= zone_us, do: :same_zone
  defp bucket(srtt, _zone_us, region_us) when srtt <= region_us, do: :same_region
  defp bucket(_srtt, _zone_us, _region_us), do: :remote

  defp hysteresis(class, srtt, zone_us, region_us, margin) do
    # Move only when the RTT is clearly inside another class's range.
    candidate = bucket(srtt, zone_us, region_us)
    up = 1 + margin
    down = 1 - margin

    clear? =
      case candidate do
        :same_zone -> srtt <= zone_us * down
        :same_region -> srtt > zone_us * up and srtt <= region_us * down
        :remote -> srtt > region_us * up
      end

    if clear?, do: candidate, else: class
  end

  @doc "Current phi at `now`."
  @spec phi(t(), integer()) :: float()
  def phi(%__MODULE__{} = p, now), do: Phi.phi(p.detector, now)
end

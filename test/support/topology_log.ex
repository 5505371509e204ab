defmodule Jido.Distributed.Test.TopologyLog do
  @moduledoc """
  Runs on a peer (started over a control channel such as the testbed's
  `call/6`): a registered process subscribed to `Jido.Distributed.Monitor`
  that records every topology event with the OS clock in microseconds (one
  clock for every namespace of the machine), to be read back later.
  """

  @name :jido_test_topology_log

  @doc "Starts the log on this node (replacing an old one); returns its pid."
  @spec start() :: pid()
  def start do
    if old = Process.whereis(@name), do: Process.exit(old, :kill)
    caller = self()

    pid =
      spawn(fn ->
        Process.register(self(), @name)
        :ok = Jido.Distributed.Monitor.subscribe()
        send(caller, {:ready, self()})
        loop([])
      end)

    receive do
      {:ready, ^pid} -> pid
    after
      5_000 -> raise "topology log did not start"
    end
  end

  @doc "The events so far, oldest first: `[{os_time_us, event}]`."
  @spec events() :: [{integer(), tuple()}]
  def events do
    ref = make_ref()
    send(@name, {:events, self(), ref})

    receive do
      {^ref, events} -> Enum.reverse(events)
    after
      5_000 -> raise "topology log did not answer"
    end
  end

  @doc "The time of the first event matching `{kind, node}` at or after `since_us`, or nil."
  @spec first(atom(), node(), integer()) :: integer() | nil
  def first(kind, node, since_us \\ 0) do
    Enum.find_value(events(), fn
      {at, {^kind, ^node}} when at >= since_us -> at
      _ -> nil
    end)
  end

  @doc "The OS clock now, in µs."
  @spec now_us() :: integer()
  def now_us, do: :os.system_time(:microsecond)

  defp loop(events) do
    receive do
      {:jido_topology, event} -> loop([{now_us(), event} | events])
      {:events, from, ref} -> send(from, {ref, events}) && loop(events)
    end
  end
end

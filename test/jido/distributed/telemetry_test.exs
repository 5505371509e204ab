defmodule Jido.Distributed.TelemetryTest do
  use Jido.Distributed.ClusterCase

  alias Jido.Distributed.Test.Collector

  # A stand-in for the :telemetry application, defined only for this test.
  @fake """
  defmodule :telemetry do
    def execute(event, measurements, metadata) do
      if pid = Process.whereis(:jido_telemetry_test_sink) do
        send(pid, {:telemetry, event, measurements, metadata})
      end

      :ok
    end
  end
  """

  setup do
    Code.compile_string(@fake)
    :persistent_term.erase({Jido.Distributed.Telemetry, :available})
    Process.register(self(), :jido_telemetry_test_sink)

    on_exit(fn ->
      :code.purge(:telemetry)
      :code.delete(:telemetry)
      :code.purge(:telemetry)
      :persistent_term.erase({Jido.Distributed.Telemetry, :available})
    end)
  end

  test "flush and ack events are emitted with their measurements" do
    [b] = start_cluster(1)
    collector = Collector.start(b)

    for seq <- 1..20 do
      :ok =
        Jido.Distributed.send(collector, %{id: "#{seq}", type: "t", data: %{sender: :t, seq: seq}})
    end

    assert_receive {:telemetry, [:jido, :distributed, :link, :flush], %{frames: f, signals: s},
                    %{node: ^b, trigger: _}},
                   5_000

    assert f >= 1 and s >= 1

    assert_receive {:telemetry, [:jido, :distributed, :link, :ack], %{signals: _}, %{node: ^b}},
                   5_000
  end
end

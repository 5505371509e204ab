defmodule Jido.Distributed.MalformedTest do
  use ExUnit.Case, async: true
  import ExUnit.CaptureLog

  alias Jido.Distributed.Malformed

  doctest Malformed

  test "logs the first refusal of each reason only, with atoms and terms as reasons" do
    log =
      capture_log(fn ->
        logged = Malformed.report(MapSet.new(), :test, :bad, {:x}, "Me")
        logged = Malformed.report(logged, :test, :bad, {:y}, "Me")
        Malformed.report(logged, :test, {:udp, :bad_mac}, "bin", "Me")
      end)

    assert length(String.split(log, "(bad)")) == 2
    assert log =~ "Me dropped a malformed message ({:udp, :bad_mac})"
  end
end

defmodule Jido.Distributed.ApiTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed
  doctest Jido.Distributed.Message
  doctest Jido.Distributed.Dispatch

  test "local targets get a plain send in the default and custom formats" do
    signal = %{id: "1", type: "a.b"}
    assert :ok = Jido.Distributed.send(self(), signal)
    assert_received {:signal, ^signal}
    assert :ok = Jido.Distributed.send(self(), signal, message_format: :raw)
    assert_received ^signal
    assert :ok = Jido.Distributed.send(self(), signal, message_format: {:tag, :evt})
    assert_received {:evt, ^signal}
    assert :ok = Jido.Distributed.send(self(), signal, message_format: &{:wrapped, &1.id})
    assert_received {:wrapped, "1"}
  end

  test "invalid targets and formats give clear errors" do
    assert {:error, {:invalid_target, "pid"}} = Jido.Distributed.send("pid", %{id: 1})

    assert {:error, {:invalid_target, {:x, :no_at_sign}}} =
             Jido.Distributed.send({:x, :no_at_sign}, %{})

    assert {:error, [{{1, 2}, {:invalid_target, {1, 2}}}]} =
             Jido.Distributed.dispatch([{self(), %{}}, {{1, 2}, %{}}])

    assert_received {:signal, %{}}

    assert_raise ArgumentError, ~r/:message_format option must be/, fn ->
      Jido.Distributed.send(self(), %{}, message_format: :xml)
    end

    assert {:error, msg} = Jido.Distributed.Dispatch.validate_opts(message_format: :raw)
    assert msg =~ ":target option"
  end
end

defmodule Jido.Distributed.ApiTest do
  use ExUnit.Case, async: true
  doctest Jido.Distributed
  doctest Jido.Distributed.Message
  doctest Jido.Distributed.Dispatch
  doctest Jido.Distributed.Signal
  doctest Jido.Distributed.Transport.NodeCheck

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
    signal = %{id: "1", type: "a.b"}
    assert {:error, {:invalid_target, "pid"}} = Jido.Distributed.send("pid", signal)

    assert {:error, {:invalid_target, {:x, :no_at_sign}}} =
             Jido.Distributed.send({:x, :no_at_sign}, signal)

    assert {:error, [{{1, 2}, {:invalid_target, {1, 2}}}]} =
             Jido.Distributed.dispatch([{self(), signal}, {{1, 2}, signal}])

    assert_received {:signal, ^signal}

    assert_raise ArgumentError, ~r/:message_format option must be/, fn ->
      Jido.Distributed.send(self(), signal, message_format: :xml)
    end

    assert {:error, msg} = Jido.Distributed.Dispatch.validate_opts(message_format: :raw)
    assert msg =~ ":target option"
  end

  test "malformed node names are invalid targets, wherever they appear" do
    signal = %{id: "1", type: "a.b"}
    bad = [:@, :a@b@c, :nohost@, :"@host", :"sp ace@h", :"dot.ted@h", :noatsign]

    for node <- bad do
      target = {:svc, node}
      assert {:error, {:invalid_target, ^target}} = Jido.Distributed.send(target, signal)

      assert {:error, [{^target, {:invalid_target, ^target}}]} =
               Jido.Distributed.dispatch([{target, signal}])

      assert {:error, "the :target option must be " <> _} =
               Jido.Distributed.Dispatch.validate_opts(target: target)

      agent = %{id: "x", name: :svc, node: node, capabilities: ["a.*"]}

      assert {:error, {:invalid_target, ^target}} =
               Jido.Distributed.route_and_send(signal, agents: [agent])
    end

    # No Link was started for any of them.
    assert Enum.all?(bad, &(Jido.Distributed.Transport.LinkStore.lookup(&1) == nil))
  end

  test "send, dispatch, route_and_send, broadcast and the Dispatch adapter refuse non-signals alike" do
    :ok = Jido.Distributed.Directory.register("api-nonsignal", ["api.nonsignal.*"])
    me = %{id: "me", pid: self(), capabilities: ["**"]}

    for bad <- ["str", nil, 42, {:id, :type}, %{id: "1"}, %{type: "a.b"}, [id: "1", type: "t"]] do
      error = {:error, {:invalid_signal, bad}}
      assert Jido.Distributed.send(self(), bad) == error
      assert Jido.Distributed.send({:agent, "api-nonsignal"}, bad) == error
      assert Jido.Distributed.send(self(), bad, message_format: :raw) == error
      assert Jido.Distributed.Dispatch.deliver(bad, target: self()) == error
      assert Jido.Distributed.route_and_send(bad) == error
      assert Jido.Distributed.route_and_send(bad, agents: [me]) == error
      assert Jido.Distributed.broadcast(bad, nodes: []) == error

      assert Jido.Distributed.dispatch([{self(), bad}, {{:agent, "api-nonsignal"}, bad}]) ==
               {:error,
                [
                  {self(), {:invalid_signal, bad}},
                  {{:agent, "api-nonsignal"}, {:invalid_signal, bad}}
                ]}
    end

    refute_received _

    # A struct with :id and :type is a signal.
    signal = %URI{} |> Map.from_struct() |> Map.merge(%{id: "u", type: "api.nonsignal.x"})
    assert :ok = Jido.Distributed.send(self(), signal)
    assert_received {:signal, ^signal}
    :ok = Jido.Distributed.Directory.unregister("api-nonsignal")
  end

  test "arguments of the wrong shape raise ArgumentError naming the argument" do
    signal = %{id: "1", type: "a.b"}

    cases = [
      {"the opts argument must be a keyword list, got: :raw",
       fn -> Jido.Distributed.send(self(), signal, :raw) end},
      {"the entries argument must be a list of {target, signal} tuples, got: :x",
       fn -> Jido.Distributed.dispatch(:x) end},
      {"the opts argument must be a keyword list, got: :raw",
       fn -> Jido.Distributed.dispatch([], :raw) end},
      {"the opts argument must be a keyword list, got: :bad",
       fn -> Jido.Distributed.route_and_send(signal, :bad) end},
      {"the :agents option must be a list of agent descriptors, got: :directory",
       fn -> Jido.Distributed.route_and_send(signal, agents: :directory) end},
      {"the opts argument must be a keyword list, got: :bad",
       fn -> Jido.Distributed.broadcast(signal, :bad) end},
      {~s(the node argument must be a node name (an atom\) or :all, got: "n"),
       fn -> Jido.Distributed.flush("n") end},
      {~s(the node argument must be a node name (an atom\), got: "n"),
       fn -> Jido.Distributed.Transport.Link.flush("n") end}
    ]

    for {message, fun} <- cases, do: assert_raise(ArgumentError, message, fun)

    assert {:error, "the opts argument must be a keyword list, got: :bad"} =
             Jido.Distributed.Dispatch.validate_opts(:bad)
  end
end

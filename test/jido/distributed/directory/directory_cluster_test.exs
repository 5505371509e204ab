defmodule Jido.Distributed.DirectoryClusterTest do
  use Jido.Distributed.ClusterCase

  alias Jido.Distributed.Directory
  alias Jido.Distributed.Test.Collector

  @moduletag timeout: 120_000

  test "a restarted Directory keeps other nodes' agents until their Directory answers" do
    [a, b] = start_cluster(2)
    id = "dc#{System.unique_integer([:positive])}"
    pid = Collector.start(b)
    :ok = Directory.register(id, ["#{id}.*"], pid: pid, load: 2)

    eventually("#{a} to list the agent", fn ->
      Cluster.rpc(a, Directory, :whereis, [id]) != nil
    end)

    # b's Directory cannot answer a new subscription while suspended.
    :ok = Cluster.rpc(b, :sys, :suspend, [Directory])
    old = Cluster.rpc(a, Process, :whereis, [Directory])
    true = Cluster.rpc(a, Process, :exit, [old, :kill])

    eventually("a new Directory on #{a}", fn ->
      new = Cluster.rpc(a, Process, :whereis, [Directory])
      is_pid(new) and new != old
    end)

    # Not yet resynced with b, and still routes to b's agent.
    assert b not in Cluster.rpc(a, Directory, :peers, [])
    assert %{pid: ^pid, load: 2.0} = Cluster.rpc(a, Directory, :whereis, [id])

    assert {:remote, %{pid: ^pid}} =
             Cluster.rpc(a, Jido.Router, :route_with_locality, [%{id: 1, type: "#{id}.x"}])

    :ok = Cluster.rpc(b, :sys, :resume, [Directory])
    eventually("#{a} to resync with #{b}", fn -> b in Cluster.rpc(a, Directory, :peers, []) end)
    assert %{pid: ^pid} = Cluster.rpc(a, Directory, :whereis, [id])

    # Changes after the resync still arrive.
    :ok = Cluster.rpc(b, Directory, :update_load, [id, 0.5])

    eventually("the new load on #{a}", fn ->
      match?(%{load: 0.5}, Cluster.rpc(a, Directory, :whereis, [id]))
    end)
  end
end

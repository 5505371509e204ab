# Multi-node tests need epmd and a distributed test node.
{_, 0} = System.cmd("epmd", ["-daemon"])

unless Node.alive?() do
  # The OS pid keeps names apart when several test runs share a machine.
  {:ok, _} = Node.start(:"jido_test_#{System.pid()}", :shortnames)
end

ExUnit.start(capture_log: true)

# Multi-node tests need epmd and a distributed test node.
{_, 0} = System.cmd("epmd", ["-daemon"])

unless Node.alive?() do
  {:ok, _} = Node.start(:"jido_test_#{System.unique_integer([:positive])}", :shortnames)
end

ExUnit.start(capture_log: true)

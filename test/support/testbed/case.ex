defmodule Jido.Distributed.TestbedCase do
  @moduledoc """
  Case template for tests on `Jido.Distributed.Test.Testbed` (real network
  namespaces).

  Tests using it are tagged `:testbed` (and `:cluster`: they never run
  concurrently with other tests) and are skipped, with the reason, where
  the testbed cannot run (not root, `ip`/`nft`/`tc` missing, namespaces
  refused). `start_testbed/1` is imported and `Testbed` aliased.

      defmodule MyTest do
        use Jido.Distributed.TestbedCase

        test "silent" do
          tb = start_testbed(hosts: [:a, :b])
          Testbed.partition(tb, [[:a], [:b]])
          ...
        end
      end
  """
  use ExUnit.CaseTemplate

  alias Jido.Distributed.Test.Testbed

  using opts do
    if Keyword.get(opts, :async, false) do
      raise ArgumentError, "Jido.Distributed.TestbedCase tests cannot be async"
    end

    quote do
      import Jido.Distributed.TestbedCase, only: [start_testbed: 1]
      alias Jido.Distributed.Test.Testbed
      @moduletag :testbed
      @moduletag :cluster

      if reason = Testbed.unavailable_reason() do
        @moduletag skip: reason
      end
    end
  end

  @doc """
  Starts a testbed (`Jido.Distributed.Test.Testbed.start_link/1`) under the
  test supervisor: it is torn down when the test ends, also when it fails.
  """
  @spec start_testbed(keyword()) :: pid()
  def start_testbed(opts) do
    ExUnit.Callbacks.start_supervised!({Testbed, opts})
  end
end

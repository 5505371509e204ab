defmodule Mix.Tasks.Compile.JidoNative do
  @moduledoc """
  Builds the Rust workspace (`cargo build --release`) and places the NIF
  library and the `jido_relay` binary in `priv/native/`.

  Runs only when a Rust source or manifest is newer than the built artifacts,
  so a no-change `mix compile` costs a few file stats. Listed before the
  Elixir compiler so the NIF exists when modules with `@on_load` are compiled.
  """
  use Mix.Task.Compiler

  @artifacts [
    {"libjido_distributed_nif.so", "libjido_distributed_nif.so"},
    {"jido_relay", "jido_relay"}
  ]

  @impl true
  def run(_args) do
    root = File.cwd!()
    priv = Path.join(root, "priv/native")
    targets = Enum.map(@artifacts, fn {_, dest} -> Path.join(priv, dest) end)

    if stale?(root, targets) do
      Mix.shell().info("Compiling Rust workspace (cargo build --release)")
      build!(root)
      File.mkdir_p!(priv)

      for {src, dest} <- @artifacts do
        install!(Path.join([target_dir(root), "release", src]), Path.join(priv, dest))
      end

      # Link priv/ into _build now: modules loaded while the Elixir compiler
      # runs find the NIF there (Mix would link it only afterwards).
      Mix.Project.build_structure()
      {:ok, []}
    else
      {:noop, []}
    end
  end

  defp build!(root) do
    cargo = System.find_executable("cargo") || Mix.raise("cargo not found: install Rust (rustup)")

    args = ["build", "--release", "--locked", "-p", "jido_nif", "-p", "jido_relay"]

    case System.cmd(cargo, args, cd: root, stderr_to_stdout: true, into: IO.stream(:stdio, :line)) do
      {_, 0} -> :ok
      {_, status} -> Mix.raise("cargo build failed with exit status #{status}")
    end
  end

  # Copy to a temporary name, then rename: a concurrently loading VM never
  # sees a half-written library.
  defp install!(src, dest) do
    tmp = dest <> ".tmp#{System.unique_integer([:positive])}"
    File.cp!(src, tmp)
    File.chmod!(tmp, 0o755)
    File.rename!(tmp, dest)
  end

  defp target_dir(root), do: System.get_env("CARGO_TARGET_DIR") || Path.join(root, "target")

  defp stale?(root, targets) do
    sources =
      [Path.join(root, "Cargo.toml"), Path.join(root, "Cargo.lock")] ++
        Path.wildcard(Path.join(root, "native/**/*.{rs,toml}"))

    newest_source = sources |> Enum.map(&mtime/1) |> Enum.max(fn -> 0 end)
    Enum.any?(targets, fn t -> mtime(t) < newest_source end)
  end

  defp mtime(path) do
    case File.stat(path, time: :posix) do
      {:ok, %{mtime: mtime}} -> mtime
      {:error, _} -> 0
    end
  end
end

defmodule JidoDistributed.MixProject do
  use Mix.Project

  def project do
    [
      app: :jido_distributed,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:jido_native] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      docs: [main: "readme", extras: ["README.md"]]
    ]
  end

  def application do
    [
      extra_applications: [:logger, :crypto],
      mod: {Jido.Distributed.Application, []}
    ]
  end

  # test/support (the cluster harness) is compiled in dev too: benchmarks and
  # the demo start peer nodes with it.
  defp elixirc_paths(:prod), do: ["lib"]
  defp elixirc_paths(_), do: ["lib", "test/support"]
end

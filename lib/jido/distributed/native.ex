defmodule Jido.Distributed.Native do
  @moduledoc false
  # NIF stubs only. Names match the Rust functions in native/jido_nif one to
  # one. Public modules call these through their own wrappers, never directly.

  @on_load :load_nif

  @doc false
  def load_nif do
    path = :filename.join(:code.priv_dir(:jido_distributed), ~c"native/libjido_distributed_nif")
    :erlang.load_nif(path, 0)
  end

  def frame_encode(_terms, _mode), do: :erlang.nif_error(:nif_not_loaded)
  def frame_encode_dirty(_terms, _mode), do: :erlang.nif_error(:nif_not_loaded)
  def frame_encode_binaries(_entries, _mode), do: :erlang.nif_error(:nif_not_loaded)
  def frame_encode_binaries_dirty(_entries, _mode), do: :erlang.nif_error(:nif_not_loaded)
  def frame_decode(_bin, _max), do: :erlang.nif_error(:nif_not_loaded)
  def frame_decode_dirty(_bin, _max), do: :erlang.nif_error(:nif_not_loaded)
  def frame_header(_bin), do: :erlang.nif_error(:nif_not_loaded)
  def tree_plan(_members, _root, _fanout), do: :erlang.nif_error(:nif_not_loaded)
  def tree_plan_dirty(_members, _root, _fanout), do: :erlang.nif_error(:nif_not_loaded)
end

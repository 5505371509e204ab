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
  def frame_encode_atoms(_terms, _mode), do: :erlang.nif_error(:nif_not_loaded)
  def frame_encode_atoms_dirty(_terms, _mode), do: :erlang.nif_error(:nif_not_loaded)
  def frame_atoms(_bin, _max), do: :erlang.nif_error(:nif_not_loaded)
  def frame_atoms_dirty(_bin, _max), do: :erlang.nif_error(:nif_not_loaded)

  def buffer_new(_max_entries, _max_bytes, _overflow), do: :erlang.nif_error(:nif_not_loaded)
  def buffer_push(_buffer, _entries), do: :erlang.nif_error(:nif_not_loaded)
  def buffer_push_one(_buffer, _entry), do: :erlang.nif_error(:nif_not_loaded)
  def buffer_take(_buffer, _max_entries, _max_bytes), do: :erlang.nif_error(:nif_not_loaded)
  def buffer_take_dirty(_buffer, _max_entries, _max_bytes), do: :erlang.nif_error(:nif_not_loaded)
  def buffer_ack(_buffer, _upto), do: :erlang.nif_error(:nif_not_loaded)
  def buffer_unacked(_buffer), do: :erlang.nif_error(:nif_not_loaded)
  def buffer_stats(_buffer), do: :erlang.nif_error(:nif_not_loaded)
  def tree_plan(_members, _root, _fanout), do: :erlang.nif_error(:nif_not_loaded)
  def tree_plan_dirty(_members, _root, _fanout), do: :erlang.nif_error(:nif_not_loaded)
end

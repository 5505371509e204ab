defmodule Jido.Distributed.Native do
  @moduledoc false
  # NIF stubs only. Names match the Rust functions in native/jido_nif one to
  # one. Public modules call these through their own wrappers, never directly.
  #
  # A NIF whose work can outlast a scheduler slice comes as a twin: `name`
  # runs on a normal scheduler and answers `:dirty` when its input is too
  # large (the thresholds live in `jido_core::schedule`), `name_dirty` runs
  # on a dirty CPU scheduler. Call them through `scheduled/1`.

  @on_load :load_nif

  @doc false
  def load_nif do
    path = :filename.join(:code.priv_dir(:jido_distributed), ~c"native/libjido_distributed_nif")
    :erlang.load_nif(path, 0)
  end

  @doc """
  Runs a twin NIF call such as `Native.frame_decode(bin, max)`: the normal
  one, and, when it answers `:dirty`, the `_dirty` twin with the same
  arguments (each evaluated once).
  """
  defmacro scheduled({{:., _, [module, name]}, _, args}) when is_atom(name) and is_list(args) do
    vars = Macro.generate_unique_arguments(length(args), __MODULE__)
    dirty = :"#{name}_dirty"

    quote do
      {unquote_splicing(vars)} = {unquote_splicing(args)}

      case unquote(module).unquote(name)(unquote_splicing(vars)) do
        :dirty -> unquote(module).unquote(dirty)(unquote_splicing(vars))
        result -> result
      end
    end
  end

  def error_names, do: :erlang.nif_error(:nif_not_loaded)

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
  def inbound_new, do: :erlang.nif_error(:nif_not_loaded)

  def inbound_deliver(_store, _origin, _epoch, _seq, _base, _frame, _max),
    do: :erlang.nif_error(:nif_not_loaded)

  def inbound_deliver_dirty(_store, _origin, _epoch, _seq, _base, _frame, _max),
    do: :erlang.nif_error(:nif_not_loaded)

  def inbound_delivered(_store, _origin, _epoch), do: :erlang.nif_error(:nif_not_loaded)
  def inbound_sessions(_store), do: :erlang.nif_error(:nif_not_loaded)
  def inbound_mark(_store, _origin, _down, _now_ms), do: :erlang.nif_error(:nif_not_loaded)
  def inbound_expire(_store, _now_ms, _grace_ms, _ttl_ms), do: :erlang.nif_error(:nif_not_loaded)
  def inbound_count(_store, _name, _n), do: :erlang.nif_error(:nif_not_loaded)
  def inbound_counters(_store), do: :erlang.nif_error(:nif_not_loaded)
  def tree_plan(_members, _root, _fanout), do: :erlang.nif_error(:nif_not_loaded)
  def tree_plan_dirty(_members, _root, _fanout), do: :erlang.nif_error(:nif_not_loaded)
end

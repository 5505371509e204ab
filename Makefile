# Two entry points: `make test` (everything CI runs) and `make demo`.
# Both install what a fresh Debian machine lacks, then build the Rust parts.
# `make chaos` runs the long chaos run on the network testbed (root only):
# `make chaos SEED=123` replays a schedule, CHAOS_ARGS passes more options
# (see bench/chaos.exs).
SHELL := /bin/bash
MIX_ENV ?= test
export ERL_AFLAGS ?= -kernel shell_history disabled

.PHONY: test demo deps rust-check elixir-check bench chaos clean

deps:
	@bash scripts/ensure_deps.sh

rust-check: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --release -- -D warnings
	cargo test --workspace --release

elixir-check: deps
	MIX_ENV=test mix format --check-formatted
	MIX_ENV=test mix compile --warnings-as-errors --force
	MIX_ENV=test mix test

test: rust-check elixir-check

demo: deps
	MIX_ENV=dev mix compile
	MIX_ENV=dev mix run --no-start bench/demo.exs

chaos: deps
	MIX_ENV=dev mix compile
	MIX_ENV=dev mix run --no-start bench/chaos.exs $(if $(SEED),--seed $(SEED)) $(CHAOS_ARGS)

bench: deps
	MIX_ENV=dev mix run --no-start bench/codec.exs

clean:
	rm -rf _build priv/native target

#!/usr/bin/env bash
# Installs what a fresh machine of this project's kind lacks: Erlang/Elixir
# from Debian (hex is unreachable, so no hex packages), nftables for the
# network testbed (test/support/testbed.ex), and checks for cargo.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs) and retry" >&2
  exit 1
fi

if ! command -v mix >/dev/null 2>&1 || ! command -v epmd >/dev/null 2>&1; then
  pkgs="erlang-nox erlang-dev elixir"
  if [ "$(id -u)" = "0" ]; then
    echo "Installing $pkgs from Debian..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $pkgs >/dev/null
  else
    echo "Erlang/Elixir missing. Run: sudo apt-get update && sudo apt-get install -y $pkgs" >&2
    exit 1
  fi
fi

# rustfmt and clippy come with rustup's default profile; add them if absent.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

# The network testbed (silent partitions between network namespaces) needs
# nft, ip and tc, and root. Without them its tests are skipped, with the reason.
if ! command -v nft >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 || ! command -v tc >/dev/null 2>&1; then
  pkgs="nftables iproute2"
  if [ "$(id -u)" = "0" ]; then
    echo "Installing $pkgs from Debian (network testbed)..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq $pkgs >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $pkgs >/dev/null; }
  else
    echo "Network testbed tests will be skipped (they need root and: $pkgs)." >&2
  fi
fi

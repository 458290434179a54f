#!/usr/bin/env bash
# Installs Rust (stable, with rustup, minimal profile) when cargo is not on PATH: the
# version the workspace needs or newer (rust-version in Cargo.toml). Idempotent.
set -euo pipefail
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if command -v cargo >/dev/null 2>&1; then
  exit 0
fi
command -v curl >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends curl ca-certificates
}
curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt --default-toolchain 1.95.0

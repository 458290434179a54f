#!/usr/bin/env bash
# Runs every netbind test: unit, property, CLI, hostile-input, privileged (namespaces,
# real CNI plugins, lossy links) and QEMU guest tests. Run as root (the privileged tiers
# create namespaces; they fail, never skip, when they cannot run). Installs what the
# tests need first: Debian packages and the guest kernel (scripts/install-deps.sh), and
# Rust with rustup when cargo is missing. rustfmt and clippy must pass first. Every test
# binary runs even when one fails;
# the last line says how it went.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: run as root (privileged tests create network namespaces)" >&2
  exit 2
fi
if [ ! -d ../shared/testdata ]; then
  echo "scripts/test.sh: $(cd .. && pwd)/shared/testdata is missing: the corpus tests read the real manifests there (clone the repository beside shared/)" >&2
  exit 2
fi
scripts/install-deps.sh
scripts/install-rust.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# The lints hold (they are cheap, and nothing else keeps them so).
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add clippy rustfmt
fi
cargo fmt --all --check || { echo "scripts/test.sh: cargo fmt --all would change files" >&2; exit 1; }
cargo clippy --workspace --all-targets --locked -q -- -D warnings
start=$(date +%s)
if cargo test --workspace --locked --no-fail-fast; then
  echo "scripts/test.sh: all tests passed in $(( $(date +%s) - start )) s"
else
  rc=$?
  echo "scripts/test.sh: some tests FAILED (exit $rc; look for 'FAILED' and 'panicked' above) after $(( $(date +%s) - start )) s" >&2
  exit "$rc"
fi

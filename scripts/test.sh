#!/usr/bin/env bash
# Runs every netbind test: unit, property, CLI, hostile-input, privileged (namespaces,
# real CNI plugins, lossy links) and QEMU guest tests. Run as root (the privileged tiers
# create namespaces; they fail, never skip, when they cannot run). Installs what the
# tests need first: Debian packages and the guest kernel (scripts/install-deps.sh), and
# Rust with rustup when cargo is missing. rustfmt and clippy must pass first. Every test
# binary runs even when one fails; then scripts/fuzz.sh runs each fuzz target for a bounded
# time where nightly is available (it says when it skips). The last line says how it went.
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
# The benchmarks build (they print tables, tests assert: they are not run here).
cargo build --workspace --benches --locked -q
# No import circle among the modules of the engine, the applier and the planner.
python3 scripts/use-graph.py crates/usernet/src crates/netns/src crates/plan/src
start=$(date +%s)
tests_rc=0
cargo test --workspace --locked --no-fail-fast || tests_rc=$?
tests_took=$(( $(date +%s) - start ))
# Fuzzing: every cargo-fuzz target for a bounded time (NETBIND_FUZZ_SECONDS, 20 s
# each) where a nightly toolchain is available; says so and goes on when there is none.
fuzz_start=$(date +%s)
fuzz_rc=0
NETBIND_FUZZ_DEV="${NETBIND_FUZZ_DEV:-1}" NETBIND_FUZZ_SECONDS="${NETBIND_FUZZ_SECONDS:-20}" scripts/fuzz.sh || fuzz_rc=$?
fuzz_took=$(( $(date +%s) - fuzz_start ))
if [ "$tests_rc" -eq 0 ] && [ "$fuzz_rc" -eq 0 ]; then
  echo "scripts/test.sh: all tests passed in $tests_took s; fuzzing passed in $fuzz_took s"
else
  [ "$tests_rc" -eq 0 ] || echo "scripts/test.sh: some tests FAILED (exit $tests_rc; look for 'FAILED' and 'panicked' above) after $tests_took s" >&2
  [ "$fuzz_rc" -eq 0 ] || echo "scripts/test.sh: fuzzing FAILED (exit $fuzz_rc; the crashing inputs are under target/fuzz-artifacts/)" >&2
  exit 1
fi

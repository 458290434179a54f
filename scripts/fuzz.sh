#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time (default 45 s each; the seven
# targets take under 6 minutes after the build). Needs a nightly toolchain (libFuzzer);
# without one it says so and exits 0 — the corpora still replay on stable as tests of
# crates/fuzz-targets. Installs cargo-fuzz when missing (`cargo install --locked`).
# Each target starts from a temp copy of fuzz/corpus/<target>/, so what it finds never
# dirties the checkout (the grown corpus is kept under target/fuzz-corpus/<target>/, to
# pick interesting inputs from); a crash fails the run and its input is kept under
# target/fuzz-artifacts/<target>/ (add it to fuzz/corpus/<target>/ once fixed).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${NETBIND_FUZZ_SECONDS:-45}}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(manifest dhcp4 dhcp6 guest_frame journal migration_state vhost_user_queue)
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: SKIPPED fuzzing: no nightly toolchain (\`cargo +nightly --version\` fails; \`rustup toolchain install nightly\` enables it); the corpora were replayed on stable by crates/fuzz-targets' tests"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
echo "scripts/fuzz.sh: building the fuzz targets ($(cargo +nightly --version))"
# NETBIND_FUZZ_DEV=1 (the test run's choice): unoptimized targets, built in a fraction of
# the time of the sanitized release build; they run fewer inputs per second, which a short
# bounded run can afford.
profile=()
[ "${NETBIND_FUZZ_DEV:-0}" = 1 ] && profile=(--dev)
(cd fuzz && cargo +nightly fuzz build "${profile[@]}")
work="$(mktemp -d /tmp/netbind-fuzz.XXXXXX)"
trap 'rm -rf "$work"' EXIT
artifacts="$PWD/target/fuzz-artifacts"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp fuzz/corpus/"$t"/* "$work/$t/corpus/"
  seeds=$(find "$work/$t/corpus" -type f | wc -l)
  echo "scripts/fuzz.sh: fuzzing $t for ${seconds} s from $seeds seed(s)"
  set +e
  (cd fuzz && cargo +nightly fuzz run "${profile[@]}" "$t" "$work/$t/corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/$t/artifacts/") >"$work/$t/log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'Done [0-9]* runs' "$work/$t/log" | awk '{print $2}' | tail -n1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$work/$t/log" | tail -n1 | awk '{print $2}' || true)
  grown=$(find "$work/$t/corpus" -type f | wc -l)
  rm -rf "$PWD/target/fuzz-corpus/$t"
  mkdir -p "$PWD/target/fuzz-corpus"
  cp -r "$work/$t/corpus" "$PWD/target/fuzz-corpus/$t"
  if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$work/$t/artifacts")" ]; then
    mkdir -p "$artifacts/$t"
    cp "$work/$t/artifacts/"* "$artifacts/$t/" 2>/dev/null || true
    { grep -a -m 3 -A 2 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$work/$t/log"
      echo "…"; grep -a -E "^(artifact_prefix|Test unit written|Base64)" "$work/$t/log"; } >&2 || true
    echo "scripts/fuzz.sh: $t FAILED (exit $rc); inputs kept in $artifacts/$t/" >&2
    failed+=("$t")
  else
    echo "scripts/fuzz.sh: $t ok: ${runs:-?} runs in ${seconds} s, coverage ${cov:-?} edges, corpus $seeds -> $grown"
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "scripts/fuzz.sh: fuzzing FAILED for: ${failed[*]}" >&2
  exit 1
fi
echo "scripts/fuzz.sh: every target ran ${seconds} s without a crash"

#!/usr/bin/env bash
# Runs every netbind test: unit, property, CLI, hostile-input and privileged (namespace,
# real CNI plugins) tests. Needs root for the privileged tier; those tests fail, never
# skip, when they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: run as root (privileged tests create network namespaces)" >&2
  exit 2
fi
scripts/install-deps.sh
cargo test --workspace --locked

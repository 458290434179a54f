#!/usr/bin/env bash
# Migration benchmark of netbind's user-mode engine against upstream passt 2025_05_03 with
# its passt-repair, in one run: a QEMU guest (TCG, vhost-user) holding 1, 100 and 1,000
# open TCP connections migrated between two engines in one pod namespace. Not a test:
# prints a markdown table (QEMU's downtime and total time, each engine's part, and how
# many connections still echo after). The bench binary is crates/cli/benches/migrate.rs,
# where its layout is described.
#
# Usage (as root): scripts/bench-migrate.sh [ROUNDS] [CONNECTION COUNTS]
#   defaults 3 and "1 100 1000"; needs what scripts/install-deps.sh installs (QEMU, the
#   guest kernel, and passt 2025_05_03 with passt-repair in /opt/netbind-peers).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "bench-migrate: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (namespaces, CNI, QEMU, passt-repair)"
PASST=${PASST:-/opt/netbind-peers/passt-2025_05_03/passt}
[ -x "$PASST" ] && [ -x "$(dirname "$PASST")/passt-repair" ] || die "$PASST or its passt-repair is missing: run scripts/install-deps.sh"
for t in qemu-system-x86_64 setpriv ip busybox python3; do command -v $t >/dev/null || die "missing $t"; done
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
echo "bench-migrate: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
MIGRATE_BENCH_ROUNDS=${1:-3} MIGRATE_BENCH_SIZES=${2:-1 100 1000} MIGRATE_BENCH_PASST=$PASST \
  cargo bench --locked -q -p netbind-cli --bench migrate

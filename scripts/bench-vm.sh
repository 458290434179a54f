#!/usr/bin/env bash
# VM-mode benchmark of netbind's user-mode engine against upstream passt 2025_05_03, both
# as a QEMU guest's back end over vhost-user and over the stream socket, in one run. Not a
# test: prints a markdown table.
#
# The benchmark itself is a Rust bench binary (crates/cli/benches/vm.rs, where its
# layout is described) built on the testbed's fixtures: a CNI pod, a peer pod running
# iperf3 -s, a QEMU TCG guest with the host's iperf3. Per contender and vCPU count: iperf3
# guest→peer and peer→guest, the engine's CPU time per GB (utime+stime) and its memory.
#
# Usage (as root): scripts/bench-vm.sh [SECONDS] [ROUNDS] [VCPU COUNTS] [GUEST MTUS]
#   defaults 5, 3, "1 2" and "65520 1500"; needs what scripts/install-deps.sh installs (QEMU, iperf3,
#   the guest kernel, and passt 2025_05_03 in /opt/netbind-peers); builds the netbind
#   binary in the bench (release) profile.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "bench-vm: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (namespaces, CNI, QEMU)"
PASST=${PASST:-/opt/netbind-peers/passt-2025_05_03/passt}
[ -x "$PASST" ] || die "$PASST is missing: run scripts/install-deps.sh"
for t in qemu-system-x86_64 iperf3 setpriv ip busybox; do command -v $t >/dev/null || die "missing $t"; done
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
echo "bench-vm: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
VM_BENCH_SECS=${1:-5} VM_BENCH_ROUNDS=${2:-3} VM_BENCH_CPUS=${3:-1 2} VM_BENCH_MTUS=${4:-65520 1500} \
  VM_BENCH_PASST=$PASST \
  cargo bench --locked -q -p netbind-cli --bench vm

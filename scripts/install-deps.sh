#!/usr/bin/env bash
# Installs what netbind's tests need on Debian 12 (run as root). Idempotent.
# - containernetworking-plugins: the real CNI plugins (bridge, host-local, macvlan…) that
#   privileged tests call the way kubelet and Multus do;
# - iproute2, nftables: to create the tests' namespaces and to inspect rulesets;
# - qemu-system-x86, busybox-static, cpio, xz-utils, zstd: the testbed's QEMU guests (TCG) boot
#   Debian's kernel with an initramfs built from busybox (modules may come compressed);
# - iperf3, passt, slirp4netns: peers for the user-mode engine's tests and benchmarks;
# - isc-dhcp-client: a real DHCPv6 client (dhclient -6) for the DHCPv6 server's tests;
# - python3, curl, procps (sysctl), ca-certificates: tools the tests and benchmarks call;
# - graphviz: `dot`, which the tests of `netbind plan --output dot` run on its graphs.
# Then fetches the guest kernel (scripts/fetch-guest-kernel.sh: download, not install).
set -euo pipefail
packages=(containernetworking-plugins iproute2 nftables qemu-system-x86 busybox-static cpio
  xz-utils zstd iperf3 passt slirp4netns isc-dhcp-client python3 curl procps ca-certificates
  graphviz)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
"$(dirname "$0")/fetch-guest-kernel.sh"

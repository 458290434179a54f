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
# - graphviz: `dot`, which the tests of `netbind plan --output dot` run on its graphs;
# - iptables: Istio's capture rules are iptables-restore input (nftables back end).
# From bookworm-backports (the machine's own Debian archive, suite changed): QEMU 10.0 and
# libvirt 11.3, the versions KubeVirt's launcher runs closest to (its passt back end,
# vhost-user); libvirt's QEMU driver needs its `libvirt-qemu` user to exist even when a
# test configures another.
# Then fetches the guest kernel (scripts/fetch-guest-kernel.sh: download, not install).
set -euo pipefail
packages=(containernetworking-plugins iproute2 nftables qemu-system-x86 busybox-static cpio
  xz-utils zstd iperf3 passt slirp4netns isc-dhcp-client python3 curl procps ca-certificates
  graphviz iptables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

backports=/etc/apt/sources.list.d/netbind-backports.sources
if [ ! -f "$backports" ]; then
  # The first stanza of the machine's own sources, for bookworm-backports.
  awk 'BEGIN { RS = ""; FS = "\n" } NR == 1 {
         for (i = 1; i <= NF; i++) {
           if ($i ~ /^Suites:/) print "Suites: bookworm-backports"
           else if ($i !~ /^#/) print $i
         }
       }' /etc/apt/sources.list.d/debian.sources > "$backports.tmp"
  grep -q '^URIs:' "$backports.tmp" || { echo "install-deps: no URIs in /etc/apt/sources.list.d/debian.sources" >&2; exit 1; }
  mv "$backports.tmp" "$backports"
fi
qemu_major=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null | sed -E 's/^[0-9]+://; s/[.].*//')
libvirt_ok=$(dpkg-query -W -f='${Status} ${Version}' libvirt-daemon-driver-qemu 2>/dev/null | grep -c 'installed 11' || true)
if [ "${qemu_major:-0}" -lt 10 ] || [ "$libvirt_ok" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Named from backports; apt takes from there what they need, the rest stays stable.
  apt-get install -y -qq --no-install-recommends qemu-system-x86/bookworm-backports \
    libvirt-daemon-driver-qemu/bookworm-backports libvirt-daemon/bookworm-backports \
    libvirt-clients/bookworm-backports
fi
getent passwd libvirt-qemu >/dev/null ||
  useradd --system --no-create-home --shell /usr/sbin/nologin libvirt-qemu
"$(dirname "$0")/fetch-guest-kernel.sh"

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
# - iptables: Istio's capture rules are iptables-restore input (nftables back end);
# - make, gcc, libc6-dev: to build the benchmark's passt (below).
# From bookworm-backports (the machine's own Debian archive, suite changed): QEMU 10.0 and
# libvirt 11.3, the versions KubeVirt's launcher runs closest to (its passt back end,
# vhost-user); libvirt's QEMU driver needs its `libvirt-qemu` user to exist even when a
# test configures another.
# The benchmark peer (scripts/bench-vm.sh): upstream passt 2025_05_03.587980c, the release with
# vhost-user and migration (Debian 12's passt is a 2023 build without vhost-user), built from
# the orig tarball of Debian trixie's source package (a deb-src entry of its own, derived from
# the machine's sources like the backports one) into /opt/netbind-peers/, where it shadows
# nothing. Only the upstream tarball is used: apt-get also tries the .dsc, which the archive
# may not serve, so the tarball is checked against the checksum apt lists instead.
# Then fetches the guest kernel (scripts/fetch-guest-kernel.sh: download, not install).
set -euo pipefail
packages=(containernetworking-plugins iproute2 nftables qemu-system-x86 busybox-static cpio
  xz-utils zstd iperf3 passt slirp4netns isc-dhcp-client python3 curl procps ca-certificates
  graphviz iptables make gcc libc6-dev)
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

passt_upstream=2025_05_03.587980c
passt_orig=passt_0.0~git20250503.587980c.orig.tar.xz
passt_dir=/opt/netbind-peers/passt-2025_05_03
# (This passt's --version prints nothing into a pipe: the version is looked for in the binary.)
if ! grep -aqF "$passt_upstream" "$passt_dir/passt" 2>/dev/null; then
  trixie_src=/etc/apt/sources.list.d/netbind-trixie-src.sources
  if [ ! -f "$trixie_src" ]; then
    awk 'BEGIN { RS = ""; FS = "\n" } NR == 1 {
           for (i = 1; i <= NF; i++) {
             if ($i ~ /^Types:/) print "Types: deb-src"
             else if ($i ~ /^Suites:/) print "Suites: trixie"
             else if ($i !~ /^#/) print $i
           }
         }' /etc/apt/sources.list.d/debian.sources > "$trixie_src.tmp"
    grep -q '^URIs:' "$trixie_src.tmp" || { echo "install-deps: no URIs in /etc/apt/sources.list.d/debian.sources" >&2; exit 1; }
    mv "$trixie_src.tmp" "$trixie_src"
  fi
  apt-get update -qq
  build=$(mktemp -d /tmp/netbind-passt-build.XXXXXX)
  # Fails on the .dsc when the archive does not serve it; the tarball is what counts.
  (cd "$build" && apt-get source --download-only -qq passt/trixie >"$build/apt.log" 2>&1) || true
  want=$(apt-cache showsrc passt | awk -v f="$passt_orig" '/^Checksums-Sha256:/ { c = 1; next }
         /^[^ ]/ { c = 0 } c && $3 == f { print $1; exit }')
  if [ ! -f "$build/$passt_orig" ] || [ -z "$want" ] ||
     [ "$(sha256sum "$build/$passt_orig" | cut -d' ' -f1)" != "$want" ]; then
    echo "install-deps: could not download $passt_orig from trixie's deb-src (or its checksum differs from apt's: '${want:-none listed}'); apt-get said:" >&2
    cat "$build/apt.log" >&2
    rm -rf "$build"
    exit 1
  fi
  tar -C "$build" -xf "$build/$passt_orig"
  # Serial, default target: in parallel, or named alone, passt can inherit passt.avx2's flags.
  make -C "$build/passt-$passt_upstream" VERSION="$passt_upstream" \
    >"$build/make.log" 2>&1 || { cat "$build/make.log" >&2; echo "install-deps: building passt failed (in $build)" >&2; exit 1; }
  mkdir -p "$passt_dir"
  install -m 755 "$build/passt-$passt_upstream"/{passt,passt.avx2,passt-repair} "$passt_dir/"
  rm -rf "$build"
  grep -aqF "$passt_upstream" "$passt_dir/passt" ||
    { echo "install-deps: $passt_dir/passt is not $passt_upstream" >&2; exit 1; }
fi
"$(dirname "$0")/fetch-guest-kernel.sh"

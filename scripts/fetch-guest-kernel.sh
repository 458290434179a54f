#!/usr/bin/env bash
# Fetches the Linux kernel that netbind's test guests boot, without installing it.
#
# Resolves the current Debian kernel package behind `linux-image-amd64`
# (e.g. linux-image-6.1.0-56-amd64), downloads it with `apt-get download`, extracts it with
# `dpkg -x` into $NETBIND_GUEST_CACHE (default /var/cache/netbind-testbed/<version>/) and
# keeps only what a guest needs: `boot/vmlinuz-*`, its config and the virtio-net module
# chain (decompressed: busybox insmod cannot read .ko.xz). When the kernel supports PVH
# boot, also the uncompressed ELF `vmlinux` cut out of the bzImage: QEMU boots it directly,
# skipping the in-guest decompression that costs seconds under TCG.
# Idempotent: a cache directory holding a `complete` stamp is reused as is.
# Prints on stdout:  `kernel <path>`,  `modules <dir>`  and, if available,  `vmlinux <path>`.
# Run as root on Debian 12 (the testbed calls this script itself when the cache is empty).
set -euo pipefail

cache_root="${NETBIND_GUEST_CACHE:-/var/cache/netbind-testbed}"
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net)

pkg="${NETBIND_GUEST_KERNEL_PACKAGE:-}"
if [ -z "$pkg" ]; then
  pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
fi
if [ -z "$pkg" ]; then
  apt-get update -qq >&2
  pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
fi
if [ -z "$pkg" ]; then
  echo "fetch-guest-kernel: cannot resolve the kernel package behind linux-image-amd64 (apt-cache depends linux-image-amd64 gave nothing); run apt-get update" >&2
  exit 1
fi
version="${pkg#linux-image-}"
dest="$cache_root/$version"

mkdir -p "$cache_root"
# One fetch at a time: test processes may call this concurrently.
exec 9>"$cache_root/.lock"
flock 9
if [ ! -f "$dest/complete" ]; then
  work="$(mktemp -d "$cache_root/.fetch.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) || {
    apt-get update -qq >&2
    (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2)
  }
  dpkg -x "$work"/"$pkg"_*.deb "$work/x"
  mkdir -p "$work/out/modules"
  cp "$work/x/boot/vmlinuz-$version" "$work/out/vmlinuz"
  cp "$work/x/boot/config-$version" "$work/out/config"
  for m in "${modules[@]}"; do
    f="$(find "$work/x/lib/modules/$version" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n1)"
    if [ -z "$f" ]; then
      echo "fetch-guest-kernel: module $m not found in $pkg" >&2
      exit 1
    fi
    case "$f" in
      *.ko.xz) xz -dc "$f" >"$work/out/modules/$m.ko" ;;
      *.ko.zst) zstd -qdc "$f" >"$work/out/modules/$m.ko" ;;
      *.ko.gz) gzip -dc "$f" >"$work/out/modules/$m.ko" ;;
      *) cp "$f" "$work/out/modules/$m.ko" ;;
    esac
  done
  printf '%s\n' "${modules[@]}" >"$work/out/modules/order"
  echo "$pkg" >"$work/out/package"
  touch "$work/out/complete"
  rm -rf "$dest"
  mv "$work/out" "$dest"
fi

# The payload of the bzImage: the first compressed stream (xz, zstd or gzip) is vmlinux.
extract_vmlinux() {
  local magic tool off
  for pair in $'\xfd7zXZ:xz -dcq --single-stream' $'\x28\xb5\x2f\xfd:zstd -dcq' $'\x1f\x8b\x08:gzip -dcq'; do
    magic="${pair%%:*}"
    tool="${pair#*:}"
    off="$(LC_ALL=C grep -obUa "$magic" "$1" | head -n1 | cut -d: -f1)"
    [ -n "$off" ] || continue
    if tail -c +$((off + 1)) "$1" | $tool >"$2.tmp" 2>/dev/null || [ -s "$2.tmp" ]; then
      if [ "$(head -c 4 "$2.tmp")" = $'\x7fELF' ]; then
        mv "$2.tmp" "$2"
        return 0
      fi
    fi
  done
  rm -f "$2.tmp"
  return 1
}
if [ ! -f "$dest/vmlinux" ] && grep -q '^CONFIG_PVH=y' "$dest/config" 2>/dev/null; then
  extract_vmlinux "$dest/vmlinuz" "$dest/vmlinux" ||
    echo "fetch-guest-kernel: could not extract vmlinux from $dest/vmlinuz; guests boot the bzImage (slower)" >&2
fi

echo "kernel $dest/vmlinuz"
echo "modules $dest/modules"
if [ -f "$dest/vmlinux" ]; then echo "vmlinux $dest/vmlinux"; fi

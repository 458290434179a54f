#!/usr/bin/env bash
# Installs what netbind's tests need on Debian 12 (run as root). Idempotent.
# - containernetworking-plugins: the real CNI plugins (bridge, host-local, macvlan…) that
#   privileged tests call the way kubelet and Multus do;
# - iproute2, nftables: to create the tests' namespaces and to inspect rulesets.
set -euo pipefail
packages=(containernetworking-plugins iproute2 nftables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

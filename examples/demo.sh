#!/usr/bin/env bash
# netbind end to end, in about a minute: a pod made by the real CNI plugins, `netbind up`
# for a VM with a masquerade interface (cluster network) and a bridged one (a Multus
# network), a QEMU guest booted on the devices `up` wrote to --domain-out, the guest's
# DHCP leases, ping and HTTP both ways, then `netbind down`.
#
# Run as root on Debian 12 after scripts/install-deps.sh (CNI plugins, QEMU, busybox,
# python3, curl, the guest kernel):
#     examples/demo.sh
# Builds netbind and the test guest's image maker (cargo build) unless NETBIND_BIN and
# NETBIND_GUEST_IMAGE name them. Everything lives in namespaces of its own
# (nbdemo-<pid>-node/-pod/-peer/-blue) and a temp dir, all removed at the end, also when a
# step fails or on Ctrl-C; nothing touches the machine's own links, routes or rules.
#
#  node netns                                  pod netns                   guest (QEMU, TCG)
#   cni0  10.88.0.1/24 ─── veth ── eth0 10.88.0.2 ─ nft NAT ─ k6t-eth0 ─ tap0 ── eth0 10.0.2.2 (DHCP)
#         └── veth ── peer netns eth0 10.88.0.3 (HTTP :8080)
#   blue0 (L2) ─────── veth ── pod16477688c0e ─── bridge k6t-… ─ tap… ──────── eth1 10.88.1.2 (DHCP)
#         └── veth ── blue netns net1 10.88.1.3 (HTTP :8080)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$(date +%s%N)
elapsed() { local ms=$((($(date +%s%N) - start) / 1000000)); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }
step_no=0
step() {
  step_no=$((step_no + 1))
  printf '\n== %d. %s  [%s]\n' "$step_no" "$*" "$(elapsed)"
}
say() { printf '   %s\n' "$*"; }
die() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it creates network namespaces)"
for t in ip nft qemu-system-x86_64 busybox python3 curl setpriv /usr/lib/cni/bridge /usr/lib/cni/host-local; do
  command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || die "$t is missing; run scripts/install-deps.sh"
done

tag="nbdemo-$$"
node="$tag-node" pod="$tag-pod" peer="$tag-peer" blue="$tag-blue"
work="$(mktemp -d /tmp/nbdemo.XXXXXX)"
chmod 755 "$work"
manifest="$root/examples/vm-demo.yaml"
state="$work/state"
qemu_pid="" up_pid="" http_pids=() cni_added=()

netbind_down_done=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ "$rc" -ne 0 ]; then
    echo "demo: cleaning up after a failure (exit $rc)" >&2
    [ -s "$work/up.log" ] && { echo "--- netbind up said:"; sed 's/^/   /' "$work/up.log"; } >&2
    [ -s "$work/console.log" ] && { echo "--- guest console (last 40 lines):"; tail -n 40 "$work/console.log"; } >&2
  fi
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  if [ -z "$netbind_down_done" ] && [ -e "$state/journal.json" ]; then
    "$NETBIND_BIN" down "$manifest" --netns "$pod" --state-dir "$state" >&2
  fi
  [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null
  for p in "${http_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  # CNI DEL, newest first, as kubelet and Multus do when the pod goes.
  for ((i = ${#cni_added[@]} - 1; i >= 0; i--)); do
    # shellcheck disable=SC2086
    cni DEL ${cni_added[$i]} >/dev/null 2>&1
  done
  for ns in "$blue" "$peer" "$pod" "$node"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$work" "/etc/netns/$pod"
  if [ "$rc" -eq 0 ]; then
    printf '\ndemo: done in %s; namespaces and temp files removed\n' "$(elapsed)"
  else
    echo "demo: FAILED (exit $rc); namespaces and temp files removed" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cni COMMAND CONFIG NETNS IFNAME: runs the plugin of CONFIG as kubelet/Multus do, inside
# the node namespace (so bridges and host-side veths live there), for the container NETNS.
cni() {
  local command=$1 config=$2 netns=$3 ifname=$4 plugin
  plugin=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["type"])' "$config")
  ip netns exec "$node" env CNI_COMMAND="$command" CNI_CONTAINERID="$netns" \
    CNI_NETNS="/run/netns/$netns" CNI_IFNAME="$ifname" CNI_PATH=/usr/lib/cni \
    "/usr/lib/cni/$plugin" <"$config"
}
# cni_add VAR CONFIG NETNS IFNAME: ADD, remembered for DEL; VAR gets the first address.
cni_add() {
  local var=$1 out
  shift
  out=$(cni ADD "$@") || die "CNI ADD $*: $out"
  cni_added+=("$*")
  out=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ips"][0]["address"].split("/")[0])' "$out")
  printf -v "$var" %s "$out"
}

step "binaries"
if [ -z "${NETBIND_BIN:-}" ] || [ -z "${NETBIND_GUEST_IMAGE:-}" ]; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  say "cargo build -p netbind-cli -p netbind-testbed (the netbind binary and the guest image maker)"
  cargo build -q -p netbind-cli -p netbind-testbed --bins
  dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"
  NETBIND_BIN="${NETBIND_BIN:-$dir/netbind}"
  NETBIND_GUEST_IMAGE="${NETBIND_GUEST_IMAGE:-$dir/netbind-guest-image}"
fi
say "netbind: $NETBIND_BIN"

step "namespaces: node $node, pod $pod, peers $peer and $blue"
for ns in "$node" "$pod" "$peer" "$blue"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done

step "CNI: the cluster network (bridge + host-local) gives the pod eth0, and a peer"
cat >"$work/cluster.json" <<EOF
{"cniVersion": "1.0.0", "name": "cluster", "type": "bridge", "bridge": "cni0",
 "isGateway": true, "ipMasq": false,
 "ipam": {"type": "host-local", "dataDir": "$work/ipam",
          "ranges": [[{"subnet": "10.88.0.0/24", "gateway": "10.88.0.1"}]],
          "routes": [{"dst": "0.0.0.0/0"}]}}
EOF
cni_add pod_ip "$work/cluster.json" "$pod" eth0
cni_add peer_ip "$work/cluster.json" "$peer" eth0
say "pod eth0 $pod_ip, peer $peer_ip (gateway 10.88.0.1 on cni0 in the node namespace)"
# The pod's DNS as kubelet writes it (here for `ip netns exec`; netbind reads it).
mkdir -p "/etc/netns/$pod"
printf 'nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n' >"/etc/netns/$pod/resolv.conf"

step "CNI: the Multus network 'blue' (bridge, L2) as pod link pod<sha256(blue)[:11]>, and a peer"
blue_link="pod$(printf %s blue | sha256sum | cut -c1-11)"
cat >"$work/blue.json" <<EOF
{"cniVersion": "1.0.0", "name": "blue", "type": "bridge", "bridge": "blue0",
 "isGateway": false, "ipMasq": false,
 "ipam": {"type": "host-local", "dataDir": "$work/ipam",
          "ranges": [[{"subnet": "10.88.1.0/24"}]]}}
EOF
cni_add pod_blue_ip "$work/blue.json" "$pod" "$blue_link"
cni_add blue_peer_ip "$work/blue.json" "$blue" net1
say "pod $blue_link $pod_blue_ip (the guest will get it), peer $blue_peer_ip"
ip -n "$pod" -br addr | sed 's/^/   pod: /'

step "peers serve HTTP on :8080 (python3 http.server; its log shows who connects)"
mkdir -p "$work/www"
echo "hello from a peer" >"$work/www/index.html"
for p in "$peer:$peer_ip" "$blue:$blue_peer_ip"; do
  ip netns exec "${p%%:*}" python3 -m http.server 8080 --bind "${p#*:}" --directory "$work/www" \
    >"$work/http-${p%%:*}.log" 2>&1 &
  http_pids+=($!)
done

step "netbind up $manifest --netns $pod --domain-out domain.json"
"$NETBIND_BIN" plan "$manifest" --netns "$pod" | sed 's/^/   /'
"$NETBIND_BIN" up "$manifest" --netns "$pod" --state-dir "$state" --domain-out "$work/domain.json" \
  >"$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 300); do
  [ -s "$work/domain.json" ] && break
  kill -0 "$up_pid" 2>/dev/null || die "netbind up exited before writing --domain-out"
  sleep 0.1
done
[ -s "$work/domain.json" ] || die "netbind up wrote no --domain-out within 30 s"
sed 's/^/   up: /' "$work/up.log"
mapfile -t qemu_args < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["qemuArgs"]))' "$work/domain.json")
say "qemuArgs: ${qemu_args[*]}"
ip -n "$pod" -br link | sed 's/^/   pod: /'

step "the test guest: busybox initramfs + Debian's kernel (crates/testbed)"
cat >"$work/guest.sh" <<'EOF'
pod_nic=$(nic_by_mac 02:00:00:de:00:01)
blue_nic=$(nic_by_mac 02:00:00:de:00:02)
echo "guest: DHCP on $pod_nic (masquerade) and $blue_nic (bridge)"
dhcp4 "$pod_nic" >/dev/null
dhcp4 "$blue_nic" >/dev/null
for n in "$pod_nic" "$blue_nic"; do
  . /run/dhcp-$n.env
  echo "guest: lease on $n: $ip/$mask router=${router:-none} dns=$dns mtu=$mtu server=$serverid"
done
ip -4 route | sed 's/^/guest: route /'
for t in @PEER@ @BLUEPEER@; do
  if ping -c 2 -W 3 $t > /tmp/ping 2>&1; then
    echo "guest: ping $t: $(grep -o '[0-9]* packets received' /tmp/ping), $(grep -o 'min/avg/max = [^ ]*' /tmp/ping) ms"
  else
    echo "guest: ping $t FAILED"
  fi
  # busybox nc, not wget: the static busybox's wget crashes resolving through glibc's NSS.
  reply=$(printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' $t | nc -w 5 $t 8080 | tr -d '\r')
  echo "guest: HTTP GET http://$t:8080/ -> $(echo "$reply" | head -n1) \"$(echo "$reply" | tail -n1)\""
  echo "$reply" | grep -q '^hello from a peer' || echo "guest: HTTP to $t FAILED"
done
mkdir -p /www
echo "hello from the guest" > /www/index.html
httpd -p 80 -h /www
echo "guest: serving HTTP on :80"
echo LISTENING
sleep 600
EOF
sed -i "s/@PEER@/$peer_ip/; s/@BLUEPEER@/$blue_peer_ip/" "$work/guest.sh"
image=$("$NETBIND_GUEST_IMAGE" "$work" "$work/guest.sh")
kernel=$(awk '/^kernel /{print $2}' <<<"$image")
initrd=$(awk '/^initrd /{print $2}' <<<"$image")
chmod 644 "$initrd"
say "kernel $kernel, initramfs $initrd"

step "QEMU (TCG) in the pod namespace as uid/gid 107 (the taps' owner), on the --domain-out arguments"
qemu=(qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nodefaults -no-user-config -display none
  -no-reboot -serial stdio -kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 panic=-1 quiet"
  "${qemu_args[@]}")
as_qemu=(setpriv --reuid 107 --regid 107 --clear-groups)
if ! "${as_qemu[@]}" sh -c '[ -r /dev/net/tun ] && [ -w /dev/net/tun ]'; then
  # Debian's udev makes /dev/net/tun 0666; a container runtime's /dev may have it 0600.
  say "/dev/net/tun is $(stat -c %A /dev/net/tun) here: uid 107 cannot open it, so QEMU runs as root"
  as_qemu=()
fi
say "ip netns exec $pod ${as_qemu[*]} ${qemu[*]}"
ip netns exec "$pod" "${as_qemu[@]}" "${qemu[@]}" </dev/null >"$work/console.log" 2>"$work/qemu.stderr" &
qemu_pid=$!
for _ in $(seq 1200); do
  grep -q '^LISTENING' "$work/console.log" 2>/dev/null && break
  kill -0 "$qemu_pid" 2>/dev/null || die "QEMU exited: $(cat "$work/qemu.stderr")"
  sleep 0.1
done
grep -q '^LISTENING' "$work/console.log" || die "the guest did not get ready within 120 s"

step "inside the guest: DHCP leases, then ping and HTTP to both peers"
grep -a '^guest: ' "$work/console.log" | sed 's/^/   /'
grep -aq 'FAILED' "$work/console.log" && die "the guest could not reach a peer"
grep -a -c ' lease on ' "$work/console.log" | grep -qx 2 || die "the guest did not get both leases"

step "the peers saw (masquerade: the pod's address $pod_ip; bridge: the guest's own)"
sed 's/^/   peer: /' "$work/http-$peer.log" | grep GET
sed 's/^/   blue: /' "$work/http-$blue.log" | grep GET

step "from the peers to the guest: HTTP to the pod address (DNAT to the guest) and to the bridged guest"
out=$(ip netns exec "$peer" curl -s --max-time 10 "http://$pod_ip/") || die "peer -> $pod_ip:80 failed"
say "peer: curl http://$pod_ip/ -> $out"
out=$(ip netns exec "$blue" curl -s --max-time 10 "http://$pod_blue_ip/") || die "blue peer -> $pod_blue_ip:80 failed"
say "blue: curl http://$pod_blue_ip/ -> $out"
ip netns exec "$blue" busybox ping -c 2 -W 3 "$pod_blue_ip" >"$work/ping" || die "blue peer cannot ping the guest"
say "blue: ping $pod_blue_ip: $(grep -o '[0-9]* packets received' "$work/ping"), $(grep -o 'min/avg/max = [^ ]*' "$work/ping") ms"
ip netns exec "$peer" busybox ping -c 2 -W 3 "$pod_ip" >"$work/ping" || die "peer cannot ping the pod"
say "peer: ping $pod_ip: $(grep -o '[0-9]* packets received' "$work/ping") (masquerade: the pod answers ICMP itself, as in KubeVirt)"

step "netbind status"
"$NETBIND_BIN" status "$manifest" --state-dir "$state" | sed 's/^/   /'

step "stop the guest, netbind down (it stops the serving up first)"
kill "$qemu_pid"
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
"$NETBIND_BIN" down "$manifest" --netns "$pod" --state-dir "$state" 2>&1 | sed 's/^/   /'
netbind_down_done=1
up_rc=0
wait "$up_pid" || up_rc=$?
up_pid=""
[ "$up_rc" -eq 0 ] || die "netbind up exited with $up_rc on SIGTERM"
sed 's/^/   up: /' "$work/up.log" | tail -n 5
ip -n "$pod" -br addr | sed 's/^/   pod: /'

#!/usr/bin/env bash
# Benchmark of netbind's user-mode engine against Debian's pasta and slirp4netns, with the
# kernel's veth path as the ceiling. Not a test: prints a markdown table.
#
# Layout for every contender: namespace HOST stands for the pod/host (a link with an
# address and a default route, its own loopback where the servers listen), namespace NS
# is the "guest" (a process-like namespace with a tap, or a veth for the ceiling).
# Traffic NS→host and host→NS goes to the host's loopback through the gateway address
# the engine maps there (netbind, pasta: 10.99.0.1; slirp4netns: 10.0.2.2); the veth
# ceiling goes straight to the HOST end of the veth.
#
# Measured per contender: iperf3 single TCP stream, SECONDS each, NS→host (client in NS)
# and host→NS (`-R`), at MTU 65520 and 1500; TCP request/response latency (1-byte
# ping-pong, 2,000 round trips, each timed) and connections per second (connect, 1-byte
# exchange, close, for 3 s), both at MTU 65520; resident memory (VmRSS) of the engine
# process at the end of its runs; the engine's CPU time per round trip during the latency
# run (what busy polling costs: netbind runs a second time with `--busy-poll 0` to show
# both sides of that trade; the peers do not poll). Latency and connections per second are measured twice:
# as the scheduler places the processes, and with the engine, the echo server and the
# client pinned to one CPU. On a small VM the first is dominated by cross-CPU wakeups
# (inter-processor interrupts, expensive under virtualisation) and varies with where the
# scheduler happens to put the three processes; the second has no cross-CPU wakeups and
# measures what each engine itself costs per request. The probes are the same for everyone: the same
# python client in NS, the same echo server on the host's loopback, the same message.
#
# Rounds: the contenders take turns, ROUNDS times (veth, netbind, netbind --busy-poll 0, pasta,
# veth, ...), so that a busy moment of the machine falls on all of them rather than on
# one. The table shows the median over the rounds; for latency, the median and the
# 99th percentile of all round trips of all rounds. The last column counts the rounds in
# which netbind beat both peers, so a median that one lucky or unlucky round moved shows.
#
# Usage (as root): scripts/bench-usernet.sh [SECONDS] [ROUNDS]   (defaults 4 and 3; needs
# iperf3, passt, slirp4netns, python3; builds target/release/netbind when missing)
set -euo pipefail

SECS=${1:-4}
ROUNDS=${2:-3}
LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NETBIND=${NETBIND:-$ROOT/target/release/netbind}
TAG=nbb$$
H=${TAG}h
N=${TAG}n
WORK=$(mktemp -d /tmp/bench-usernet.XXXXXX)
PIDS=()

die() { echo "bench-usernet: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (namespaces, taps)"
for t in iperf3 pasta slirp4netns python3 ip taskset; do command -v $t >/dev/null || die "missing $t"; done
if [ ! -x "$NETBIND" ]; then (cd "$ROOT" && cargo build --release -p netbind-cli >&2); fi

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  ip netns del $H 2>/dev/null || true
  ip netns del $N 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/echo.py" <<'EOF'
import socket, sys, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 5300)); l.listen(512)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(4096)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
cat > "$WORK/rr.py" <<'EOF'
import socket, sys, time
host, mode = sys.argv[1], sys.argv[2]
if mode == "latency":  # one line per round trip, in µs
    s = socket.create_connection((host, 5300)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(100): s.sendall(b"x"); s.recv(1)
    clock = time.perf_counter_ns; out = []
    for _ in range(2000):
        t = clock(); s.sendall(b"x"); s.recv(1); out.append(clock() - t)
    print("\n".join("%.1f" % (x / 1e3) for x in out))
else:
    n = 0; end = time.perf_counter() + float(sys.argv[3])
    t = time.perf_counter()
    while time.perf_counter() < end:
        s = socket.create_connection((host, 5300)); s.sendall(b"x"); s.recv(1); s.close(); n += 1
    print("%.0f" % (n / (time.perf_counter() - t)))
EOF

gbits() { python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'; }
iperf() { # iperf DST [-R]
  ip netns exec $N iperf3 -c "$1" -p 5201 -t "$SECS" -J ${2:-} 2>/dev/null | gbits || echo "fail"
}
# CPU time of every thread of a process, in ns (schedstat: exact, unlike the ticks of stat).
cpu_ns() { [ -n "$1" ] && cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}' || echo "-"; }
rss_of() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "-"; }

# A fresh HOST/NS pair; HOST gets servers on all addresses.
setup() {
  ip netns del $H 2>/dev/null || true; ip netns del $N 2>/dev/null || true
  ip netns add $H; ip netns add $N
  ip -n $H link set lo up; ip -n $N link set lo up
  ip netns exec $H iperf3 -s -p 5201 -D --pidfile "$WORK/iperf.pid"
  ip netns exec $H python3 "$WORK/echo.py" & ECHO=$!; PIDS+=($ECHO)
  sleep 0.3
}
host_link() { # the pod's link: an address and a default route (for the engines to copy)
  ip -n $H link add eth0 mtu "$1" type veth peer name peer0
  ip -n $H addr add 10.99.0.2/24 dev eth0
  ip -n $H link set eth0 up; ip -n $H link set peer0 up
  ip -n $H route add default via 10.99.0.1
  ip netns exec $H sysctl -qw net.ipv4.ping_group_range="0 2147483647"
}
teardown() {
  [ -f "$WORK/iperf.pid" ] && kill "$(cat "$WORK/iperf.pid")" 2>/dev/null || true
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  PIDS=(); sleep 0.5
}

declare -A R
pct() { python3 -c "import sys
v = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
print('%.0f' % v[min(len(v) - 1, int(len(v) * float(sys.argv[2])))] if v else '-')" "$1" "$2" 2>/dev/null || echo "-"; }
# latency FILE KEY [taskset args...]: one run of 2000 round trips, kept for the pooled
# percentiles and summarised per round (for the count of rounds won).
latency() {
  local file=$1 key=$2; shift 2
  local cpu0; cpu0=$(cpu_ns "$EPID")
  "$@" ip netns exec $N python3 "$WORK/rr.py" $DST latency >"$WORK/round" 2>/dev/null || true
  add "$c,${key}cpu" "$(python3 -c "import sys
a, b = sys.argv[1], sys.argv[2]
print('%.1f' % ((int(b) - int(a)) / 2000 / 1e3) if a.isdigit() and b.isdigit() else 'n/a')" "$cpu0" "$(cpu_ns "$EPID")")"
  cat "$WORK/round" >>"$WORK/$file.$c"
  add "$c,${key}r" "$(pct "$WORK/round" 0.5)"; add "$c,${key}p99r" "$(pct "$WORK/round" 0.99)"
}
# start_CONTENDER MTU: sets DST (where NS reaches the host's loopback) and EPID.
start_veth() {
  ip -n $H link add v0 mtu "$1" type veth peer name v1 netns $N
  ip -n $N link set v1 mtu "$1"
  ip -n $H addr add 10.99.9.1/24 dev v0; ip -n $N addr add 10.99.9.2/24 dev v1
  ip -n $H link set v0 up; ip -n $N link set v1 up
  DST=10.99.9.1; EPID=""
}
start_netbind() { # MTU [more options]
  host_link "$1"
  ip netns exec $H "$NETBIND" usernet --netns $N --mtu "$1" -t none -u none "${@:2}" \
    2>"$WORK/netbind.log" & EPID=$!
  PIDS+=($EPID); DST=10.99.0.1
}
start_netbind_nopoll() { start_netbind "$1" --busy-poll 0; }
start_pasta() {
  host_link "$1"
  ip netns exec $H pasta --netns $N --runas 0:0 --config-net -f -t none -u none -T none -U none --mtu "$1" \
    >"$WORK/pasta.log" 2>&1 & EPID=$!
  PIDS+=($EPID); DST=10.99.0.1
}
start_slirp4netns() {
  host_link "$1"
  ip netns exec $N sleep 100000 & local holder=$!; PIDS+=($holder)
  ip netns exec $H slirp4netns --configure --mtu="$1" $holder tap0 >"$WORK/slirp.log" 2>&1 & EPID=$!
  PIDS+=($EPID); DST=10.0.2.2
}

CONTENDERS=(veth netbind netbind_nopoll pasta slirp4netns)
# Each value of each round is appended to R[key] (space-separated); the table takes the
# median. Latency samples go to a file per contender.
add() { R[$1]="${R[$1]:-} $2"; }
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CONTENDERS[@]}"; do
    for mtu in 65520 1500; do
      setup
      "start_$c" $mtu
      sleep 2
      up=$(iperf $DST); down=$(iperf $DST -R)
      add "$c,$mtu,up" "$up"; add "$c,$mtu,down" "$down"
      if [ $mtu = 65520 ]; then
        latency lat lat
        add "$c,cps" "$(ip netns exec $N python3 "$WORK/rr.py" $DST cps 3 2>/dev/null || echo fail)"
        # The same on one CPU (every thread of the engine and of the echo server).
        taskset -a -p -c 0 "$ECHO" >/dev/null
        if [ -n "$EPID" ]; then taskset -a -p -c 0 "$EPID" >/dev/null; fi
        sleep 1.2 # an engine checks its CPUs once a second (netbind stops polling on one)
        latency lat1 lat1 taskset -c 0
        add "$c,cps1" "$(taskset -c 0 ip netns exec $N python3 "$WORK/rr.py" $DST cps 3 2>/dev/null || echo fail)"
        add "$c,rss" "$( [ -n "$EPID" ] && rss_of "$EPID" || echo "n/a")"
      fi
      echo "bench-usernet: round $round, $c mtu $mtu: $up / $down Gbit/s" >&2
      teardown
    done
  done
done
# Per-round values, in round order, before they become medians (for `wins`).
declare -A RAW
for k in "${!R[@]}"; do RAW[$k]=${R[$k]}; done
median() { python3 -c "import sys, statistics
v = [float(x) for x in sys.argv[1:] if x not in ('fail', '-', 'n/a')]
print(('%.2f' % statistics.median(v)).rstrip('0').rstrip('.') if v else '-')" "$@"; }
for k in "${!R[@]}"; do
  # shellcheck disable=SC2086
  R[$k]=$(median ${R[$k]})
done
for c in "${CONTENDERS[@]}"; do
  R[$c,lat]=$(pct "$WORK/lat.$c" 0.5)
  R[$c,p99]=$(pct "$WORK/lat.$c" 0.99)
  R[$c,lat1]=$(pct "$WORK/lat1.$c" 0.5)
  R[$c,p991]=$(pct "$WORK/lat1.$c" 0.99)
done

ratio() { python3 -c "import sys
a, b = sys.argv[1], sys.argv[2]
try: print('%.0f%%' % (float(a) / float(b) * 100))
except Exception: print('-')" "$1" "$2"; }
# wins KEY max|min: in how many rounds netbind beat both peers.
wins() { python3 -c "import sys
def vals(s): return [float(x) if x not in ('fail', '-', 'n/a') else None for x in s.split()]
n, p, s = vals(sys.argv[2]), vals(sys.argv[3]), vals(sys.argv[4])
better = (lambda a, b: a > b) if sys.argv[1] == 'max' else (lambda a, b: a < b)
won = sum(1 for a, b, c in zip(n, p, s) if a is not None and all(x is None or better(a, x) for x in (b, c)))
print('%d/%d' % (won, len(n)) if n else '-')" "$2" "${RAW[netbind,$1]:-}" "${RAW[pasta,$1]:-}" "${RAW[slirp4netns,$1]:-}"; }
best() { python3 -c "import sys
v = [float(x) for x in sys.argv[2:] if x not in ('fail', '-', 'n/a')]
print(('%g' % (min(v) if sys.argv[1] == 'min' else max(v))) if v else '-')" "$@"; }

echo
echo "### usernet benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n), $(nproc) cores, kernel $(uname -r)"
echo "CPU: $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'); load average at start: $LOAD0, at end: $(cut -d" " -f1-3 /proc/loadavg)"
echo "$ROUNDS interleaved rounds of ${SECS} s iperf3 runs; medians over the rounds (latency: over all $((ROUNDS * 2000)) round trips)"
echo
echo "| metric | veth (ceiling) | netbind | netbind --busy-poll 0 | pasta | slirp4netns | netbind / veth | netbind / best peer | rounds netbind beat both |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
row() { # label key better(max|min) [per-round key]
  local v=${R[veth,$2]} n=${R[netbind,$2]} n0=${R[netbind_nopoll,$2]} p=${R[pasta,$2]} s=${R[slirp4netns,$2]}
  local b; b=$(best "$3" "$p" "$s")
  local rv rb
  if [ "$3" = max ]; then rv=$(ratio "$n" "$v"); rb=$(ratio "$n" "$b"); else rv=$(ratio "$v" "$n"); rb=$(ratio "$b" "$n"); fi
  echo "| $1 | $v | $n | $n0 | $p | $s | $rv | $rb | $(wins "${4:-$2}" "$3") |"
}
row "TCP NS→host, MTU 65520 (Gbit/s)" 65520,up max
row "TCP host→NS, MTU 65520 (Gbit/s)" 65520,down max
row "TCP NS→host, MTU 1500 (Gbit/s)" 1500,up max
row "TCP host→NS, MTU 1500 (Gbit/s)" 1500,down max
row "TCP request/response latency, median (µs, lower is better)" lat min latr
row "TCP request/response latency, 99th percentile (µs)" p99 min latp99r
row "TCP connections per second" cps max
row "TCP request/response latency on one CPU, median (µs)" lat1 min lat1r
row "TCP request/response latency on one CPU, 99th percentile (µs)" p991 min lat1p99r
row "TCP connections per second on one CPU" cps1 max
row "engine CPU time per round trip, latency run (µs, lower is better)" latcpu min
row "engine CPU time per round trip, latency run on one CPU (µs)" lat1cpu min
echo "| engine VmRSS after its runs (MiB, lower is better) | n/a | ${R[netbind,rss]} | ${R[netbind_nopoll,rss]} | ${R[pasta,rss]} | ${R[slirp4netns,rss]} | | $(ratio "$(best min "${R[pasta,rss]}" "${R[slirp4netns,rss]}")" "${R[netbind,rss]}") | $(wins rss min) |"
echo
echo "Ratios: for throughput netbind/other; for latency and memory other/netbind (above 100% = netbind better)."
echo "Rounds won: per round, netbind's value (for latency, that round's median or 99th percentile) against both peers' in the same round."

#!/usr/bin/env python3
"""Writes the packet seeds of fuzz/corpus/{dhcp4,dhcp6,guest_frame}/ and the migration
state seeds of fuzz/corpus/migration_state/ (encoded here from the layout documented in
crates/usernet/src/migrate/format.rs, so they also check that the table is right): well-formed messages
as real clients send them (busybox udhcpc, ISC dhclient -6, a Linux guest's ARP, NDP,
ICMP, TCP and UDP, IP fragments), with correct lengths and checksums, so that the fuzzer
starts from inputs that get deep into the parsers. Deterministic; run from anywhere:
    python3 fuzz/seeds/make-seeds.py
The manifest and journal seeds are real files (copied, not generated)."""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
GUEST_MAC = bytes([2, 0, 0, 0, 0, 0x0A])
GW_MAC = bytes([2, 0, 0, 0, 0, 0x01])
BCAST = b"\xff" * 6
GUEST4 = bytes([10, 0, 2, 15])
GW4 = bytes([10, 0, 2, 2])
DNS4 = bytes([10, 0, 2, 3])
GUEST6 = bytes.fromhex("fd000000000000000000000000000015")
LL6 = bytes.fromhex("fe800000000000000000fffffe00000a")
ALL_ROUTERS6 = bytes.fromhex("ff020000000000000000000000000002")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def dhcp4(msg_type, xid, ciaddr=b"\0" * 4, opts=b""):
    head = struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000 if msg_type in (1, 3) else 0)
    head += ciaddr + b"\0" * 12 + GUEST_MAC + b"\0" * 10 + b"\0" * 192
    body = b"\x63\x82\x53\x63" + bytes([53, 1, msg_type])
    body += bytes([61, 7, 1]) + GUEST_MAC
    body += opts
    body += bytes([57, 2, 0x02, 0x40])
    body += bytes([55, 7, 1, 3, 6, 12, 15, 28, 42])
    body += bytes([12, 5]) + b"guest"
    body += bytes([60, 12]) + b"udhcp 1.35.0"
    body += b"\xff"
    return head + body


def dhcp4_seeds():
    req_ip = bytes([50, 4, 10, 0, 2, 2])
    server = bytes([54, 4, 10, 0, 2, 1])
    write("dhcp4", "discover", dhcp4(1, 0x1234ABCD))
    write("dhcp4", "request-selecting", dhcp4(3, 0x1234ABCD, opts=req_ip + server))
    write("dhcp4", "request-init-reboot", dhcp4(3, 0x1234ABCE, opts=req_ip))
    write("dhcp4", "request-renewing", dhcp4(3, 0x1234ABCF, ciaddr=bytes([10, 0, 2, 2])))
    write("dhcp4", "release", dhcp4(7, 0x1234ABD0, ciaddr=bytes([10, 0, 2, 2]), opts=server))
    write("dhcp4", "decline", dhcp4(4, 0x1234ABD1, opts=req_ip + server))
    write("dhcp4", "inform", dhcp4(8, 0x1234ABD2, ciaddr=bytes([10, 0, 2, 2])))
    # Option overload (52) into file and sname, and a long option split in two (RFC 3396).
    m = bytearray(dhcp4(1, 0x1234ABD3, opts=bytes([52, 1, 3])))
    m[44:108] = bytes([12, 3]) + b"abc" + b"\xff" + b"\0" * 58
    m[108:236] = bytes([55, 2, 1, 3]) + b"\xff" + b"\0" * 123
    write("dhcp4", "discover-overload", bytes(m))
    write("dhcp4", "discover-split-option", dhcp4(1, 0x1234ABD4, opts=bytes([81, 3, 0, 0, 0, 81, 3]) + b"\x02vm"))
    return dhcp4


def duid_ll():
    return struct.pack("!HH", 3, 1) + GUEST_MAC


def opt6(code, data):
    return struct.pack("!HH", code, len(data)) + data


def dhcp6(msg_type, xid, opts):
    return bytes([msg_type]) + xid.to_bytes(3, "big") + opts


def dhcp6_seeds():
    client = opt6(1, duid_ll())
    server = opt6(2, struct.pack("!HH", 3, 1) + bytes([2, 0, 0, 0, 0, 0]))
    elapsed = opt6(8, b"\0\0")
    oro = opt6(6, struct.pack("!HHH", 23, 24, 39))
    ia_empty = opt6(3, struct.pack("!III", 0x0A, 0, 0))
    iaaddr = opt6(5, bytes.fromhex("fd100000000000020000000000000002") + struct.pack("!II", 3600, 7200))
    ia_addr = opt6(3, struct.pack("!III", 0x0A, 1800, 2880) + iaaddr)
    fqdn = opt6(39, b"\x01\x05guest\x00")
    write("dhcp6", "solicit", dhcp6(1, 0xA1B2C3, client + elapsed + oro + ia_empty + fqdn))
    write("dhcp6", "solicit-rapid-commit", dhcp6(1, 0xA1B2C4, client + opt6(14, b"") + elapsed + oro + ia_empty))
    write("dhcp6", "request", dhcp6(3, 0xA1B2C5, client + server + elapsed + oro + ia_addr + fqdn))
    write("dhcp6", "confirm", dhcp6(4, 0xA1B2C6, client + elapsed + ia_addr))
    write("dhcp6", "renew", dhcp6(5, 0xA1B2C7, client + server + elapsed + oro + ia_addr))
    write("dhcp6", "rebind", dhcp6(6, 0xA1B2C8, client + elapsed + oro + ia_addr))
    write("dhcp6", "release", dhcp6(8, 0xA1B2C9, client + server + elapsed + ia_addr))
    write("dhcp6", "decline", dhcp6(9, 0xA1B2CA, client + server + elapsed + ia_addr))
    write("dhcp6", "information-request", dhcp6(11, 0xA1B2CB, client + elapsed + oro))
    # Relay-forward (12) wrapping a solicit: a server on a link must not take it.
    inner = dhcp6(1, 0xA1B2CC, client + elapsed + ia_empty)
    write("dhcp6", "relay-forward", bytes([12, 0]) + b"\0" * 32 + opt6(9, inner))


def eth(dst, ethertype, payload, src=GUEST_MAC):
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv4(proto, src, dst, payload, ident=1, frag=0x4000, ttl=64):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, ttl, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def l4sum4(proto, src, dst, seg):
    return csum(src + dst + struct.pack("!BBH", 0, proto, len(seg)) + seg)


def l4sum6(nh, src, dst, seg):
    return csum(src + dst + struct.pack("!IxxxB", len(seg), nh) + seg)


def udp4(src, dst, sport, dport, data):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = l4sum4(17, src, dst, seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def tcp4(src, dst, sport, dport, seq, ack, flags, data=b"", opts=b""):
    off = (20 + len(opts)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 64240, 0, 0) + opts + data
    c = l4sum4(6, src, dst, seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def ipv6(nh, src, dst, payload, hlim=64):
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, hlim) + src + dst + payload


def icmp6(src, dst, typ, code, body):
    m = bytes([typ, code, 0, 0]) + body
    c = l4sum6(58, src, dst, m)
    return m[:2] + struct.pack("!H", c) + m[4:]


def framed(*frames):
    return b"".join(struct.pack("!H", len(f)) + f for f in frames)


def dns_query(name, qtype=1):
    q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", qtype, 1)


def guest_frame_seeds():
    arp_req = eth(BCAST, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + GUEST_MAC + GUEST4 + b"\0" * 6 + GW4)
    garp = eth(BCAST, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + GUEST_MAC + GUEST4 + b"\0" * 6 + GUEST4)
    write("guest_frame", "arp-request", framed(arp_req))
    write("guest_frame", "arp-gratuitous", framed(garp))
    echo = b"\x08\x00\0\0" + struct.pack("!HH", 0x77, 1) + bytes(range(56))
    echo = echo[:2] + struct.pack("!H", csum(echo)) + echo[4:]
    ping = eth(GW_MAC, 0x0800, ipv4(1, GUEST4, GW4, echo))
    write("guest_frame", "icmp-echo-gateway", framed(arp_req, ping))
    ping_ttl1 = eth(GW_MAC, 0x0800, ipv4(1, GUEST4, bytes([192, 0, 2, 1]), echo, ttl=1))
    write("guest_frame", "icmp-echo-ttl1", framed(ping_ttl1))
    mss_ws = bytes([2, 4, 0x05, 0xB4, 4, 2, 8, 10]) + b"\0" * 8 + bytes([1, 3, 3, 7])
    syn = eth(GW_MAC, 0x0800, ipv4(6, GUEST4, GW4, tcp4(GUEST4, GW4, 40000, 9, 1000, 0, 0x02, opts=mss_ws)))
    write("guest_frame", "tcp-syn-closed-port", framed(syn))
    # A whole exchange: SYN, the ACK of the SYN-ACK the engine would send (its ISN is unknown,
    # so the ACK number is a guess the engine must survive), data, a segment after a hole,
    # FIN, RST.
    s = 2000
    exch = [
        eth(GW_MAC, 0x0800, ipv4(6, GUEST4, GW4, tcp4(GUEST4, GW4, 40001, 22, s, 0, 0x02, opts=mss_ws), ident=2)),
        eth(GW_MAC, 0x0800, ipv4(6, GUEST4, GW4, tcp4(GUEST4, GW4, 40001, 22, s + 1, 1, 0x10), ident=3)),
        eth(GW_MAC, 0x0800, ipv4(6, GUEST4, GW4, tcp4(GUEST4, GW4, 40001, 22, s + 1, 1, 0x18, b"SSH-2.0-x\r\n"), ident=4)),
        eth(GW_MAC, 0x0800, ipv4(6, GUEST4, GW4, tcp4(GUEST4, GW4, 40001, 22, s + 100, 1, 0x18, b"after a hole"), ident=5)),
        eth(GW_MAC, 0x0800, ipv4(6, GUEST4, GW4, tcp4(GUEST4, GW4, 40001, 22, s + 12, 1, 0x11), ident=6)),
        eth(GW_MAC, 0x0800, ipv4(6, GUEST4, GW4, tcp4(GUEST4, GW4, 40001, 22, s + 13, 0, 0x04), ident=7)),
    ]
    write("guest_frame", "tcp-exchange", framed(*exch))
    dns = eth(GW_MAC, 0x0800, ipv4(17, GUEST4, DNS4, udp4(GUEST4, DNS4, 53000, 53, dns_query("example.com"))))
    write("guest_frame", "udp-dns-query", framed(dns))
    udp_gw = eth(GW_MAC, 0x0800, ipv4(17, GUEST4, GW4, udp4(GUEST4, GW4, 53001, 9, b"hello")))
    write("guest_frame", "udp-gateway", framed(udp_gw))
    discover = dhcp4(1, 0x55AA55AA)
    d = eth(BCAST, 0x0800, ipv4(17, b"\0" * 4, b"\xff" * 4, udp4(b"\0" * 4, b"\xff" * 4, 68, 67, discover)))
    write("guest_frame", "dhcp4-discover", framed(d))
    # A UDP datagram in three IPv4 fragments, sent out of order, and an overlapping one.
    payload = udp4(GUEST4, GW4, 53002, 9, bytes(range(256)) * 8)
    parts = [payload[0:1024], payload[1024:1536], payload[1536:]]
    frags = [
        eth(GW_MAC, 0x0800, ipv4(17, GUEST4, GW4, parts[2], ident=0x99, frag=(1536 // 8))),
        eth(GW_MAC, 0x0800, ipv4(17, GUEST4, GW4, parts[0], ident=0x99, frag=0x2000)),
        eth(GW_MAC, 0x0800, ipv4(17, GUEST4, GW4, parts[1], ident=0x99, frag=0x2000 | (1024 // 8))),
    ]
    write("guest_frame", "ipv4-fragments", framed(*frags))
    overlap = eth(GW_MAC, 0x0800, ipv4(17, GUEST4, GW4, parts[1], ident=0x9A, frag=0x2000 | (1000 // 8)))
    write("guest_frame", "ipv4-fragments-overlap", framed(frags[1], overlap, frags[0]))
    # IPv6: router solicitation, neighbour solicitation for the gateway, echo, DHCPv6
    # solicit, UDP in two fragments (Fragment header).
    rs = icmp6(LL6, ALL_ROUTERS6, 133, 0, b"\0" * 4 + bytes([1, 1]) + GUEST_MAC)
    write("guest_frame", "ipv6-router-solicitation", framed(eth(b"\x33\x33\0\0\0\x02", 0x86DD, ipv6(58, LL6, ALL_ROUTERS6, rs, hlim=255))))
    gw6 = bytes.fromhex("fe800000000000000000000000000001")
    sol = bytes.fromhex("ff0200000000000000000001ff000001")
    ns = icmp6(LL6, sol, 135, 0, b"\0" * 4 + gw6 + bytes([1, 1]) + GUEST_MAC)
    write("guest_frame", "ipv6-neighbour-solicitation", framed(eth(b"\x33\x33\xff\0\0\x01", 0x86DD, ipv6(58, LL6, sol, ns, hlim=255))))
    echo6 = icmp6(GUEST6, gw6, 128, 0, struct.pack("!HH", 0x78, 1) + bytes(range(56)))
    write("guest_frame", "ipv6-echo", framed(eth(GW_MAC, 0x86DD, ipv6(58, GUEST6, gw6, echo6))))
    all_dhcp = bytes.fromhex("ff020000000000000000000000010002")
    sol6 = dhcp6(1, 0x010203, opt6(1, duid_ll()) + opt6(8, b"\0\0") + opt6(3, struct.pack("!III", 0x0A, 0, 0)))
    u6 = struct.pack("!HHHH", 546, 547, 8 + len(sol6), 0) + sol6
    u6 = u6[:6] + struct.pack("!H", l4sum6(17, LL6, all_dhcp, u6)) + u6[8:]
    write("guest_frame", "dhcp6-solicit", framed(eth(b"\x33\x33\0\x01\0\x02", 0x86DD, ipv6(17, LL6, all_dhcp, u6))))
    data = bytes(range(256)) * 6
    u = struct.pack("!HHHH", 53003, 9, 8 + len(data), 0) + data
    u = u[:6] + struct.pack("!H", l4sum6(17, GUEST6, gw6, u)) + u[8:]
    f1 = struct.pack("!BBHI", 17, 0, 1, 0xBEEF) + u[:1232]
    f2 = struct.pack("!BBHI", 17, 0, 1232, 0xBEEF) + u[1232:]
    write("guest_frame", "ipv6-fragments", framed(eth(GW_MAC, 0x86DD, ipv6(44, GUEST6, gw6, f1)), eth(GW_MAC, 0x86DD, ipv6(44, GUEST6, gw6, f2))))
    # A VLAN-tagged frame, a runt and a jumbo-length lie.
    write("guest_frame", "vlan-tagged", framed(GW_MAC + GUEST_MAC + b"\x81\x00\x00\x0a\x08\x00" + ipv4(1, GUEST4, GW4, echo)))
    write("guest_frame", "runt-and-lie", b"\xff\xff" + GW_MAC + GUEST_MAC + b"\x08")


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def mig_addr(ip, port):
    return (b"\x04" if len(ip) == 4 else b"\x06") + ip + struct.pack("<H", port)


def mig_state(flows, dns=(DNS4,), udp=None, ends=None):
    """Version 1 without `udp`, version 2 with it: (guest port, remote port, local port, inbound peer port or None);
    version 3 with `ends` too: each flow's ends byte."""
    body = GUEST_MAC
    body += b"\x01" + GUEST4 + b"\x18" + b"\x01" + GUEST6 + b"\x40" + b"\x01" + GW4 + b"\x00"
    body += bytes([len(dns)]) + b"".join((b"\x04" if len(d) == 4 else b"\x06") + d for d in dns)
    body += struct.pack("<I", len(flows))
    for i, (port, sendq, recvq) in enumerate(flows):
        body += mig_addr(GUEST4, port) + mig_addr(GW4, 80) + mig_addr(bytes([10, 88, 0, 5]), port) + mig_addr(bytes([10, 88, 0, 9]), 80)
        body += struct.pack("<IIII", 1000, 5000, 5000 + len(recvq) // 2, 65535)
        body += bytes([7, 7]) + struct.pack("<HH", 1460, 65480) + b"\x01"
        body += b"\x01" + struct.pack("<II", 4242, 9191)
        body += struct.pack("<III", 777 + len(sendq), 999 + len(recvq), 1448) + bytes([7, 7, 9])
        body += struct.pack("<I", 123456) + struct.pack("<5I", 1, 65535, 65535, 65535, 999)
        body += struct.pack("<I", len(sendq)) + sendq + struct.pack("<I", len(recvq)) + recvq
        if ends is not None:
            body += bytes([ends[i]])
    version = 1
    if udp is not None:
        version = 2 if ends is None else 3
        body += struct.pack("<I", len(udp))
        for gport, rport, lport, peer in udp:
            body += mig_addr(GUEST4, gport) + mig_addr(DNS4, rport) + mig_addr(bytes([10, 88, 0, 5]), lport)
            body += b"\x00" if peer is None else b"\x01" + mig_addr(bytes([10, 88, 0, 9]), peer)
    return b"NBMIGRAT" + struct.pack("<HHIQ", version, 0, len(body), fnv1a64(body)) + body


def migration_state_seeds():
    write("migration_state", "no-connections", mig_state([]))
    write("migration_state", "two-connections", mig_state([(40000, b"to the peer", b"to the guest"), (40001, b"", b"x" * 300)]))
    write("migration_state", "v2-connections-and-udp", mig_state([(40000, b"to the peer", b"to the guest")], udp=[(5353, 53, 41000, None), (9000, 9000, 9000, 51000)]))
    # Open; the peer closed, its FIN sent to the guest and acknowledged; the guest closed.
    write("migration_state", "v3-half-closed", mig_state([(40000, b"to the peer", b"to the guest"), (40001, b"", b"bye"), (40002, b"last", b"")], udp=[], ends=[0, 0b01101, 0b10010]))
    damaged = bytearray(mig_state([(40000, b"abc", b"def")]))
    damaged[-1] ^= 0xFF
    write("migration_state", "damaged", bytes(damaged))


# vhost_user_queue: the queues' parameters, then guest memory from region A (layout in
# crates/fuzz-targets/src/vhost_user.rs). Offsets below are from A's start.
VU_A = 0x10000
VU_A_SIZE = 0x10000
VU_MRG, VU_EVENT_IDX, VU_INDIRECT, VU_PROTOCOL, VU_HOLE, VU_NO_CALL = 1, 2, 4, 8, 16, 32
VU_ALL = VU_MRG | VU_EVENT_IDX | VU_INDIRECT | VU_PROTOCOL
NEXT, WRITE, INDIRECT = 1, 2, 4
# Sixteen entries per queue: receive rings at 0x000 (descriptors), 0x140 (used), 0x100
# (avail); transmit at 0x200, 0x340, 0x300; buffers from 0x400.
VU_RINGS = [(0x000, 0x140, 0x100), (0x200, 0x340, 0x300)]


class GuestMem:
    def __init__(self):
        self.b = bytearray()

    def put(self, off, data):
        if len(self.b) < off + len(data):
            self.b.extend(b"\0" * (off + len(data) - len(self.b)))
        self.b[off:off + len(data)] = data

    def desc(self, q, i, off, length, flags=0, nxt=0, absolute=False):
        addr = off if absolute else VU_A + off
        self.put(VU_RINGS[q][0] + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def avail(self, q, heads, idx=None):
        ring = VU_RINGS[q][2]
        idx = len(heads) if idx is None else idx
        self.put(ring, struct.pack("<HH", 0, idx) + b"".join(struct.pack("<H", h) for h in heads))


def vu_seed(flags, mem, frames=(60, 1000, 1500, 0xFFFF), sizes=(4, 4), rings=VU_RINGS, bases=(0, 0)):
    head = bytes([flags, sizes[0], sizes[1]])
    for r in rings:
        head += struct.pack("<III", *r)
    head += struct.pack("<HH", *bases) + struct.pack("<HHHH", *frames)
    assert len(head) == 39
    return head + bytes(mem.b)


def vu_transmits(m):
    """Three frames: header and data apart, in one descriptor, in an indirect table."""
    vnet = b"\0" * 12
    m.put(0x400, vnet)
    m.put(0x410, eth(GW_MAC, 0x0800, ipv4(1, GUEST4, GW4, b"\x08\0" + b"\0" * 26)))
    m.desc(1, 0, 0x400, 12, NEXT, 1)
    m.desc(1, 1, 0x410, 60)
    m.put(0x480, vnet + bytes(range(100)))
    m.desc(1, 2, 0x480, 112)
    m.put(0x500, struct.pack("<QIHH", VU_A + 0x400, 12, NEXT, 1) + struct.pack("<QIHH", VU_A + 0x410, 60, 0, 0))
    m.desc(1, 3, 0x500, 32, INDIRECT)
    m.avail(1, [0, 2, 3])


def vu_receives(m, chains=8, size=512):
    for i in range(chains):
        m.desc(0, i, 0x1000 + i * size, size, WRITE)
    m.avail(0, list(range(chains)))


def vhost_user_queue_seeds():
    m = GuestMem()
    vu_transmits(m)
    vu_receives(m)
    write("vhost_user_queue", "well-formed", vu_seed(VU_ALL, m))
    write("vhost_user_queue", "well-formed-no-event-idx-no-protocol", vu_seed(VU_MRG | VU_INDIRECT | VU_NO_CALL, m))
    # Without mergeable buffers: chains of a header buffer and two of 1,000 bytes.
    m = GuestMem()
    vu_transmits(m)
    for c in range(2):
        base = 0x1000 + c * 0x800
        m.desc(0, 3 * c, base, 12, WRITE | NEXT, 3 * c + 1)
        m.desc(0, 3 * c + 1, base + 0x10, 1000, WRITE | NEXT, 3 * c + 2)
        m.desc(0, 3 * c + 2, base + 0x400, 1000, WRITE)
    m.avail(0, [0, 3])
    write("vhost_user_queue", "no-mergeable", vu_seed(VU_EVENT_IDX | VU_INDIRECT | VU_PROTOCOL, m, frames=(60, 1900, 2000, 100)))
    # A transmit chain that loops; a receive head beyond the queue.
    m = GuestMem()
    m.desc(1, 0, 0x400, 12, NEXT, 1)
    m.desc(1, 1, 0x410, 60, NEXT, 0)
    m.avail(1, [0])
    m.avail(0, [99])
    write("vhost_user_queue", "loop-and-bad-head", vu_seed(VU_ALL, m))
    # An indirect table whose second entry is an indirect table: itself.
    m = GuestMem()
    m.put(0x500, struct.pack("<QIHH", VU_A + 0x400, 12, NEXT, 1) + struct.pack("<QIHH", VU_A + 0x500, 32, INDIRECT, 0))
    m.desc(1, 0, 0x500, 32, INDIRECT)
    m.avail(1, [0])
    vu_receives(m)
    write("vhost_user_queue", "indirect-in-indirect", vu_seed(VU_ALL, m))
    # An avail index far past the queue's size, on both queues.
    m = GuestMem()
    vu_transmits(m)
    vu_receives(m)
    m.avail(1, [0, 2, 3], idx=100)
    m.avail(0, list(range(8)), idx=0x8000)
    write("vhost_user_queue", "avail-jump", vu_seed(VU_ALL, m))
    # Buffers across the end of region A: into B (adjacent), or into a hole.
    m = GuestMem()
    m.desc(1, 0, 0x400, 12, NEXT, 1)
    m.desc(1, 1, VU_A_SIZE - 30, 60)
    m.avail(1, [0])
    m.desc(0, 0, VU_A_SIZE - 100, 600, WRITE)
    m.avail(0, [0])
    write("vhost_user_queue", "across-regions", vu_seed(VU_ALL, m))
    write("vhost_user_queue", "across-a-hole", vu_seed(VU_ALL | VU_HOLE, m))
    # Descriptors of 4 GiB.
    m = GuestMem()
    vu_transmits(m)
    m.desc(1, 1, 0x410, 0xFFFFFFFF)
    vu_receives(m)
    m.desc(0, 0, 0x1000, 0xFFFFFFFF, WRITE)
    write("vhost_user_queue", "4-gib-descriptors", vu_seed(VU_ALL, m))
    # Receive rings outside every region, transmit rings in region B; sizes refused.
    m = GuestMem()
    vu_transmits(m)
    vu_receives(m)
    write("vhost_user_queue", "rings-outside", vu_seed(VU_ALL, m, rings=[(0xFFFFF000, 8, 4), (0x10000, 0x10100, 0x10200)]))
    write("vhost_user_queue", "sizes-refused", vu_seed(VU_ALL, m, sizes=(0x83, 0xFF)))


if __name__ == "__main__":
    migration_state_seeds()
    dhcp4_seeds()
    dhcp6_seeds()
    guest_frame_seeds()
    vhost_user_queue_seeds()

//! A hostile guest: floods of SYNs to many ports and addresses, fragments, malformed
//! frames, tiny MSS and zero windows. In memory (no root): the guest is this test, the
//! sockets are real ones on the loopback (the gateway address maps to it).
//!
//! What must hold: the engine stays alive and answers; the flow table never passes its
//! cap, and everything past it is refused (RST, counted); the resident memory of the
//! process grows with the cap, not with the flood (a second flood of the same size adds
//! nothing); once the flood's flows are reset, legitimate traffic works again; fragments
//! and malformed frames open nothing; tiny-MSS and zero-window connections neither stall
//! nor grow memory, and a zero window answered for minutes keeps its connection.
//!
//! The tests share one process, whose resident set they measure: they run one at a time.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use netbind_usernet::frame::PROTO_TCP;
use socket2::{Domain, Socket, Type};

static SERIAL: Mutex<()> = Mutex::new(());

const CAP: usize = 1_000;
const SYNS: u32 = 200_000;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A listener on the loopback that never accepts, with a backlog of one: connections
/// past the backlog stay half-open (the kernel drops their SYNs and retries).
fn black_hole() -> (Socket, u16) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    s.listen(1).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    (s, port)
}

/// A port nobody listens on (connecting is refused).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where SYN number `i` goes: mostly the black hole (flows that stay), some closed ports
/// on the loopback (refused at once), some documentation addresses (unreachable, or
/// half-open where a default route exists), over IPv4 and IPv6.
fn flood_target(i: u32, hole: u16, closed: u16) -> (SocketAddr, SocketAddr) {
    let guest_port = 1024 + (i % 60_000) as u16;
    match i % 8 {
        0 => (guest4(guest_port), gw4(closed)),
        1 => (
            guest4(guest_port),
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 250) as u8 + 1)),
                1 + (i % 65_000) as u16,
            ),
        ),
        2 => (
            guest6(guest_port),
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (i % 250) as u16 + 1,
                )),
                1 + (i % 65_000) as u16,
            ),
        ),
        _ => (guest4(guest_port), gw4(hole)),
    }
}

/// Sends `n` SYNs from `start` on, running the event loop now and then and throwing the
/// answers away (counted by the engine); checks the cap all along.
fn flood(h: &mut Harness, start: u32, n: u32, hole: u16, closed: u16) {
    for i in start..start + n {
        let (from, to) = flood_target(i, hole, closed);
        h.send(&tcp_frame(from, to, i, 0, SYN, 65535, &[2, 4, 0, 1], &[]));
        if i % 1_000 == 0 {
            h.wakeup(Duration::ZERO);
            h.take_raw();
            assert!(
                h.engine.flow_count() <= CAP,
                "{} flows past a cap of {CAP}",
                h.engine.flow_count()
            );
        }
    }
    h.wakeup(Duration::ZERO);
    h.take_raw();
    assert!(h.engine.flow_count() <= CAP);
}

/// The guest resets every flow it may have opened to the documentation addresses (those
/// may stay half-open for minutes where a route exists).
fn reset_far_flows(h: &mut Harness, start: u32, n: u32, hole: u16, closed: u16) {
    for i in start..start + n {
        if matches!(i % 8, 1 | 2) {
            let (from, to) = flood_target(i, hole, closed);
            h.send(&tcp_frame(from, to, i + 1, 0, RST, 0, &[], &[]));
        }
    }
    h.take_raw();
}

/// Runs the loop until the table is empty (the kernel resends the half-open SYNs after
/// 1 s and 3 s; with the black hole closed, they meet an RST).
fn drain(h: &mut Harness, within: Duration) {
    let end = Instant::now() + within;
    while h.engine.flow_count() > 0 {
        assert!(
            Instant::now() < end,
            "{} flows left after {within:?}",
            h.engine.flow_count()
        );
        h.pump(Duration::from_millis(50));
        h.take_raw();
    }
}

/// A legitimate connection: handshake, data both ways.
fn legitimate(h: &mut Harness, port: u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = l.local_addr().unwrap().port();
    let mut c = connect(h, guest4(port), gw4(lport), 1460, None);
    let (mut s, _) = l.accept().unwrap();
    let f = c.seg(ACK | PSH, b"ping");
    h.send(&f);
    let mut buf = [0u8; 4];
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    s.write_all(b"pong").unwrap();
    let d = h.expect("the reply", |g| {
        g.proto == PROTO_TCP && g.tcp().dst_port == port && !g.tcp().payload.is_empty()
    });
    assert_eq!(d.tcp().payload, b"pong");
    let rst = c.seg(RST, &[]);
    h.send(&rst);
    h.seen.clear();
}

#[test]
fn a_syn_flood_stays_under_the_cap_is_refused_and_leaves_the_engine_working() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = config();
    cfg.max_flows = CAP;
    let mut h = Harness::new(cfg);
    let (hole, hole_port) = black_hole();
    let closed = closed_port();
    legitimate(&mut h, 30_000);
    let before = rss_kib();

    flood(&mut h, 0, SYNS, hole_port, closed);
    let c = h.engine.counters();
    // The black hole keeps the table (nearly) full; refused connections come and go.
    assert!(
        h.engine.flow_count() > CAP * 9 / 10,
        "{} flows",
        h.engine.flow_count()
    );
    assert!(
        c.refused_full > u64::from(SYNS) / 2,
        "refused past the cap: {c}"
    );
    assert!(c.rst_sent >= c.refused_full, "every refusal is an RST: {c}");
    assert!(c.rx_frames > u64::from(SYNS), "{c}");
    let after_first = rss_kib();
    eprintln!("SYN flood: RSS {before} → {after_first} KiB; {c}");
    // Per flow: the connection's state (a few hundred bytes), its slot, its hash entry and
    // its epoll entry (kernel memory, not ours); 1,000 flows are well under 1 MiB. 8 MiB
    // leaves room for the allocator's arenas and the test's own frames; a flood-sized
    // growth (200,000 SYNs) would pass it many times over.
    assert!(
        after_first.saturating_sub(before) < 8 * 1024,
        "RSS grew from {before} to {after_first} KiB"
    );

    // While the table is full, a legitimate SYN is refused too (the guest's own flood
    // fills its own table), with an RST.
    // (Topped up first: refused flows leave only when the loop runs, which it does not
    // between these frames.)
    for p in 0..(CAP - h.engine.flow_count()) as u16 {
        h.send(&tcp_frame(
            guest4(62_000 + p),
            gw4(hole_port),
            1,
            0,
            SYN,
            65535,
            &[],
            &[],
        ));
    }
    assert_eq!(h.engine.flow_count(), CAP);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    h.send(&tcp_frame(
        guest4(61_000),
        gw4(l.local_addr().unwrap().port()),
        1,
        0,
        SYN,
        65535,
        &[],
        &[],
    ));
    let t = h
        .expect("RST at the cap", |g| {
            g.proto == PROTO_TCP && g.tcp().dst_port == 61_000
        })
        .tcp();
    assert_ne!(t.flags & RST, 0);
    drop(l);

    // The flood's flows end: the half-open ones meet an RST once the black hole closes,
    // the far ones are reset by the guest.
    drop(hole);
    reset_far_flows(&mut h, 0, SYNS, hole_port, closed);
    drain(&mut h, Duration::from_secs(10));
    legitimate(&mut h, 30_001);

    // The same flood again: the memory of the first is reused, not added to.
    let (hole, hole_port) = black_hole();
    let mid = rss_kib();
    flood(&mut h, SYNS, SYNS, hole_port, closed);
    let after_second = rss_kib();
    eprintln!("second SYN flood: RSS {mid} → {after_second} KiB");
    assert!(
        after_second.saturating_sub(mid) < 1024,
        "a second flood grew RSS from {mid} to {after_second} KiB"
    );
    drop(hole);
    reset_far_flows(&mut h, SYNS, SYNS, hole_port, closed);
    drain(&mut h, Duration::from_secs(10));
    legitimate(&mut h, 30_002);
}

#[test]
fn fragments_and_malformed_frames_open_nothing_and_cost_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Harness::new(config());
    legitimate(&mut h, 31_000);
    let before = rss_kib();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let syn = tcp_frame(guest4(31_001), gw4(port), 1, 0, SYN, 65535, &[], &[]);
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut frame = syn.clone();
    for i in 0..100_000u32 {
        // A fragment of a SYN: first (more fragments), middle, or last (an offset).
        frame.copy_from_slice(&syn);
        let (flags_off, id) = match i % 3 {
            0 => (0x2000u16, i as u16),
            1 => (0x2000 | (i % 8000) as u16, i as u16),
            _ => ((i % 8000) as u16 + 1, i as u16),
        };
        frame[14 + 4..14 + 6].copy_from_slice(&id.to_be_bytes());
        frame[14 + 6..14 + 8].copy_from_slice(&flags_off.to_be_bytes());
        frame[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let sum = !smoltcp::wire::checksum::data(&frame[14..34]);
        frame[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
        h.send(&frame);
        // Malformed: the SYN cut anywhere, or with bytes flipped anywhere.
        let cut = (next() as usize) % syn.len();
        h.send(&syn[..cut]);
        let mut bad = syn.clone();
        let at = (next() as usize) % bad.len();
        bad[at] ^= (next() as u8) | 1;
        h.send(&bad);
        if i % 1_000 == 0 {
            h.wakeup(Duration::ZERO);
            h.take_raw();
        }
    }
    let c = h.engine.counters();
    assert!(c.rx_fragments >= 100_000, "{c}");
    assert_eq!(
        c.rx_reassembled, 0,
        "fragments of 100,000 different datagrams: {c}"
    );
    assert!(c.rx_malformed > 0, "{c}");
    // A flipped byte may still make a valid SYN (a different source port, say); those
    // are ordinary flows. The fragments themselves open nothing.
    assert!(h.engine.flow_count() <= 1 + c.tcp_opened as usize);
    let after = rss_kib();
    assert!(
        after.saturating_sub(before) < 2 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    drop(l);
    legitimate(&mut h, 31_002);
}

/// Connections with a tiny MSS carry everything, in segments of at most 64 bytes (the
/// engine's floor), without stalling; connections whose guest keeps a zero window and
/// answers every probe stay open for minutes, cost no memory while the server's data
/// waits in the kernel, and resume when the window opens.
#[test]
fn tiny_mss_and_zero_window_guests_neither_stall_nor_grow_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Harness::new(config());
    legitimate(&mut h, 32_000);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let before = rss_kib();

    // Tiny MSS: the guest asks for 1 byte (the engine's floor is 64).
    const TINY: usize = 20;
    const BYTES: usize = 32 * 1024;
    let mut conns = Vec::new();
    let mut servers = Vec::new();
    for k in 0..TINY {
        conns.push(connect(
            &mut h,
            guest4(32_100 + k as u16),
            gw4(port),
            1,
            None,
        ));
    }
    for k in 0..TINY {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(&vec![k as u8; BYTES]).unwrap();
        servers.push(s);
    }
    let mut got = vec![0usize; TINY];
    let end = Instant::now() + Duration::from_secs(20);
    while got.iter().any(|&n| n < BYTES) {
        assert!(
            Instant::now() < end,
            "tiny-MSS transfers stalled at {got:?}"
        );
        h.pump(Duration::from_millis(2));
        let mut frames = std::mem::take(&mut h.seen);
        frames.extend(h.take());
        for g in frames {
            if g.proto != PROTO_TCP {
                continue;
            }
            let t = g.tcp();
            let Some(k) = (t.dst_port as usize)
                .checked_sub(32_100)
                .filter(|&k| k < TINY)
            else {
                continue;
            };
            assert!(
                t.payload.len() <= 64,
                "a segment of {} bytes past the MSS",
                t.payload.len()
            );
            let c = &mut conns[k];
            if t.seq == c.rcv_nxt && !t.payload.is_empty() {
                assert!(t.payload.iter().all(|&b| b == k as u8));
                c.rcv_nxt = c.rcv_nxt.wrapping_add(t.payload.len() as u32);
                got[k] += t.payload.len();
                let ack = c.seg(ACK, &[]);
                h.send(&ack);
            }
        }
    }

    // Zero windows: every connection closes its window while its server has data.
    for (k, c) in conns.iter().enumerate() {
        h.send(&tcp_frame(
            c.me,
            c.peer,
            c.snd_nxt,
            c.rcv_nxt,
            ACK,
            0,
            &[],
            &[],
        ));
        servers[k].write_all(&vec![0xee; BYTES]).unwrap();
    }
    h.expect_none("data into a zero window", Duration::from_millis(200), |g| {
        g.proto == PROTO_TCP && !g.tcp().payload.is_empty()
    });
    // Five simulated minutes of probes, each answered with the window still closed.
    let mut probes = 0;
    for step in 1..=300u64 {
        h.timers_at(Duration::from_secs(step));
        for g in h.take() {
            if g.proto != PROTO_TCP {
                continue;
            }
            let t = g.tcp();
            assert_eq!(
                t.flags & RST,
                0,
                "a zero-window connection was reset after {step} s"
            );
            assert!(t.payload.is_empty(), "data into a zero window");
            if let Some(c) = conns.iter().find(|c| c.me.port() == t.dst_port) {
                probes += 1;
                h.send(&tcp_frame(
                    c.me,
                    c.peer,
                    c.snd_nxt,
                    c.rcv_nxt,
                    ACK,
                    0,
                    &[],
                    &[],
                ));
            }
        }
    }
    assert!(probes >= TINY * 10, "only {probes} probes in five minutes");
    assert_eq!(h.engine.flow_count(), TINY);
    // The window opens on one: its data comes.
    let c = &mut conns[0];
    let upd = c.seg(ACK, &[]);
    h.send(&upd);
    let d = h.expect("data after the window opened", |g| {
        g.proto == PROTO_TCP && g.tcp().dst_port == 32_100 && !g.tcp().payload.is_empty()
    });
    assert!(d.tcp().payload.iter().all(|&b| b == 0xee));
    let after = rss_kib();
    assert!(
        after.saturating_sub(before) < 4 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    for c in &mut conns {
        let r = c.seg(RST, &[]);
        h.send(&r);
    }
    assert_eq!(h.engine.flow_count(), 0);
}

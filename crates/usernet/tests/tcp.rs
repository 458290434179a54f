//! TCP through the engine to real sockets on the loopback (the gateway address maps to
//! it): handshake, data both ways, close, reset, retransmission, windows, MSS, inbound.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use netbind_usernet::frame::PROTO_TCP;

fn server() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn from_server(h: &mut Harness, what: &str, f: impl Fn(&Tcp) -> bool) -> Tcp {
    h.expect(what, |g| g.proto == PROTO_TCP && f(&g.tcp()))
        .tcp()
}

#[test]
fn handshake_announces_mss_from_the_mtu_and_reaches_the_server() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    h.send(&tcp_frame(
        guest4(40000),
        gw4(port),
        7,
        0,
        SYN,
        65535,
        &[2, 4, 0x05, 0xb4],
        &[],
    ));
    let t = from_server(&mut h, "SYN-ACK", |t| t.flags == SYN | ACK);
    assert_eq!(t.ack, 8);
    assert_eq!(t.mss(), Some(65520 - 40));
    l.set_nonblocking(false).unwrap();
    let (_s, peer) = l.accept().unwrap();
    assert!(peer.ip().is_loopback());
}

#[test]
fn data_flows_both_ways_with_sequence_numbers_that_add_up() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40001), gw4(port), 1460, Some(7));
    let (mut s, _) = l.accept().unwrap();

    let seg = c.seg(ACK | PSH, b"hello from the guest");
    h.send(&seg);
    let ack = from_server(&mut h, "ACK of guest data", |t| t.ack == c.snd_nxt);
    assert!(ack.payload.is_empty());
    let mut buf = [0u8; 20];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello from the guest");

    s.write_all(b"hello from the server").unwrap();
    let d = from_server(&mut h, "server data", |t| !t.payload.is_empty());
    assert_eq!(d.seq, c.rcv_nxt);
    assert_eq!(d.payload, b"hello from the server");
    c.rcv_nxt = c.rcv_nxt.wrapping_add(d.payload.len() as u32);
    h.send(&c.seg(ACK, &[]));

    s.write_all(b"more").unwrap();
    let d = from_server(&mut h, "more server data", |t| !t.payload.is_empty());
    assert_eq!(d.seq, c.rcv_nxt, "acknowledged bytes are not sent again");
    assert_eq!(d.payload, b"more");
}

#[test]
fn close_from_both_sides_ends_the_flow() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40002), gw4(port), 1460, None);
    let (mut s, _) = l.accept().unwrap();
    h.send(&c.seg(FIN | ACK, &[]));
    from_server(&mut h, "ACK of FIN", |t| t.ack == c.snd_nxt);
    let mut buf = [0u8; 1];
    assert_eq!(
        s.read(&mut buf).unwrap(),
        0,
        "the server sees end of stream"
    );
    s.shutdown(Shutdown::Write).unwrap();
    let fin = from_server(&mut h, "FIN", |t| t.flags & FIN != 0);
    c.rcv_nxt = fin.seq.wrapping_add(1);
    h.send(&c.seg(ACK, &[]));
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn server_closing_first_sends_its_data_then_fin() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40003), gw4(port), 1460, None);
    let (mut s, _) = l.accept().unwrap();
    s.write_all(b"bye").unwrap();
    drop(s);
    let d = from_server(&mut h, "data", |t| !t.payload.is_empty());
    assert_eq!(d.payload, b"bye");
    let fin = from_server(&mut h, "FIN", |t| t.flags & FIN != 0);
    assert_eq!(fin.seq, c.rcv_nxt + 3);
    c.rcv_nxt = fin.seq + 1;
    h.send(&c.seg(ACK, &[]));
    h.send(&c.seg(FIN | ACK, &[]));
    assert_eq!(h.engine.flow_count(), 0);
}

/// Request/response latency: the reply leaves for the guest in the very wakeup that
/// reports it readable — no timer tick, no second round.
#[test]
fn a_reply_reaches_the_guest_in_the_wakeup_that_reports_it() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40020), gw4(port), 1460, Some(7));
    let (mut s, _) = l.accept().unwrap();
    s.set_nodelay(true).unwrap();
    while h.wakeup(Duration::from_millis(50)) > 0 {} // the connection's own wakeups
    h.take();
    for round in 0..20u8 {
        h.send(&c.seg(ACK | PSH, &[round]));
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
        let mut wakeups = 0;
        let reply = loop {
            assert!(
                h.wakeup(Duration::from_secs(2)) > 0,
                "round {round}: no wakeup for the reply"
            );
            wakeups += 1;
            let got = h.take();
            if let Some(g) = got
                .into_iter()
                .find(|g| g.proto == PROTO_TCP && !g.tcp().payload.is_empty())
            {
                break g.tcp();
            }
            assert!(
                wakeups < 3,
                "round {round}: the reply did not leave in the wakeup that reported it"
            );
        };
        assert_eq!(reply.payload, [round]);
        assert_eq!(reply.ack, c.snd_nxt, "the reply acknowledges the request");
        c.rcv_nxt = c.rcv_nxt.wrapping_add(1);
        h.send(&c.seg(ACK, &[]));
    }
}

/// Delayed ACK: a lone small pushed segment (a request) is not acknowledged by a frame
/// of its own when the reply comes in the next round — the reply carries the ACK, and a
/// request/response costs one frame to the guest instead of two.
#[test]
fn the_reply_carries_the_ack_of_a_lone_request() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40040), gw4(port), 1460, Some(7));
    let (mut s, _) = l.accept().unwrap();
    s.set_nodelay(true).unwrap();
    while h.wakeup(Duration::from_millis(50)) > 0 {}
    h.take();
    for round in 0..10u8 {
        h.send(&c.seg(ACK | PSH, &[round]));
        assert!(
            h.take().is_empty(),
            "round {round}: the request's ACK left at once"
        );
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
        assert!(h.wakeup(Duration::from_secs(2)) > 0);
        let got = h.take();
        assert_eq!(
            got.len(),
            1,
            "round {round}: one frame, the reply: {got:#?}"
        );
        let t = got[0].tcp();
        assert_eq!(t.payload, [round]);
        assert_eq!(t.ack, c.snd_nxt, "the reply acknowledges the request");
        c.rcv_nxt = c.rcv_nxt.wrapping_add(1);
        h.send(&c.seg(ACK, &[]));
    }
}

/// Without a reply, the held ACK leaves at the end of the next round of the loop (the
/// loop waits at most `DELACK_WAIT` for one); segments that are not lone small pushed
/// requests — a second one in the same batch, one without PSH, a large one — are
/// acknowledged at once.
#[test]
fn a_held_ack_leaves_one_round_later_and_only_lone_requests_are_held() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40041), gw4(port), 1460, Some(7));
    let (_s, _) = l.accept().unwrap();
    while h.wakeup(Duration::from_millis(50)) > 0 {}
    h.take();
    let is_ack_of = |g: &Got, ack: u32| {
        g.proto == PROTO_TCP
            && g.tcp().flags == ACK
            && g.tcp().payload.is_empty()
            && g.tcp().ack == ack
    };

    h.send(&c.seg(ACK | PSH, b"lone"));
    assert!(h.engine.acks_delayed());
    assert!(h.take().is_empty());
    let started = std::time::Instant::now();
    h.wakeup(netbind_usernet::engine::DELACK_WAIT);
    assert!(started.elapsed() < Duration::from_millis(100));
    let got = h.take();
    assert!(
        got.iter().any(|g| is_ack_of(g, c.snd_nxt)),
        "the held ACK: {got:#?}"
    );
    assert!(!h.engine.acks_delayed());

    // Two requests in one batch: the second is acknowledged at once.
    let a = c.seg(ACK | PSH, b"one");
    let b = c.seg(ACK | PSH, b"two");
    h.engine.set_now(std::time::Instant::now());
    h.engine.guest_frame(&a);
    h.engine.guest_frame(&b);
    h.engine.flush();
    assert!(
        h.take().iter().any(|g| is_ack_of(g, c.snd_nxt)),
        "two segments: an ACK at once"
    );

    // No PSH: part of a stream, acknowledged at once.
    h.send(&c.seg(ACK, b"stream"));
    assert!(
        h.take().iter().any(|g| is_ack_of(g, c.snd_nxt)),
        "no PSH: an ACK at once"
    );

    // Larger than a request.
    h.send(&c.seg(ACK | PSH, &[7u8; 1400]));
    assert!(
        h.take().iter().any(|g| is_ack_of(g, c.snd_nxt)),
        "a large segment: an ACK at once"
    );
}

/// A short peek ends the round (the next data brings a new wakeup), except when the
/// socket has reported its end: data and end of stream that arrive together still
/// become data and FIN in one wakeup.
#[test]
fn data_and_end_of_stream_arriving_together_leave_in_one_wakeup() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let c = connect(&mut h, guest4(40021), gw4(port), 1460, None);
    let (mut s, _) = l.accept().unwrap();
    while h.wakeup(Duration::from_millis(50)) > 0 {}
    h.take();
    s.write_all(b"last words").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(h.wakeup(Duration::from_secs(2)) > 0);
    let got: Vec<Tcp> = h
        .take()
        .into_iter()
        .filter(|g| g.proto == PROTO_TCP)
        .map(|g| g.tcp())
        .collect();
    let data = got
        .iter()
        .find(|t| !t.payload.is_empty())
        .expect("data in the same wakeup");
    assert_eq!(
        (data.seq, data.payload.as_slice()),
        (c.rcv_nxt, &b"last words"[..])
    );
    let fin = got
        .iter()
        .find(|t| t.flags & FIN != 0)
        .expect("FIN in the same wakeup");
    assert_eq!(fin.seq, c.rcv_nxt.wrapping_add(10));
}

#[test]
fn guest_reset_resets_the_server_side() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40004), gw4(port), 1460, None);
    let (mut s, _) = l.accept().unwrap();
    h.send(&c.seg(RST, &[]));
    assert_eq!(h.engine.flow_count(), 0);
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 1];
    let r = s.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
}

#[test]
fn server_reset_becomes_rst_to_the_guest() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let _c = connect(&mut h, guest4(40005), gw4(port), 1460, None);
    let (s, _) = l.accept().unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    from_server(&mut h, "RST", |t| t.flags & RST != 0);
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn refused_connection_is_rst_to_the_guest() {
    let (l, port) = server();
    drop(l);
    let mut h = Harness::new(config());
    h.send(&tcp_frame(
        guest4(40006),
        gw4(port),
        7,
        0,
        SYN,
        65535,
        &[],
        &[],
    ));
    let t = from_server(&mut h, "RST", |t| t.flags & RST != 0);
    assert_eq!(t.ack, 8);
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn segment_for_no_connection_is_answered_with_rst() {
    let mut h = Harness::new(config());
    h.send(&tcp_frame(
        guest4(40007),
        gw4(9),
        7,
        1234,
        ACK,
        65535,
        &[],
        b"x",
    ));
    let t = h.take().pop().expect("RST").tcp();
    assert_eq!((t.flags, t.seq), (RST, 1234));
}

#[test]
fn unacknowledged_data_is_sent_again_after_the_timeout() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let c = connect(&mut h, guest4(40008), gw4(port), 1460, None);
    let (mut s, _) = l.accept().unwrap();
    s.write_all(b"lost once").unwrap();
    let first = from_server(&mut h, "data", |t| !t.payload.is_empty());
    // A timer pass now finds the retransmission due within the timeout (the event loop
    // sleeps until then).
    h.timers_at(Duration::ZERO);
    let due = h.engine.next_timer().expect("a retransmission timer");
    assert!(
        due <= std::time::Instant::now() + Duration::from_millis(250),
        "the retransmission is due in {:?}",
        due - std::time::Instant::now()
    );
    h.timers_at(Duration::from_millis(250));
    let again = from_server(&mut h, "retransmission", |t| !t.payload.is_empty());
    assert_eq!((again.seq, again.payload), (first.seq, first.payload));
    assert_eq!(again.seq, c.rcv_nxt);
    assert_eq!(h.engine.counters().retransmits, 1);
}

#[test]
fn a_timeout_after_acknowledged_replies_resends_only_the_unacknowledged_bytes() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40010), gw4(port), 1460, None);
    let (mut s, _) = l.accept().unwrap();
    // Replies the guest acknowledged are gone from the socket; a retransmission starts
    // at the first byte it has not acknowledged.
    for reply in [&b"first"[..], b"second"] {
        s.write_all(reply).unwrap();
        let t = from_server(&mut h, "reply", |t| !t.payload.is_empty());
        assert_eq!(t.payload, reply);
        c.rcv_nxt = t.seq.wrapping_add(t.payload.len() as u32);
        h.send(&c.seg(ACK, &[]));
    }
    s.write_all(b"third").unwrap();
    let first = from_server(&mut h, "third reply", |t| !t.payload.is_empty());
    assert_eq!(first.payload, b"third");
    h.timers_at(Duration::from_millis(250));
    let again = from_server(&mut h, "retransmission", |t| !t.payload.is_empty());
    assert_eq!((again.seq, again.payload), (first.seq, first.payload));
}

#[test]
fn three_duplicate_acks_resend_at_once() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40009), gw4(port), 1000, None);
    let (mut s, _) = l.accept().unwrap();
    s.write_all(&[1u8; 3000]).unwrap();
    let mut segs = Vec::new();
    while segs.iter().map(|t: &Tcp| t.payload.len()).sum::<usize>() < 3000 {
        segs.push(from_server(&mut h, "data", |t| !t.payload.is_empty()));
    }
    for _ in 0..3 {
        h.send(&c.seg(ACK, &[])); // acknowledges nothing new
    }
    let again = from_server(&mut h, "fast retransmission", |t| {
        t.seq == segs[0].seq && !t.payload.is_empty()
    });
    assert_eq!(again.payload.len(), 1000);
}

#[test]
fn zero_window_stops_data_and_a_window_update_resumes_it() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40010), gw4(port), 1460, None);
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
    let (mut s, _) = l.accept().unwrap();
    s.write_all(b"wait for it").unwrap();
    h.expect_none("data into a zero window", Duration::from_millis(100), |g| {
        g.proto == PROTO_TCP && !g.tcp().payload.is_empty()
    });
    h.timers_at(Duration::from_millis(250));
    let probe = from_server(&mut h, "window probe", |t| {
        t.payload.is_empty() && t.seq == c.rcv_nxt.wrapping_sub(1)
    });
    assert_eq!(probe.flags, ACK);
    h.send(&c.seg(ACK, &[]));
    let d = from_server(&mut h, "data after the update", |t| !t.payload.is_empty());
    assert_eq!(d.payload, b"wait for it");
}

#[test]
fn tiny_mss_cuts_data_into_tiny_segments() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let _c = connect(&mut h, guest4(40011), gw4(port), 64, None);
    let (mut s, _) = l.accept().unwrap();
    s.write_all(&[9u8; 1000]).unwrap();
    let mut total = 0;
    while total < 1000 {
        let t = from_server(&mut h, "data", |t| !t.payload.is_empty());
        assert!(t.payload.len() <= 64);
        total += t.payload.len();
    }
}

#[test]
fn out_of_order_data_is_not_acknowledged() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let c = connect(&mut h, guest4(40012), gw4(port), 1460, None);
    let _s = l.accept().unwrap();
    h.send(&tcp_frame(
        c.me,
        c.peer,
        c.snd_nxt + 100,
        c.rcv_nxt,
        ACK,
        65535,
        &[],
        b"later",
    ));
    let dup = from_server(&mut h, "duplicate ACK", |t| t.flags == ACK);
    assert_eq!(dup.ack, c.snd_nxt);
}

#[test]
fn ipv6_gateway_reaches_the_ipv6_loopback() {
    let l = TcpListener::bind("[::1]:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest6(40013), gw6(port), 1440, Some(7));
    let (mut s, _) = l.accept().unwrap();
    h.send(&c.seg(ACK | PSH, b"v6"));
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"v6");
}

/// A peer that resets the connection before the guest has acknowledged our SYN-ACK:
/// the guest hears an RST at once, and the flow is gone (not held by handshake timers).
#[test]
fn peer_reset_during_the_handshake_resets_the_guest_at_once() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    h.send(&tcp_frame(
        guest4(40034),
        gw4(port),
        7,
        0,
        SYN,
        65535,
        &[],
        &[],
    ));
    from_server(&mut h, "SYN-ACK", |t| t.flags == SYN | ACK);
    let (s, _) = l.accept().unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    let t = from_server(&mut h, "RST", |t| t.flags & RST != 0);
    assert_eq!(t.dst_port, 40034);
    assert_eq!(h.engine.flow_count(), 0);
}

/// The namespace's loopback is reached through the gateway mapping only: a guest that
/// addresses 127.0.0.1 or ::1 (or ::ffff:127.0.0.1) itself opens nothing.
#[test]
fn loopback_destinations_are_not_reached_directly() {
    let (l, port) = server();
    l.set_nonblocking(true).unwrap();
    let mut h = Harness::new(config());
    let lo4 = std::net::SocketAddr::new("127.0.0.1".parse().unwrap(), port);
    let mapped = std::net::SocketAddr::new("::ffff:127.0.0.1".parse().unwrap(), port);
    let lo6 = std::net::SocketAddr::new("::1".parse().unwrap(), port);
    h.send(&tcp_frame(guest4(40030), lo4, 7, 0, SYN, 65535, &[], &[]));
    h.send(&tcp_frame(
        guest6(40031),
        mapped,
        7,
        0,
        SYN,
        65535,
        &[],
        &[],
    ));
    h.send(&tcp_frame(guest6(40032), lo6, 7, 0, SYN, 65535, &[], &[]));
    h.send(&udp_frame(guest4(40033), lo4, b"x"));
    h.expect_none(
        "an answer from the loopback",
        Duration::from_millis(100),
        |g| g.proto == PROTO_TCP && g.tcp().flags & SYN != 0,
    );
    assert_eq!(h.engine.flow_count(), 0);
    assert!(l.accept().is_err(), "the loopback server saw a connection");
}

#[test]
fn full_flow_table_refuses_new_connections_with_rst() {
    let (l, port) = server();
    let mut cfg = config();
    cfg.max_flows = 1;
    let mut h = Harness::new(cfg);
    let _c = connect(&mut h, guest4(40014), gw4(port), 1460, None);
    h.send(&tcp_frame(
        guest4(40015),
        gw4(port),
        7,
        0,
        SYN,
        65535,
        &[],
        &[],
    ));
    let t = from_server(&mut h, "RST", |t| t.flags & RST != 0);
    assert_eq!(t.dst_port, 40015);
    assert_eq!(h.engine.counters().refused_full, 1);
    drop(l);
}

#[test]
fn inbound_connection_on_a_forwarded_port_reaches_the_guest() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config();
    cfg.guest6 = None;
    cfg.tcp_ports = vec![netbind_usernet::PortSpec::parse(&port.to_string()).unwrap()];
    let mut h = Harness::new(cfg);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let syn = from_server(&mut h, "SYN to the guest", |t| t.flags == SYN);
    assert_eq!(syn.dst_port, port);
    let mut c = GuestConn {
        me: guest4(port),
        peer: gw4(syn.src_port),
        snd_nxt: 5000,
        rcv_nxt: syn.seq + 1,
    };
    h.send(&tcp_frame(
        c.me,
        c.peer,
        c.snd_nxt,
        c.rcv_nxt,
        SYN | ACK,
        65535,
        &[2, 4, 5, 0xb4],
        &[],
    ));
    c.snd_nxt += 1;
    from_server(&mut h, "ACK of SYN-ACK", |t| {
        t.flags == ACK && t.ack == c.snd_nxt
    });
    client.write_all(b"ping").unwrap();
    let d = from_server(&mut h, "client data", |t| !t.payload.is_empty());
    assert_eq!(d.payload, b"ping");
    c.rcv_nxt += 4;
    h.send(&c.seg(ACK | PSH, b"pong"));
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

#[test]
fn bulk_transfer_both_ways_keeps_every_byte_in_order() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40016), gw4(port), 65480, Some(7));
    let (mut s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    // server → guest, 4 MiB, acknowledging everything in order
    let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut written = 0;
    let mut received = Vec::with_capacity(data.len());
    while received.len() < data.len() {
        if written < data.len()
            && let Ok(n) = s.write(&data[written..])
        {
            written += n;
        }
        h.pump(Duration::from_millis(1));
        for g in h.take() {
            let t = g.tcp();
            if !t.payload.is_empty() && t.seq == c.rcv_nxt {
                received.extend_from_slice(&t.payload);
                c.rcv_nxt = c.rcv_nxt.wrapping_add(t.payload.len() as u32);
            }
        }
        h.send(&c.seg(ACK, &[]));
    }
    assert!(received == data, "bytes differ");
}

/// Segments the guest sent together (read at once by the attachment, so that each but
/// the last has frames following) go to their socket in one `send()`: the peer receives
/// a few large segments, not one per guest segment, and nothing is left waiting when
/// the batch ends.
#[test]
fn segments_read_together_go_to_the_socket_together() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40030), gw4(port), 1460, Some(7));
    let (mut s, _) = l.accept().unwrap();
    let data: Vec<u8> = (0..16_000).map(|i: u32| (i % 251) as u8).collect();
    let mut batch: Vec<Vec<u8>> = data.chunks(1000).map(|d| c.seg(ACK, d)).collect();
    // The batch ends with no data for this connection: its end sends the run.
    batch.push(c.seg(ACK, &[]));
    h.send_batch(&batch);
    assert_eq!(h.engine.counters().tcp_segments_gathered, 16);
    let engine_side = tcp_info(&format!("dport = :{port}"));
    assert!(
        !engine_side.contains("notsent:"),
        "data left waiting in the engine's socket: {engine_side}"
    );
    let mut got = vec![0; data.len()];
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.read_exact(&mut got).unwrap();
    assert!(got == data, "bytes differ");
    let peer_side = tcp_info(&format!("sport = :{port}"));
    let segs: u64 = peer_side
        .split_whitespace()
        .find_map(|w| w.strip_prefix("segs_in:")?.parse().ok())
        .unwrap_or_else(|| panic!("no segs_in in `ss -ti`: {peer_side}"));
    assert!(
        segs < 8,
        "{segs} segments (the handshake's too) for 16 guest segments"
    );
}

/// A FIN right behind a run: the run goes to the socket first, then the end of stream.
#[test]
fn a_fin_behind_a_run_reaches_the_peer_after_the_run() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40031), gw4(port), 1460, Some(7));
    let (mut s, _) = l.accept().unwrap();
    let data: Vec<u8> = (0..8_000).map(|i: u32| (i % 253) as u8).collect();
    let mut batch: Vec<Vec<u8>> = data.chunks(1000).map(|d| c.seg(ACK, d)).collect();
    batch.push(c.seg(FIN | ACK, &[]));
    h.send_batch(&batch);
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(
        got == data,
        "{} bytes before the end, {} sent",
        got.len(),
        data.len()
    );
    let ack = from_server(&mut h, "ACK of the FIN", |t| t.ack == c.snd_nxt);
    assert_eq!(ack.ack, c.snd_nxt);
}

/// Two connections' segments interleaved in one batch: each run ends when the other
/// connection's segment comes, and both streams arrive whole and in order.
#[test]
fn interleaved_connections_in_one_batch_keep_their_streams_apart() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut a = connect(&mut h, guest4(40032), gw4(port), 1460, Some(7));
    let (mut sa, _) = l.accept().unwrap();
    let mut b = connect(&mut h, guest4(40033), gw4(port), 1460, Some(7));
    let (mut sb, _) = l.accept().unwrap();
    let mut batch = Vec::new();
    for i in 0..20u8 {
        batch.push(a.seg(ACK, &[b'a', i]));
        batch.push(a.seg(ACK, &[b'A', i]));
        batch.push(b.seg(ACK, &[b'b', i]));
    }
    h.send_batch(&batch);
    let want = |x: u8, y: Option<u8>| -> Vec<u8> {
        (0..20u8)
            .flat_map(|i| [[x, i].to_vec(), y.map_or(vec![], |y| vec![y, i])].concat())
            .collect()
    };
    for (sock, expect) in [
        (&mut sa, want(b'a', Some(b'A'))),
        (&mut sb, want(b'b', None)),
    ] {
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = vec![0; expect.len()];
        sock.read_exact(&mut got).unwrap();
        assert_eq!(got, expect);
    }
    let acks: Vec<Tcp> = h.take().into_iter().map(|g| g.tcp()).collect();
    assert!(
        acks.iter()
            .any(|t| t.dst_port == 40032 && t.ack == a.snd_nxt)
    );
    assert!(
        acks.iter()
            .any(|t| t.dst_port == 40033 && t.ack == b.snd_nxt)
    );
}

/// A guest that sends runs past what the socket takes (nobody reads on the other side):
/// every byte acknowledged reaches the peer, in order, once it reads.
#[test]
fn runs_the_socket_refuses_in_part_acknowledge_only_what_reaches_the_peer() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40034), gw4(port), 1460, Some(7));
    let (mut s, _) = l.accept().unwrap();
    let stream = |at: u32| (at % 251) as u8;
    let start = c.snd_nxt;
    let mut acked = start;
    for _ in 0..1000 {
        if h.engine.counters().tcp_send_refused > 0 {
            break;
        }
        // The guest ignores the window: batches of 64 segments from where it was acked.
        c.snd_nxt = acked;
        let batch: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                let at = c.snd_nxt.wrapping_sub(start);
                let data: Vec<u8> = (at..at + 1000).map(stream).collect();
                c.seg(ACK, &data)
            })
            .collect();
        h.send_batch(&batch);
        for t in h.take().into_iter().filter(|g| g.proto == PROTO_TCP) {
            acked = acked.max(t.tcp().ack);
        }
    }
    assert!(
        h.engine.counters().tcp_send_refused > 0,
        "the socket never refused"
    );
    // The peer reads everything; the engine moves on what it held.
    s.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < end {
        while let Ok(n @ 1..) = s.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        h.pump(Duration::from_millis(5));
        for t in h.take().into_iter().filter(|g| g.proto == PROTO_TCP) {
            acked = acked.max(t.tcp().ack);
        }
        if got.len() as u32 >= acked.wrapping_sub(start) {
            break;
        }
    }
    let acked = acked.wrapping_sub(start) as usize;
    assert!(
        got.len() >= acked,
        "{acked} bytes acknowledged, {} reached the peer",
        got.len()
    );
    let expect: Vec<u8> = (0..got.len() as u32).map(stream).collect();
    assert!(got == expect, "the peer's bytes are not the guest's stream");
}

/// To a guest without offloads, data goes in runs of MSS-sized segments from one peek;
/// a guest side that fills in the middle of a run loses nothing: the rest follows, in
/// order and once, when it has room again.
#[test]
fn a_run_cut_short_by_a_full_guest_side_goes_on_where_it_stopped() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let c = connect(&mut h, guest4(40035), gw4(port), 1000, Some(7));
    let (mut s, _) = l.accept().unwrap();
    h.take();
    let data: Vec<u8> = (0..20_000).map(|i: u32| (i % 251) as u8).collect();
    s.write_all(&data).unwrap();
    h.engine.guest_mut().limit = Some(5);
    h.pump(Duration::from_millis(50));
    let mut segs = h.take();
    assert_eq!(segs.len(), 5, "the guest side took five frames");
    h.engine.guest_mut().limit = None;
    h.engine.guest_writable();
    h.engine.flush();
    segs.extend(h.take());
    let mut got = Vec::new();
    for g in segs.iter().filter(|g| g.proto == PROTO_TCP) {
        let t = g.tcp();
        assert_eq!(
            t.seq,
            c.rcv_nxt.wrapping_add(got.len() as u32),
            "in order, once"
        );
        assert!(
            t.payload.len() <= 1000,
            "{} bytes: more than the MSS",
            t.payload.len()
        );
        got.extend_from_slice(&t.payload);
    }
    assert!(
        got == data,
        "{} of {} bytes, or not the same",
        got.len(),
        data.len()
    );
}

/// `ss -ti` of the established loopback sockets `filter` selects.
fn tcp_info(filter: &str) -> String {
    let out = std::process::Command::new("ss")
        .args(["-Htin", "state", "established", filter])
        .output()
        .expect("ss runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The window offered to the guest is what the socket will take: a guest that fills it
/// while nobody reads on the other side loses nothing (a refused byte would cost it a
/// loss recovery), and when the reader drains the socket the guest hears at once that
/// the window reopened, without sending anything.
#[test]
fn a_guest_filling_the_offered_window_loses_nothing_and_hears_when_it_reopens() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40017), gw4(port), 65480, Some(7));
    let (mut s, _) = l.accept().unwrap();
    let chunk = vec![5u8; 16384];
    let mut sent: u64 = 0;
    let mut window_closed = false;
    let mut n = 1;
    for _ in 0..2000 {
        for _ in 0..n {
            let seg = c.seg(ACK, &chunk);
            h.engine.guest_frame(&seg);
            sent += chunk.len() as u64;
        }
        h.engine.flush();
        // The window the engine offers now, from its latest ACK.
        let acks: Vec<Tcp> = h
            .take()
            .into_iter()
            .filter(|g| g.proto == PROTO_TCP)
            .map(|g| g.tcp())
            .collect();
        let last = acks.last().expect("an ACK for the segments");
        assert_eq!(last.ack, c.snd_nxt, "everything sent was acknowledged");
        let window = u32::from(last.window) << 7;
        if window < chunk.len() as u32 {
            window_closed = true;
            break;
        }
        n = (window as usize / chunk.len()).min(32);
    }
    assert!(
        window_closed,
        "the window never closed although nobody reads"
    );
    let counters = h.engine.counters();
    assert_eq!(
        counters.tcp_send_refused, 0,
        "the socket refused data inside the window"
    );
    assert_eq!(counters.tcp_bytes_from_guest, sent);
    // The reader drains the socket: a window update comes by itself.
    s.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut read: u64 = 0;
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let mut update = None;
    while update.is_none() && std::time::Instant::now() < end {
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            read += n as u64;
        }
        h.pump(Duration::from_millis(5));
        update = h
            .take()
            .into_iter()
            .filter(|g| g.proto == PROTO_TCP)
            .map(|g| g.tcp())
            .find(|t| u32::from(t.window) << 7 >= 65536);
    }
    assert!(
        update.is_some(),
        "no window update after the reader drained {read} of {sent} bytes"
    );
}

/// With a guest side that offloads (a tap with a virtio-net header), data leaves in
/// segments larger than the guest's MSS, marked to be cut at the MSS, with only the
/// pseudo-header sum in the checksum field.
#[test]
fn with_offloads_data_leaves_as_super_segments_with_partial_checksums() {
    let (l, port) = server();
    let mut h = Harness::with_guest(config(), netbind_usernet::MemTx::with_offloads());
    let c = connect(&mut h, guest4(40018), gw4(port), 1460, Some(7));
    let (mut s, _) = l.accept().unwrap();
    s.write_all(&[3u8; 200_000]).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(3);
    let mut data = Vec::new();
    while data.is_empty() && std::time::Instant::now() < end {
        h.pump(Duration::from_millis(5));
        data = h
            .take_raw()
            .into_iter()
            .filter(|(f, _)| f.len() > 14 + 20 + 20)
            .collect();
    }
    let (frame, meta) = data.first().expect("data toward the guest");
    let payload = frame.len() - 54;
    assert!(payload > 1460, "a super-segment, not {payload} bytes");
    assert_eq!(
        (meta.gso_size, meta.gso_v6, meta.hdr_len),
        (1460, false, 54)
    );
    assert_eq!((meta.csum_start, meta.csum_offset), (34, 16));
    let field = u16::from_be_bytes([frame[34 + 16], frame[34 + 17]]);
    let pseudo =
        netbind_usernet::frame::pseudo_sum(c.peer.ip(), c.me.ip(), PROTO_TCP, frame.len() - 34);
    assert_eq!(
        field, pseudo,
        "the checksum field holds the pseudo-header sum"
    );
}

/// The SYN options of a guest offering MSS 1460 and SACK.
const MSS_SACK: [u8; 8] = [2, 4, 0x05, 0xb4, 1, 1, 4, 2];

#[test]
fn sack_is_permitted_back_only_to_a_guest_that_offers_it() {
    let (_l, port) = server();
    let mut h = Harness::new(config());
    h.send(&tcp_frame(
        guest4(40030),
        gw4(port),
        7,
        0,
        SYN,
        65535,
        &MSS_SACK,
        &[],
    ));
    let t = from_server(&mut h, "SYN-ACK", |t| t.flags == SYN | ACK);
    assert!(t.sack_permitted());
    let opts = [2, 4, 0x05, 0xb4];
    h.send(&tcp_frame(
        guest4(40031),
        gw4(port),
        7,
        0,
        SYN,
        65535,
        &opts,
        &[],
    ));
    let t = from_server(&mut h, "SYN-ACK", |t| {
        t.flags == SYN | ACK && t.dst_port == 40031
    });
    assert!(!t.sack_permitted());
}

/// A lost or reordered guest segment costs one resend of the hole: what came after it
/// is held (the duplicate ACK names it in a SACK block), and when the hole is filled
/// both reach the server in order under one ACK.
#[test]
fn a_segment_after_a_hole_is_held_and_delivered_once_the_hole_is_filled() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect_with(&mut h, guest4(40032), gw4(port), &MSS_SACK);
    let (mut s, _) = l.accept().unwrap();
    let first = c.seg(ACK, b"first-");
    let second = c.seg(ACK | PSH, b"second");
    h.send(&second);
    let dup = from_server(&mut h, "duplicate ACK", |t| t.flags == ACK);
    assert_eq!(dup.ack, c.snd_nxt - 12, "the hole is still expected");
    assert_eq!(dup.sack_blocks(), vec![(c.snd_nxt - 6, c.snd_nxt)]);
    h.send(&first);
    let ack = from_server(&mut h, "ACK of both", |t| t.ack == c.snd_nxt);
    assert!(ack.sack_blocks().is_empty(), "nothing is held any more");
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"first-second");
    assert_eq!(h.engine.counters().tcp_segments_held, 1);
}

#[test]
fn without_sack_permitted_a_duplicate_ack_carries_no_sack_blocks() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40033), gw4(port), 1460, None);
    let (mut s, _) = l.accept().unwrap();
    let first = c.seg(ACK, b"abc");
    let second = c.seg(ACK, b"def");
    h.send(&second);
    let dup = from_server(&mut h, "duplicate ACK", |t| t.flags == ACK);
    assert!(dup.sack_blocks().is_empty());
    h.send(&first);
    from_server(&mut h, "ACK of both", |t| t.ack == c.snd_nxt);
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abcdef");
}

#[test]
fn a_fin_after_a_hole_ends_the_stream_once_the_hole_is_filled() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect_with(&mut h, guest4(40034), gw4(port), &MSS_SACK);
    let (mut s, _) = l.accept().unwrap();
    let first = c.seg(ACK, b"abc");
    let last = c.seg(FIN | ACK, b"def");
    h.send(&last);
    h.send(&first);
    from_server(&mut h, "ACK of data and FIN", |t| t.ack == c.snd_nxt);
    let mut got = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"abcdef", "data, then end of stream");
}

/// A guest that sends past the offered window into a socket nobody reads: what
/// `send()` refuses is held, and reaches the reader once it drains, with no resend.
#[test]
fn data_the_socket_refuses_is_held_and_delivered_when_it_drains() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40035), gw4(port), 65480, Some(7));
    let (mut s, _) = l.accept().unwrap();
    let chunk = vec![9u8; 16384];
    let mut sent: u64 = 0;
    let mut after_refusal = 0;
    for _ in 0..4000 {
        h.engine.guest_frame(&c.seg(ACK, &chunk));
        h.engine.flush();
        sent += chunk.len() as u64;
        if h.engine.counters().tcp_send_refused > 0 {
            after_refusal += 1;
            if after_refusal == 4 {
                break;
            }
        }
    }
    assert_eq!(after_refusal, 4, "the socket never refused data");
    assert!(h.engine.counters().tcp_segments_held >= 4);
    s.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut read: u64 = 0;
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while read < sent && std::time::Instant::now() < end {
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&b| b == 9));
            read += n as u64;
        }
        h.pump(Duration::from_millis(2));
    }
    assert_eq!(read, sent, "the reader got every byte the guest sent once");
    let acks: Vec<Tcp> = h
        .take()
        .into_iter()
        .filter(|g| g.proto == PROTO_TCP)
        .map(|g| g.tcp())
        .collect();
    assert!(
        acks.iter().any(|t| t.ack == c.snd_nxt),
        "the guest hears that everything arrived"
    );
}

#[test]
fn a_reset_outside_the_window_is_ignored() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let mut c = connect(&mut h, guest4(40036), gw4(port), 1460, Some(7));
    let (mut s, _) = l.accept().unwrap();
    let far = c.snd_nxt.wrapping_add(10_000_000);
    h.send(&tcp_frame(c.me, c.peer, far, 0, RST, 0, &[], &[]));
    h.expect_none("answer to a far RST", Duration::from_millis(50), |g| {
        g.proto == PROTO_TCP
    });
    assert_eq!(h.engine.flow_count(), 1, "the connection lives on");
    h.send(&c.seg(ACK | PSH, b"still here"));
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still here");
}

#[test]
fn a_reset_inside_the_window_gets_a_challenge_ack_and_keeps_the_connection() {
    let (l, port) = server();
    let mut h = Harness::new(config());
    let c = connect(&mut h, guest4(40037), gw4(port), 1460, Some(7));
    let _s = l.accept().unwrap();
    let near = c.snd_nxt.wrapping_add(100);
    h.send(&tcp_frame(c.me, c.peer, near, 0, RST, 0, &[], &[]));
    let challenge = from_server(&mut h, "challenge ACK", |t| t.flags == ACK);
    assert_eq!(challenge.ack, c.snd_nxt);
    assert_eq!(h.engine.flow_count(), 1);
}

//! A guest that sends without pause: the engine's own event loop (on a thread of this
//! process, the guest on the other end of a stream socket pair) still serves its sockets
//! — it reads the guest's frames a budget at a time, not until none are left, which a
//! guest faster than the engine would never let happen. Privileged: the guest's end
//! gets a send buffer beyond the unprivileged limit, to hold a second of the engine's
//! work before the engine starts.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use netbind_testbed::require_privileges;
use netbind_usernet::frame::PROTO_UDP;
use netbind_usernet::run::{Attach, RunOptions, run};

/// `frame` as the stream socket carries it: its length first (4 bytes, big-endian).
fn framed(frame: &[u8]) -> Vec<u8> {
    let mut out = (frame.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(frame);
    out
}

/// What the engine sent the guest, in order, as far as this test tells it apart.
#[derive(Debug, PartialEq)]
enum Seen {
    EchoReply,
    ArpReply,
}

#[test]
fn a_guest_sending_without_pause_still_gets_the_replies_its_sockets_bring() {
    require_privileges(&[]).unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap(); // never read
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (sink_port, echo_port) = (
        sink.local_addr().unwrap().port(),
        echo.local_addr().unwrap().port(),
    );
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });

    // Everything the guest sends, queued before the engine runs: a request to the echo,
    // then 500,000 small datagrams to the sink (about a second of the engine's work),
    // then an ARP request. Read until nothing is left, the ARP reply would come first,
    // the echo's reply only once all of it is read.
    let (mut guest, engine_end) = UnixStream::pair().unwrap();
    nix::sys::socket::setsockopt(&guest, nix::sys::socket::sockopt::SndBufForce, &(256 << 20))
        .expect("SO_SNDBUFFORCE");
    let noise = framed(&udp_frame(guest4(5000), gw4(sink_port), &[7u8; 16]));
    let mut queued = framed(&udp_frame(guest4(5001), gw4(echo_port), b"are you there"));
    for _ in 0..500_000 {
        queued.extend_from_slice(&noise);
    }
    // An ARP request for the gateway: the engine answers it as it reads it.
    queued.extend(framed(&arp_request(GW4, GUEST4)));
    guest.set_nonblocking(true).unwrap();
    guest
        .write_all(&queued)
        .expect("the socket holds all the guest sends");
    guest.set_nonblocking(false).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let engine = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let opts = RunOptions {
                pcap: None,
                signals: false,
                stop,
                stats: None,
                harden: None,
                busy_poll: Duration::ZERO,
            };
            run(config(), Attach::Fd(engine_end.into()), opts)
        })
    };

    guest
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut buf, mut seen) = (Vec::new(), Vec::new());
    while seen.len() < 2 && Instant::now() < deadline {
        let mut chunk = [0u8; 65536];
        match guest.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let got = Got::parse(buf[4..4 + len].to_vec());
            buf.drain(..4 + len);
            if got.ethertype == 0x0806 {
                seen.push(Seen::ArpReply);
            } else if got.proto == PROTO_UDP
                && got.l4[..2] == echo_port.to_be_bytes()
                && got.udp_payload() == b"are you there"
            {
                seen.push(Seen::EchoReply);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(guest);
    engine.join().unwrap().expect("the engine ran");
    assert_eq!(
        seen,
        [Seen::EchoReply, Seen::ArpReply],
        "the echo's reply reached the guest while its other frames were still being read"
    );
}

//! Any bytes as Ethernet frames from a hostile guest: the engine answers, relays or drops
//! them, and never panics. The input is a sequence of frames, each after a 2-byte
//! big-endian length (the rest is the last frame), so that state kept across frames —
//! fragments being reassembled, TCP handshakes — is explored too. Frames that open flows
//! touch real sockets on loopback only.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use netbind_usernet::{Engine, EngineConfig, MemTx};

fuzz_target!(|data: &[u8]| {
    let mut cfg = EngineConfig {
        guest_mac: Some([2, 0, 0, 0, 0, 0x0a]),
        guest4: Some("10.0.2.15/24".parse().unwrap()),
        guest6: Some("fd00::15/64".parse().unwrap()),
        gateway4: Some(Ipv4Addr::new(10, 0, 2, 2)),
        hostname: "guest".into(),
        ..EngineConfig::default()
    };
    cfg.dns = vec![IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3))];
    let poll = mio::Poll::new().unwrap();
    let mut engine = Engine::new(cfg, MemTx::default(), poll.registry().try_clone().unwrap()).unwrap();
    let mut rest = data;
    while rest.len() > 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        engine.guest_frame(&rest[2..2 + n]);
        rest = &rest[2 + n..];
    }
    engine.guest_frame(rest);
    engine.flush();
});

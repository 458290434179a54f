//! Any bytes as an Ethernet frame from a hostile guest: the engine answers, relays or
//! drops it, and never panics. Frames that open flows touch real sockets on loopback only.
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
    engine.guest_frame(data);
    engine.flush();
});

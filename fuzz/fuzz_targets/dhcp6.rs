//! Any bytes as a DHCPv6 client message: answered or dropped, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netbind_dhcp::v6::Server6;
use netbind_plan::model::Dhcp6Config;

fuzz_target!(|data: &[u8]| {
    let mut server = Server6::new(Dhcp6Config {
        interface: "k6t-eth0".into(),
        client_mac: "02:00:00:00:00:0a".into(),
        address: "fd10:0:2::2".parse().unwrap(),
        dns: vec!["fd00::a".parse().unwrap()],
        search: vec!["cluster.local".into()],
        lease_seconds: 86400,
    });
    let _ = server.handle(None, data);
});

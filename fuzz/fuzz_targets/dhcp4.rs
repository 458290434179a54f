//! Any bytes as a DHCPv4 request from the guest: answered or dropped, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netbind_dhcp::v4::Server4;
use netbind_plan::model::Dhcp4Config;

fuzz_target!(|data: &[u8]| {
    let config = Dhcp4Config {
        interface: "k6t-eth0".into(),
        server_address: [10, 0, 2, 1].into(),
        client_mac: "02:00:00:00:00:0a".into(),
        address: "10.0.2.2/24".parse().unwrap(),
        router: Some([10, 0, 2, 1].into()),
        classless_routes: vec![],
        dns: vec![[10, 96, 0, 10].into()],
        search: vec!["ns.svc.cluster.local".into()],
        domain_name: Some("ns.svc.cluster.local".into()),
        hostname: "vm".into(),
        mtu: 1500,
        ntp: vec![],
        tftp_server: None,
        boot_file: None,
        private_options: vec![],
        lease_seconds: 86400,
    };
    let mut server = Server4::new(config).unwrap();
    let _ = server.handle(data);
});

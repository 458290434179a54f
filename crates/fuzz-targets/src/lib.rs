//! The bodies of netbind's fuzz targets, one `pub fn` per target of `fuzz/` (cargo-fuzz,
//! nightly). Each target there is a one-line `fuzz_target!` around the function of the same
//! name here, and `tests/corpus.rs` feeds every file of `fuzz/corpus/<target>/` through the
//! same function on stable, so the seeds and every crasher ever found stay regression tests
//! of `cargo test --workspace`.
//!
//! Every function takes any bytes and must return without panicking; what it returns is
//! of no interest.

#![forbid(unsafe_code)]

mod vhost_user;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use netbind_dhcp::v4::Server4;
use netbind_dhcp::v6::Server6;
use netbind_netns::apply::{layout, replan, steps};
use netbind_netns::journal::Journal;
use netbind_plan::model::{Dhcp4Config, Dhcp6Config};
use netbind_plan::{NetworkPlan, PodView};
use netbind_spec::{ClusterConfig, Document, defaults, parse_documents, validate};
use netbind_usernet::{Engine, EngineConfig, MemTx};
pub use vhost_user::{vhost_user_queue, vhost_user_run};

/// A fuzz target's body: any bytes in, never a panic.
pub type Body = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/Cargo.toml` names its binaries and `fuzz/corpus/`
/// its directories.
pub const TARGETS: &[(&str, Body)] = &[
    ("manifest", manifest),
    ("dhcp4", dhcp4),
    ("dhcp6", dhcp6),
    ("guest_frame", guest_frame),
    ("journal", journal),
    ("migration_state", migration_state),
    ("vhost_user_queue", vhost_user_queue),
];

/// Any bytes as a manifest: read, default, validate, plan and render (table, DOT, SVG).
pub fn manifest(data: &[u8]) {
    let cluster = ClusterConfig::default();
    let Ok(docs) = parse_documents(data) else {
        return;
    };
    for doc in docs {
        if let Document::Vm(obj) = doc {
            let obj = defaults::apply(&obj, &cluster);
            let pod = PodView::typical(&obj);
            let _ = validate(&obj, &cluster, Some(&pod.addresses()));
            if let Ok(plan) = netbind_plan::plan(&obj, &cluster, &pod) {
                let _ = (plan.to_table_with_devices(), plan.to_dot(), plan.to_svg());
            }
        }
    }
}

/// The DHCPv4 server `dhcp4` talks to (a masquerade interface's).
pub fn dhcp4_server() -> Server4 {
    Server4::new(Dhcp4Config {
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
    })
    .unwrap()
}

/// Any bytes as a DHCPv4 request from the guest: answered or dropped.
pub fn dhcp4(data: &[u8]) {
    let _ = dhcp4_server().handle(data);
}

/// The DHCPv6 server `dhcp6` talks to.
pub fn dhcp6_server() -> Server6 {
    Server6::new(Dhcp6Config {
        interface: "k6t-eth0".into(),
        client_mac: "02:00:00:00:00:0a".into(),
        address: "fd10:0:2::2".parse().unwrap(),
        dns: vec!["fd00::a".parse().unwrap()],
        search: vec!["cluster.local".into()],
        lease_seconds: 86400,
    })
}

/// Any bytes as a DHCPv6 client message: answered or dropped.
pub fn dhcp6(data: &[u8]) {
    let _ = dhcp6_server().handle(None, data);
}

/// The engine `guest_frame` feeds, with frames to the guest kept in memory; the `Poll`
/// must live as long as the engine.
pub fn guest_engine() -> (mio::Poll, Engine<MemTx>) {
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
    let engine = Engine::new(cfg, MemTx::default(), poll.registry().try_clone().unwrap()).unwrap();
    (poll, engine)
}

/// Any bytes as Ethernet frames from a hostile guest: the engine answers, relays or drops
/// them. The input is a sequence of frames, each after a 2-byte big-endian length (the rest
/// is the last frame), so that state kept across frames — fragments being reassembled, TCP
/// handshakes — is explored too. Frames that open flows touch real sockets on loopback
/// only (the gateway and DNS addresses map to the host's loopback).
pub fn guest_frame(data: &[u8]) {
    let (_poll, mut engine) = guest_engine();
    feed(&mut engine, data);
}

/// Any bytes as the state a migration's source sent (a damaged or hostile stream):
/// refused, or read — then it writes back to the same bytes (a current-version stream;
/// an older one reads back the same once written) and an engine takes it over
/// (with no repair helper, every connection in it is refused and queued for an RST).
pub fn migration_state(data: &[u8]) {
    use netbind_usernet::migrate::format::{State, VERSION};
    let Ok(state) = State::decode(data) else {
        return;
    };
    let written = state.encode();
    assert_eq!(
        State::decode(&written).as_ref(),
        Ok(&state),
        "a state written must read back the same"
    );
    // An older version's stream is written anew in the current one.
    if data.get(8..10) == Some(&VERSION.to_le_bytes()[..]) {
        assert_eq!(written, data, "a state read back must write the same bytes");
    }
    let (_poll, mut engine) = guest_engine();
    let done = engine.import_state(state, None);
    assert_eq!(done.tcp_restored, 0);
    engine.migration_resumed(None);
}

/// Feeds the frames of a `guest_frame` input to `engine`, then flushes what it sends.
/// Every other frame longer than a vhost-user split goes in as one from guest memory
/// would (its first bytes, the rest in two slices standing for guest memory); the others
/// as from a stream socket's buffer, most with more frames said to follow (so TCP data
/// is gathered into runs), every third without.
pub fn feed(engine: &mut Engine<MemTx>, data: &[u8]) {
    const SPLIT_AT: usize = netbind_usernet::attach::vhost_user::device::SPLIT_AT;
    let frames = frames(data);
    let n = frames.len();
    for (i, frame) in frames.into_iter().enumerate() {
        engine.frames_follow(i + 1 < n && i % 3 != 2);
        if i % 2 == 1 && frame.len() > SPLIT_AT {
            engine.frames_follow(false);
            let (head, rest) = frame.split_at(SPLIT_AT);
            let (mut a, mut b) = (
                rest[..rest.len() / 2].to_vec(),
                rest[rest.len() / 2..].to_vec(),
            );
            let mut tail = netbind_usernet::sys::GuestIov::default();
            for part in [&mut a, &mut b] {
                tail.push(&vm_memory::VolatileSlice::from(&mut part[..]));
            }
            engine.guest_frame_split(head, &tail);
        } else {
            engine.guest_frame(frame);
        }
    }
    engine.flush();
}

/// The frames of a `guest_frame` input: each after its 2-byte big-endian length, the
/// rest (possibly empty) as the last one.
pub fn frames(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() > 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        out.push(&rest[2..2 + n]);
        rest = &rest[2 + n..];
    }
    out.push(rest);
    out
}

/// The VM whose plan `journal` carries a journal over to.
pub const JOURNAL_VM: &str = "kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, masquerade: {}}, {name: blue, bridge: {}}]}}
  networks: [{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]
";

fn journal_plan() -> &'static (NetworkPlan, PodView) {
    static PLAN: OnceLock<(NetworkPlan, PodView)> = OnceLock::new();
    PLAN.get_or_init(|| {
        let cluster = ClusterConfig::default();
        let Some(Document::Vm(obj)) = parse_documents(JOURNAL_VM.as_bytes()).unwrap().pop() else {
            unreachable!("the manifest holds one VM")
        };
        let obj = defaults::apply(&obj, &cluster);
        let pod = PodView::typical(&obj);
        (netbind_plan::plan(&obj, &cluster, &pod).unwrap(), pod)
    })
}

/// Any bytes as a state dir's journal (damaged, edited by hand, from another version):
/// read, then carried over to a plan as a hot-plug would (`replan`) and used to extend a
/// pod view — an error or a result.
pub fn journal(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(journal) = Journal::from_lines(std::path::Path::new("journal.json"), &text) else {
        return;
    };
    let (plan, pod) = journal_plan();
    let _ = replan(&journal, &layout(plan), &steps(plan));
    let _ = journal.with_hotplugged_links(pod, pod);
}

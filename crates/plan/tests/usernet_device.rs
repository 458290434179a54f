//! The user-mode engine's guest device: vhost-user by default, a stream socket when the
//! VM asks for one; the shared guest memory vhost-user needs, once per VM; libvirt's
//! rendering against KubeVirt's own domain XML for `passtBinding` (files in
//! `tests/kubevirt/`, see its SOURCES.md), compared as trees; and which engine
//! `netbind up` runs for each launcher.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use netbind_plan::{GuestBackend, Launcher, NetworkPlan, PlanError, PodView, UsernetAttachment};
use support::{plan, plan_with, vmi};

const POD: &str = "[{name: default, pod: {}}]";
const PASST: &str = "[{name: default, passtBinding: {}, macAddress: \"02:aa:bb:cc:dd:ee\"}]";

/// `yaml` with `key: value` among its annotations.
fn annotated(yaml: &str, key: &str, value: &str) -> String {
    yaml.replace(
        "namespace: ns1}",
        &format!("namespace: ns1, annotations: {{{key}: \"{value}\"}}}}"),
    )
}

/// `yaml` with `domain.<field>` beside its devices.
fn with_domain(yaml: &str, field: &str) -> String {
    yaml.replace("domain: {devices:", &format!("domain: {{{field}, devices:"))
}

#[test]
fn passt_binding_attaches_by_vhost_user_by_default() {
    let p = plan(&vmi(PASST, POD));
    let i = &p.interfaces[0];
    assert_eq!(
        i.usernet.as_ref().unwrap().attachment,
        UsernetAttachment::VhostUser
    );
    assert_eq!(
        i.guest.qemu_args,
        vec![
            "-chardev",
            "socket,id=charua-default,path=/run/netbind/ns1/vm1/default.sock",
            "-netdev",
            "vhost-user,id=hostua-default,chardev=charua-default",
            "-device",
            "virtio-net-pci,netdev=hostua-default,id=ua-default,mac=02:aa:bb:cc:dd:ee,host_mtu=65520",
        ]
    );
}

#[test]
fn a_sidecar_plugin_served_by_the_engine_attaches_by_vhost_user_too() {
    let p = plan(&vmi("[{name: default, binding: {name: slirp}}]", POD));
    assert!(
        matches!(
            &p.interfaces[0].guest.backend,
            GuestBackend::VhostUser { socket, source, libvirt_mac: None, .. }
                if socket == "/run/netbind/ns1/vm1/default.sock" && source == "eth0"
        ),
        "{:?}",
        p.interfaces[0].guest.backend
    );
    assert!(p.shared_memory.is_some());
}

#[test]
fn the_guest_memory_is_shared_once_and_sized_by_memory_guest() {
    let y = with_domain(
        &vmi(
            "[{name: default, passtBinding: {}}, {name: blue, binding: {name: passt}}]",
            "[{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]",
        ),
        "memory: {guest: 1Gi}, resources: {requests: {memory: 2Gi}}",
    );
    let p = plan(&y);
    let memory = p.shared_memory.as_ref().unwrap();
    assert_eq!(memory.mib, Some(1024));
    let args = p.qemu_args();
    assert_eq!(
        args[..4],
        [
            "-object",
            "memory-backend-memfd,id=mem,size=1024M,share=on",
            "-machine",
            "memory-backend=mem"
        ]
    );
    assert_eq!(
        args.iter().filter(|a| a.contains("memory-backend")).count(),
        2,
        "one memory object, named once by the machine: {args:?}"
    );
    assert_eq!(
        args.iter().filter(|a| a.starts_with("vhost-user,")).count(),
        2
    );
    assert_eq!(
        p.libvirt_domain_xml(),
        "<memoryBacking>\n  <source type='memfd'/>\n  <access mode='shared'/>\n</memoryBacking>\n"
    );
}

#[test]
fn without_memory_guest_the_memory_request_then_the_limit_sizes_it() {
    let request = with_domain(
        &vmi(PASST, POD),
        "resources: {requests: {memory: 1500M}, limits: {memory: 4Gi}}",
    );
    // 1.5 GB is 1430.5 MiB: rounded up.
    assert_eq!(plan(&request).shared_memory.unwrap().mib, Some(1431));
    let limit = with_domain(&vmi(PASST, POD), "resources: {limits: {memory: 256Mi}}");
    assert_eq!(plan(&limit).shared_memory.unwrap().mib, Some(256));
}

#[test]
fn without_a_memory_size_the_plan_says_what_qemu_needs() {
    let p = plan(&vmi(PASST, POD));
    let memory = p.shared_memory.as_ref().unwrap();
    assert_eq!(memory.mib, None);
    assert!(memory.qemu_args.is_empty());
    assert!(!memory.libvirt_xml.is_empty(), "libvirt sizes it itself");
    assert!(
        p.notes.iter().any(|n| n.starts_with(
            "vhost-user: the guest's memory must be shared, and the manifest gives no memory size"
        ) && n
            .contains("-object memory-backend-memfd,id=mem,size=<memory>,share=on")),
        "{:?}",
        p.notes
    );
    let bad = with_domain(&vmi(PASST, POD), "memory: {guest: lots}");
    let p = plan(&bad);
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("the memory size \"lots\" is not a quantity")),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_vm_without_vhost_user_shares_no_memory() {
    let p = plan(&vmi("[{name: default, masquerade: {}}]", POD));
    assert_eq!(p.shared_memory, None);
    assert_eq!(p.libvirt_domain_xml(), "");
    let stream = plan(&annotated(
        &vmi(PASST, POD),
        "netbind.io/usernet-attachment",
        "stream",
    ));
    assert_eq!(stream.shared_memory, None);
}

#[test]
fn the_stream_socket_is_the_attachment_the_annotation_asks_for() {
    let p = plan(&annotated(
        &vmi(PASST, POD),
        "netbind.io/usernet-attachment",
        "stream",
    ));
    let i = &p.interfaces[0];
    assert_eq!(
        i.usernet.as_ref().unwrap().attachment,
        UsernetAttachment::Stream
    );
    assert_eq!(
        i.guest.qemu_args,
        vec![
            "-netdev",
            "stream,id=hostua-default,server=off,addr.type=unix,addr.path=/run/netbind/ns1/vm1/default.sock",
            "-device",
            "virtio-net-pci,netdev=hostua-default,id=ua-default,mac=02:aa:bb:cc:dd:ee,host_mtu=65520",
        ]
    );
    assert!(
        i.guest.libvirt_xml.starts_with(
            "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
        ),
        "{}",
        i.guest.libvirt_xml
    );
    let vhost = plan(&annotated(
        &vmi(PASST, POD),
        "netbind.io/usernet-attachment",
        "vhostUser",
    ));
    assert_eq!(
        vhost.interfaces[0].usernet.as_ref().unwrap().attachment,
        UsernetAttachment::VhostUser
    );
}

#[test]
fn an_unknown_attachment_is_an_error() {
    let err = plan_with(
        &annotated(&vmi(PASST, POD), "netbind.io/usernet-attachment", "tap"),
        PodView::typical,
    )
    .unwrap_err();
    assert!(matches!(err, PlanError::BadAttachment { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "interface default: annotation netbind.io/usernet-attachment: \"tap\" is not one of vhostUser, stream"
    );
}

#[test]
fn netbind_up_runs_the_engine_unless_libvirt_runs_its_passt() {
    let vhost = plan(&vmi(PASST, POD));
    let stream = plan(&annotated(
        &vmi(PASST, POD),
        "netbind.io/usernet-attachment",
        "stream",
    ));
    let bridge = plan(&vmi("[{name: default, bridge: {}}]", POD));
    let runs = |p: &NetworkPlan, l| p.interfaces[0].engine_run_by_up(l);
    assert!(runs(&vhost, Launcher::Qemu));
    assert!(!runs(&vhost, Launcher::Libvirt));
    assert!(runs(&stream, Launcher::Qemu));
    assert!(runs(&stream, Launcher::Libvirt));
    assert!(!runs(&bridge, Launcher::Qemu));
}

#[test]
fn a_stored_plan_without_an_attachment_meant_a_stream_socket() {
    let p = plan(&vmi(PASST, POD));
    let mut json = serde_json::to_value(&p).unwrap();
    let usernet = json["interfaces"][0]["usernet"].as_object_mut().unwrap();
    assert_eq!(usernet.remove("attachment").unwrap(), "vhostUser");
    let back: NetworkPlan = serde_json::from_value(json).unwrap();
    assert_eq!(
        back.interfaces[0].usernet.as_ref().unwrap().attachment,
        UsernetAttachment::Stream
    );
}

// ---------------------------------------------------------------------------------------
// libvirt: KubeVirt's domain XML
// ---------------------------------------------------------------------------------------

/// An element as a comparable tree: its name, attributes and children (text ignored),
/// children in no particular order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Tree {
    name: String,
    attributes: BTreeMap<String, String>,
    children: Vec<Tree>,
}

fn tree(node: roxmltree::Node<'_, '_>) -> Tree {
    let mut children: Vec<Tree> = node
        .children()
        .filter(|c| c.is_element())
        .map(tree)
        .collect();
    children.sort();
    Tree {
        name: node.tag_name().name().to_string(),
        attributes: node
            .attributes()
            .map(|a| (a.name().to_string(), a.value().to_string()))
            .collect(),
        children,
    }
}

fn parse(xml: &str) -> Tree {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    tree(doc.root_element())
}

/// The plan of `tests/kubevirt/<name>.vmi.yaml`, its devices and domain parts in a
/// `<domain>`, against `<name>.domain.xml`.
fn assert_domain_is_kubevirts(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubevirt");
    let read = |file: String| {
        std::fs::read_to_string(dir.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let p = plan(&read(format!("{name}.vmi.yaml")));
    let ours = format!(
        "<domain type='kvm'>\n{}<devices>\n{}</devices>\n</domain>\n",
        p.libvirt_domain_xml(),
        p.libvirt_xml()
    );
    let kubevirt = read(format!("{name}.domain.xml"));
    assert_eq!(
        parse(&ours),
        parse(&kubevirt),
        "{name}: netbind's\n{ours}\nKubeVirt's\n{kubevirt}"
    );
}

#[test]
fn libvirt_gets_kubevirts_vhostuser_interface_and_shared_memory() {
    assert_domain_is_kubevirts("passt-default");
}

#[test]
fn libvirt_port_forwards_exclude_istios_ports_when_nothing_is_listed() {
    assert_domain_is_kubevirts("passt-istio");
}

#[test]
fn libvirt_port_forwards_group_listed_ports_by_protocol_after_istios_exclusions() {
    assert_domain_is_kubevirts("passt-ports-istio");
}

#[test]
fn libvirt_gets_the_mac_only_when_the_vmi_sets_one() {
    let written = plan(&vmi(PASST, POD));
    assert!(
        written.interfaces[0]
            .guest
            .libvirt_xml
            .contains("<mac address='02:aa:bb:cc:dd:ee'/>")
    );
    let derived = plan(&vmi("[{name: default, passtBinding: {}}]", POD));
    let g = &derived.interfaces[0].guest;
    assert!(g.mac.is_some(), "QEMU's arguments carry the derived MAC");
    assert!(!g.libvirt_xml.contains("<mac"), "{}", g.libvirt_xml);
}

#[test]
fn libvirt_ports_without_istio_are_only_the_listed_ones() {
    let p = plan(&vmi(
        "[{name: default, passtBinding: {}, ports: [{port: 80}, {port: 53, protocol: UDP}]}]",
        POD,
    ));
    let xml = &p.interfaces[0].guest.libvirt_xml;
    assert!(
        xml.contains(
            "  <portForward proto='tcp'>\n    <range start='80'/>\n  </portForward>\n  \
             <portForward proto='udp'>\n    <range start='53'/>\n  </portForward>\n"
        ),
        "{xml}"
    );
    assert!(!xml.contains("exclude"), "{xml}");
}

#[test]
fn istio_with_only_udp_ports_forwards_every_other_tcp_port_as_kubevirt() {
    let p = plan(&annotated(
        &vmi(
            "[{name: default, passtBinding: {}, ports: [{port: 53, protocol: UDP}]}]",
            POD,
        ),
        "sidecar.istio.io/inject",
        "true",
    ));
    let u = p.interfaces[0].usernet.as_ref().unwrap();
    assert_eq!(
        u.tcp.spec(),
        "~15000,~15001,~15004,~15006,~15008,~15009,~15020,~15021,~15053,~15090"
    );
    assert_eq!(u.udp.spec(), "53");
    let xml = &p.interfaces[0].guest.libvirt_xml;
    assert_eq!(xml.matches("exclude='yes'").count(), 10, "{xml}");
    assert!(xml.contains("<portForward proto='udp'>\n    <range start='53'/>"));
}

//! The wiring diagram: the picture of a plan (rows, pieces, order), and its two
//! drawings, DOT and SVG, which show the same picture and survive any label.

mod support;

use std::process::{Command, Stdio};

use netbind_plan::render::picture::{Kind, Picture, Stage, picture, picture_all};
use netbind_plan::render::{dot, svg};
use netbind_plan::{NetworkPlan, Source};
use support::{plan, vmi};

fn three_networks() -> NetworkPlan {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/vm-three-networks.yaml"
    );
    plan(&std::fs::read_to_string(path).expect("examples/vm-three-networks.yaml"))
}

fn kinds(p: &Picture, row: usize) -> Vec<Kind> {
    p.rows[row].nodes.iter().map(|n| n.kind).collect()
}

fn headings(p: &Picture, row: usize) -> Vec<&str> {
    p.rows[row]
        .nodes
        .iter()
        .map(|n| n.lines[0].as_str())
        .collect()
}

fn edge_labels(p: &Picture, row: usize) -> Vec<&str> {
    p.rows[row].edges.iter().map(|e| e.label.as_str()).collect()
}

fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"))
}

/// Every piece of text the SVG shows, unescaped.
fn svg_texts(svg: &str) -> Vec<String> {
    parse(svg)
        .descendants()
        .filter(|n| n.has_tag_name("tspan") || n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::to_string))
        .collect()
}

/// Runs graphviz on the DOT text and returns its SVG; fails (never skips) when graphviz
/// is missing.
fn graphviz_lays_out(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphviz's `dot` must be installed (scripts/install-deps.sh installs graphviz)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write DOT to dot");
    let out = child.wait_with_output().expect("wait for dot");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "dot refused the graph: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(svg.contains("</svg>"), "{svg}");
    svg
}

/// How many nodes graphviz drew.
fn graphviz_nodes(svg: &str) -> usize {
    svg.matches("class=\"node\"").count()
}

#[test]
fn three_networks_give_three_rows_with_their_pieces_in_order() {
    let p = picture(&three_networks());
    assert_eq!(p.rows.len(), 3);
    assert_eq!(
        kinds(&p, 0),
        [
            Kind::Nic,
            Kind::Tap,
            Kind::Bridge,
            Kind::Nat,
            Kind::PodLink,
            Kind::Network
        ]
    );
    assert_eq!(
        headings(&p, 0),
        [
            "NIC ua-default",
            "tap tap0",
            "bridge k6t-eth0",
            "nftables NAT",
            "eth0",
            "pod network"
        ]
    );
    assert_eq!(
        kinds(&p, 1),
        [
            Kind::Nic,
            Kind::Tap,
            Kind::Bridge,
            Kind::PodLink,
            Kind::Network
        ]
    );
    assert_eq!(headings(&p, 1)[4], "NAD storage-l2");
    assert_eq!(
        kinds(&p, 2),
        [Kind::Nic, Kind::Vf, Kind::PodLink, Kind::Network]
    );
    assert_eq!(headings(&p, 2)[1], "VF 0000:65:00.1");
    assert_eq!(headings(&p, 2)[3], "NAD sriov-net");
}

#[test]
fn each_row_is_captioned_with_interface_and_binding() {
    let p = picture(&three_networks());
    let captions: Vec<&str> = p.rows.iter().map(|r| r.caption.as_str()).collect();
    assert_eq!(
        captions,
        [
            "default: masquerade (binding masquerade)",
            "storage: bridge (binding bridge)",
            "fast: sriov (binding sriov)"
        ]
    );
}

#[test]
fn masquerade_shows_the_gateway_bridge_its_servers_and_the_forwarded_ports() {
    let p = picture(&three_networks());
    let row = &p.rows[0];
    assert_eq!(
        row.nodes[2].lines,
        [
            "bridge k6t-eth0",
            "10.0.2.1/24",
            "fd10:0:2::1/120",
            "serves DHCPv4, DHCPv6, RA"
        ]
    );
    let nat = &row.nodes[3].lines;
    assert!(nat.contains(&"DNAT tcp 80".to_string()), "{nat:?}");
    assert!(nat.contains(&"DNAT udp 53".to_string()), "{nat:?}");
    assert_eq!(edge_labels(&p, 0), ["", "port", "routed", "masquerade", ""]);
}

#[test]
fn the_guest_nic_shows_model_mac_pci_address_and_guest_addresses() {
    let p = picture(&plan(&vmi(
        "[{name: default, masquerade: {}, macAddress: \"02:00:00:00:00:aa\", pciAddress: \"0000:00:05.0\"}]",
        "[{name: default, pod: {}}]",
    )));
    assert_eq!(
        p.rows[0].nodes[0].lines,
        [
            "NIC ua-default",
            "model virtio",
            "mac 02:00:00:00:00:aa",
            "pci 0000:00:05.0",
            "10.0.2.2/24",
            "fd10:0:2::2"
        ]
    );
}

#[test]
fn a_bridged_pod_link_shows_its_new_name_and_the_dummy_left_in_its_place() {
    let p = picture(&three_networks());
    let link = &p.rows[1].nodes[3];
    assert_eq!(link.stage, Stage::PodLink);
    assert!(link.lines.contains(&"renamed 49a25f9feef-nic".to_string()));
    assert!(link.lines.contains(&"a dummy keeps its name".to_string()));
}

#[test]
fn the_user_mode_engine_sits_between_its_socket_and_the_pod_link() {
    let passt = vmi(
        "[{name: default, passtBinding: {}}]",
        "[{name: default, pod: {}}]",
    );
    let p = picture(&plan(&passt));
    assert_eq!(
        kinds(&p, 0),
        [
            Kind::Nic,
            Kind::VhostUser,
            Kind::Engine,
            Kind::PodLink,
            Kind::Network
        ]
    );
    assert_eq!(
        edge_labels(&p, 0),
        ["vhost-user", "virtqueues", "sockets", ""]
    );
    let stream = passt.replace(
        "namespace: ns1}",
        "namespace: ns1, annotations: {netbind.io/usernet-attachment: stream}}",
    );
    let p = picture(&plan(&stream));
    assert_eq!(
        kinds(&p, 0),
        [
            Kind::Nic,
            Kind::Socket,
            Kind::Engine,
            Kind::PodLink,
            Kind::Network
        ]
    );
    assert_eq!(edge_labels(&p, 0), ["stream", "frames", "sockets", ""]);
}

#[test]
fn a_tap_plugins_macvtap_is_drawn_once_as_the_pod_link() {
    let p = picture(&plan(&vmi(
        "[{name: blue, binding: {name: macvtap}}]",
        "[{name: blue, multus: {networkName: blue-net}}]",
    )));
    assert_eq!(kinds(&p, 0), [Kind::Nic, Kind::PodLink, Kind::Network]);
    let link = &p.rows[0].nodes[1].lines;
    assert!(
        link.iter().any(|l| l.starts_with("macvtap, QEMU fd 3")),
        "{link:?}"
    );
}

#[test]
fn an_sriov_pod_link_without_netdev_is_drawn_dashed() {
    let plan = three_networks();
    let p = picture(&plan);
    assert!(p.rows[2].nodes[2].missing);
    assert!(
        dot::render(&plan).contains("style=\"rounded,filled,dashed\""),
        "DOT dashes it"
    );
    let svg = svg::render(&plan);
    let doc = parse(&svg);
    let dashed = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("node podlink missing"))
        .count();
    assert_eq!(dashed, 1, "{svg}");
}

#[test]
fn the_svg_is_well_formed_with_one_box_per_node_and_one_arrow_per_edge() {
    let plan = three_networks();
    let p = picture(&plan);
    let svg = svg::render(&plan);
    let doc = parse(&svg);
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let boxes = doc
        .descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').next() == Some("node"))
        })
        .count();
    let arrows = doc.descendants().filter(|n| n.has_tag_name("line")).count();
    assert_eq!(boxes, p.rows.iter().map(|r| r.nodes.len()).sum::<usize>());
    assert_eq!(arrows, p.rows.iter().map(|r| r.edges.len()).sum::<usize>());
}

#[test]
fn dot_and_svg_show_every_line_of_the_picture() {
    let plan = three_networks();
    let p = picture(&plan);
    let dot = dot::render(&plan);
    let texts = svg_texts(&svg::render(&plan));
    for line in p.rows.iter().flat_map(|r| &r.nodes).flat_map(|n| &n.lines) {
        assert!(texts.contains(line), "SVG lacks {line:?}");
        assert!(dot.contains(line.as_str()), "DOT lacks {line:?}");
    }
}

#[test]
fn graphviz_lays_out_the_dot_with_every_node() {
    let plan = three_networks();
    let drawn = graphviz_lays_out(&dot::render(&plan));
    assert_eq!(graphviz_nodes(&drawn), 15);
}

/// A plan whose labels hold markup, quotes, backslashes and control characters.
fn hostile() -> (NetworkPlan, String) {
    let mut plan = three_networks();
    let evil = "<b>&amp;\"x'\\n\\\"</b>".to_string();
    plan.object = format!("{evil}\u{1}\u{ffff}");
    plan.interfaces[1].source = Source::Multus {
        network_name: evil.clone(),
        default: false,
    };
    plan.interfaces[1].pod_link.name = format!("{evil}\n\"]; x -> y [");
    (plan, evil)
}

#[test]
fn svg_labels_are_escaped() {
    let (plan, evil) = hostile();
    let texts = svg_texts(&svg::render(&plan));
    assert!(texts.contains(&format!("NAD {evil}")), "{texts:?}");
}

#[test]
fn dot_labels_are_escaped_so_graphviz_reads_one_graph() {
    let (plan, _) = hostile();
    let drawn = graphviz_lays_out(&dot::render(&plan));
    assert_eq!(
        graphviz_nodes(&drawn),
        15,
        "a label broke out of its string"
    );
}

#[test]
fn a_plan_without_interfaces_draws_its_title_and_no_rows() {
    let plan = NetworkPlan {
        object: "VirtualMachineInstance/ns/empty".into(),
        pod_view: "default".into(),
        ..NetworkPlan::default()
    };
    let texts = svg_texts(&svg::render(&plan));
    assert!(texts.contains(&"no interfaces".to_string()), "{texts:?}");
    graphviz_lays_out(&dot::render(&plan));
}

#[test]
fn several_plans_make_one_picture_with_each_row_named_by_its_object() {
    let one = plan(&vmi(
        "[{name: default, masquerade: {}}]",
        "[{name: default, pod: {}}]",
    ));
    let mut two = one.clone();
    two.object = "VirtualMachineInstance/ns1/vm2".into();
    let p = picture_all(&[one, two]);
    assert_eq!(p.rows.len(), 2);
    assert_eq!(
        p.rows[1].caption,
        "VirtualMachineInstance/ns1/vm2: default: masquerade (binding masquerade)"
    );
    assert!(p.notes[0].starts_with("VirtualMachineInstance/ns1/vm1: pod view"));
    parse(&svg::draw(&p));
    graphviz_lays_out(&dot::draw(&p));
}

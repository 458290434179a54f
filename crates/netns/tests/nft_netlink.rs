//! Privileged: the netlink nftables loader against the `nft` binary.
//!
//! For every masquerade ruleset variant the planner produces, the ruleset is loaded by
//! [`Nft::load`] (nf_tables netlink, from a thread inside namespace A) and by
//! `nft -j -f -` (libnftables JSON, inside namespace B); `nft list ruleset` must print
//! both identically, and so must `nft --debug=netlink list ruleset` (the bytecode), with
//! counters and anonymous set numbers normalised. Then ownership: `unload` removes exactly
//! what `load` added — a pre-existing `nat` table with a foreign chain and rule stays as it
//! was — and `is_loaded` is right before and after. Needs root and `nft`; fails (never
//! skips) without them.

use std::io::Write;
use std::process::Stdio;

use netbind_netns::nft::{Nft, NftError};
use netbind_netns::run_in_netns;
use netbind_plan::nftables::{NftAction, NftChain, NftFamily, NftRule, NftRuleset, NftTable};
use netbind_plan::{NetworkPlan, PodView};
use netbind_spec::{ClusterConfig, Document, VmObject, defaults};
use netbind_testbed::Netns;

fn object(yaml: &str) -> VmObject {
    match netbind_spec::parse_documents(yaml.as_bytes())
        .expect("manifest parses")
        .remove(0)
    {
        Document::Vm(v) => defaults::apply(&v, &ClusterConfig::default()),
        _ => panic!("not a VM"),
    }
}

fn plan(yaml: &str, view: impl FnOnce(&VmObject) -> PodView) -> NetworkPlan {
    let obj = object(yaml);
    let view = view(&obj);
    netbind_plan::plan(&obj, &ClusterConfig::default(), &view).expect("plans")
}

fn masq(extra: &str, annotations: &str) -> String {
    format!(
        "kind: VirtualMachineInstance\nmetadata: {{name: vm1, namespace: ns1{annotations}}}\nspec:\n  domain: {{devices: {{interfaces: [{{name: default, masquerade: {{}}{extra}}}]}}}}\n  networks: [{{name: default, pod: {{}}}}]\n"
    )
}

const ISTIO: &str = ", annotations: {sidecar.istio.io/inject: \"true\"}";

/// A typical pod without its IPv6 addresses and routes.
fn ipv4_only(obj: &VmObject) -> PodView {
    let mut v = PodView::typical(obj);
    for l in &mut v.links {
        l.addresses.retain(|a| matches!(a, ipnet::IpNet::V4(_)));
    }
    v.routes
        .retain(|r| matches!(r.destination, ipnet::IpNet::V4(_)));
    v
}

/// (name, ruleset) of every variant.
fn variants() -> Vec<(&'static str, NftRuleset)> {
    let cases: Vec<(&str, String, bool)> = vec![
        ("no ports, dual stack", masq("", ""), true),
        ("no ports, ipv4 only", masq("", ""), false),
        (
            "ports",
            masq(
                ", ports: [{port: 80}, {port: 53, protocol: UDP}, {port: 443}]",
                "",
            ),
            true,
        ),
        (
            "portRanges",
            masq(
                ", portRanges: [{start: 1000, end: 2000, protocol: TCP}, {start: 5000, end: 5001, protocol: UDP}]",
                "",
            ),
            true,
        ),
        ("istio", masq("", ISTIO), true),
        (
            "istio + ports",
            masq(", ports: [{port: 22}, {port: 80}]", ISTIO),
            true,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, yaml, dual)| {
            let p = if dual {
                plan(&yaml, PodView::typical)
            } else {
                plan(&yaml, ipv4_only)
            };
            let rs = p.interfaces[0]
                .nftables
                .clone()
                .unwrap_or_else(|| panic!("{name}: no ruleset"));
            assert!(!rs.is_empty(), "{name}: empty ruleset");
            (name, rs)
        })
        .collect()
}

fn ns(tag: &str) -> Netns {
    netbind_testbed::require_privileges(&["ip", "nft"]).expect("root and nft");
    Netns::new(tag).expect("namespace")
}

/// `nft ARGS…` inside `ns`, stdin optional; panics with stderr on failure.
fn nft(ns: &Netns, args: &[&str], stdin: Option<&str>) -> String {
    let mut c = ns.command(&[&["nft"], args].concat());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn nft");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write nft stdin");
    }
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft {args:?} in {}: {}",
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Counters and anonymous set numbers zeroed, set elements in order (a hash set lists
/// its elements in an order of its random seed).
fn normalise(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let run = lines[i..]
            .iter()
            .take_while(|l| l.starts_with("\telement "))
            .count();
        lines[i..i + run].sort_unstable();
        i += run.max(1);
    }
    let mut out = String::new();
    for line in lines {
        let mut words: Vec<String> = Vec::new();
        let mut it = line.split(' ').peekable();
        while let Some(w) = it.next() {
            words.push(w.to_string());
            if (w == "packets" || w == "bytes" || w == "pkts") && it.peek().is_some() {
                it.next();
                words.push("N".into());
            }
        }
        let mut l = words.join(" ");
        // `__set3` → `__setN`
        while let Some(i) = l.find("__set") {
            let rest = &l[i + 5..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                break;
            }
            l = format!("{}__SETN{}", &l[..i], &rest[digits..]);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn load_netlink(ns: &Netns, rs: &NftRuleset) -> Result<(), NftError> {
    run_in_netns(ns.name(), || Nft::load(rs)).expect("enter namespace")
}

#[test]
fn every_masquerade_variant_loads_exactly_like_nft_json() {
    for (name, rs) in variants() {
        let a = ns("nfta");
        let b = ns("nftb");
        load_netlink(&a, &rs).unwrap_or_else(|e| panic!("{name}: netlink load: {e}"));
        nft(&b, &["-j", "-f", "-"], Some(&rs.to_json().to_string()));
        let text_a = normalise(&nft(&a, &["list", "ruleset"], None));
        let text_b = normalise(&nft(&b, &["list", "ruleset"], None));
        assert_eq!(text_a, text_b, "{name}: `nft list ruleset` differs");
        assert!(text_a.contains("table ip netbind"), "{name}: {text_a}");
        let code_a = normalise(&nft(&a, &["--debug=netlink", "list", "ruleset"], None));
        let code_b = normalise(&nft(&b, &["--debug=netlink", "list", "ruleset"], None));
        assert_eq!(code_a, code_b, "{name}: bytecode differs");
        // And the text rendering loads to the same too (single-element sets, ranges).
        let c = ns("nftc");
        nft(&c, &["-f", "-"], Some(&rs.to_nft_text()));
        assert_eq!(
            normalise(&nft(&c, &["list", "ruleset"], None)),
            text_a,
            "{name}: nft -f text differs"
        );
    }
}

fn snapshot_in(ns: &Netns, rs: &NftRuleset) -> Vec<netbind_netns::nft::TableBefore> {
    run_in_netns(ns.name(), || Nft::snapshot(rs))
        .expect("enter namespace")
        .expect("snapshot")
}

fn is_loaded_in(ns: &Netns, before: &[netbind_netns::nft::TableBefore]) -> bool {
    run_in_netns(ns.name(), || Nft::is_loaded(before))
        .expect("enter namespace")
        .expect("is_loaded")
}

fn unload_in(ns: &Netns, before: &[netbind_netns::nft::TableBefore]) {
    run_in_netns(ns.name(), || Nft::unload(before))
        .expect("enter namespace")
        .expect("unload")
}

/// Istio's init container leaves a `nat` table with chains and rules of its own; and a
/// `netbind` table someone else put a chain in (so the load adds to a table that exists).
const FOREIGN: &str = "\
add table ip netbind
add chain ip netbind THEIRS
add rule ip netbind THEIRS counter return
add table ip nat
add chain ip nat PREROUTING { type nat hook prerouting priority -100; }
add chain ip nat ISTIO_INBOUND
add rule ip nat PREROUTING meta l4proto tcp counter jump ISTIO_INBOUND
add rule ip nat ISTIO_INBOUND tcp dport { 15008, 15090 } counter return
add table ip filter
add chain ip filter INPUT { type filter hook input priority 0; }
add rule ip filter INPUT tcp dport 22 counter accept
";

#[test]
fn unload_removes_exactly_what_load_added_next_to_a_foreign_nat_table() {
    let (_, rs) = variants().remove(4); // istio: both families, anonymous sets
    let a = ns("nftown");
    nft(&a, &["-f", "-"], Some(FOREIGN));
    let before_text = nft(&a, &["-a", "list", "ruleset"], None);

    let before = snapshot_in(&a, &rs);
    let ip = before.iter().find(|b| b.family == "ip").expect("ip table");
    let ip6 = before
        .iter()
        .find(|b| b.family == "ip6")
        .expect("ip6 table");
    assert!(ip.existed && ip.max_handle > 0, "{before:?}");
    assert!(!ip6.existed && ip6.max_handle == 0, "{before:?}");
    assert!(!is_loaded_in(&a, &before), "nothing loaded yet");

    load_netlink(&a, &rs).expect("load");
    assert!(is_loaded_in(&a, &before), "loaded");
    let loaded = nft(&a, &["list", "ruleset"], None);
    assert!(loaded.contains("KUBEVIRT_PREINBOUND") && loaded.contains("ISTIO_INBOUND"));
    assert!(loaded.contains("table ip6 netbind") && loaded.contains("table ip nat"));

    unload_in(&a, &before);
    assert_eq!(
        nft(&a, &["-a", "list", "ruleset"], None),
        before_text,
        "unload left the namespace different from before the load"
    );
    assert!(!is_loaded_in(&a, &before), "unloaded");
    // Again: nothing there, nothing to do.
    unload_in(&a, &before);
    assert_eq!(nft(&a, &["-a", "list", "ruleset"], None), before_text);
}

#[test]
fn tables_wholly_ours_go_away_and_is_loaded_follows() {
    let (_, rs) = variants().remove(0);
    let a = ns("nftfresh");
    let before = snapshot_in(&a, &rs);
    assert!(before.iter().all(|b| !b.existed), "{before:?}");
    assert!(!is_loaded_in(&a, &before));
    load_netlink(&a, &rs).expect("load");
    assert!(is_loaded_in(&a, &before));
    unload_in(&a, &before);
    assert!(!is_loaded_in(&a, &before));
    assert_eq!(nft(&a, &["list", "ruleset"], None).trim(), "");
    unload_in(&a, &before); // a table that is not there is no error
}

#[test]
fn a_refused_rule_is_named_and_nothing_is_applied() {
    let a = ns("nftbad");
    let rs = NftRuleset {
        tables: vec![NftTable {
            family: NftFamily::Ip,
            name: "nat".into(),
            chains: vec![NftChain {
                name: "postrouting".into(),
                base: Some(netbind_plan::nftables::BaseChain {
                    kind: "nat".into(),
                    hook: "postrouting".into(),
                    priority: 100,
                }),
                rules: vec![
                    NftRule::new(vec![], NftAction::Masquerade),
                    NftRule::new(
                        vec![],
                        NftAction::Jump {
                            chain: "MISSING".into(),
                        },
                    ),
                ],
            }],
        }],
    };
    let err = load_netlink(&a, &rs).expect_err("jump to a missing chain");
    let msg = err.to_string();
    assert!(
        msg.contains("rule 2 of chain ip nat postrouting") && msg.contains("jump MISSING"),
        "{msg}"
    );
    assert!(
        matches!(err, NftError::Rejected { errno, .. } if errno == 2),
        "{err:?}"
    );
    assert_eq!(
        nft(&a, &["list", "ruleset"], None).trim(),
        "",
        "all or nothing"
    );
}

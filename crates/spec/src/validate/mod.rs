//! Validation: every rule KubeVirt's admission applies to networks and interfaces, and
//! the checks it misses. All violations are reported, never just the first.
//!
//! Input is a *defaulted* object (`defaults::apply`). Each violation carries the field path
//! in KubeVirt notation, starting at the object root (`spec.` for a VMI,
//! `spec.template.spec.` for a VM), and a stable kebab-case rule id listed in [`RULES`].
//!
//! How it works: [`validate`] builds a [`Ctx`] holding the object, name indexes and the
//! report, then runs each family of checks in turn — names and cross references
//! ([`names`]), network sources and VM networks ([`sources`]), bindings and link state
//! ([`bindings`]) and per-interface fields ([`fields`], [`ports`]). Every check looks at
//! the whole spec and appends; none stops the others. Unknown fields are not a matter of
//! validation: reading finds them, anywhere in the document ([`crate::schema`]).
//!
//! Invariants: no input panics (no indexing on input data, no unwrap); output order is
//! deterministic (checks run in a fixed order over lists in document order, maps are
//! `BTreeMap`s); one cause gives one violation — where a broken field makes further
//! checks meaningless (an interface whose network does not exist, a network without a
//! source, a discontinued binding), those further checks are skipped.

mod bindings;
mod fields;
mod mac;
mod names;
mod ports;
mod sources;

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use crate::cluster::ClusterConfig;
use crate::model::{Interface, Network, VmObject};

pub use mac::{MacError, parse_mac};
pub use sources::{DEFAULT_VM_NETWORK_V4, DEFAULT_VM_NETWORK_V6};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub path: String,
    pub rule: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub violations: Vec<Violation>,
    pub warnings: Vec<Warning>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Every rule id with a one-line description (the README lists these), grouped by
/// what they look at. `docs/validation-rules.md` says which ones KubeVirt also has.
pub const RULES: &[(&str, &str)] = &[
    // Names and cross references.
    (
        "interface-name-format",
        "interface names are non-empty and use only letters, digits, '-' and '_'",
    ),
    ("interface-name-unique", "no two interfaces share a name"),
    ("network-name-unique", "no two networks share a name"),
    (
        "interface-without-network",
        "every interface names an existing network",
    ),
    (
        "network-without-interface",
        "every network is used by an interface",
    ),
    ("hostname-format", "hostname is a DNS-1123 label"),
    ("subdomain-format", "subdomain is a DNS-1123 subdomain"),
    // Network sources.
    (
        "network-source-missing",
        "every network has a source: pod or multus",
    ),
    ("network-source-multiple", "a network has only one source"),
    ("pod-network-single", "at most one pod network"),
    (
        "multus-default-single",
        "at most one Multus default network",
    ),
    (
        "pod-network-with-multus-default",
        "no pod network when a Multus default network is defined",
    ),
    (
        "multus-network-name-required",
        "a Multus network names its NetworkAttachmentDefinition",
    ),
    (
        "multus-network-name-format",
        "multus.networkName is [namespace/]name with Kubernetes name syntax",
    ),
    (
        "vm-network-cidr-invalid",
        "vmNetworkCIDR / vmIPv6NetworkCIDR are networks of the right family",
    ),
    (
        "vm-network-cidr-too-small",
        "VM networks hold gateway and VM (IPv4 /30 or wider, IPv6 /126 or wider)",
    ),
    (
        "vm-network-cidr-collides-with-pod",
        "masquerade VM networks do not overlap the pod's addresses",
    ),
    // Bindings.
    ("interface-binding-missing", "every interface has a binding"),
    (
        "interface-binding-multiple",
        "an interface has only one binding",
    ),
    (
        "binding-discontinued",
        "slirp, macvtap and passt bindings are discontinued",
    ),
    (
        "masquerade-pod-network-only",
        "masquerade binding only on the pod network",
    ),
    (
        "passt-binding-pod-network-only",
        "passtBinding only on the pod network",
    ),
    (
        "passt-binding-gate",
        "passtBinding needs the PasstBinding feature gate",
    ),
    (
        "bridge-on-pod-network-not-permitted",
        "bridge on the pod network only when the cluster permits it",
    ),
    (
        "sriov-multus-network-only",
        "sriov binding only on a Multus network",
    ),
    (
        "binding-plugin-unknown",
        "binding.name names a plugin registered in the cluster configuration",
    ),
    // Link state.
    ("state-value", "state is up, down or absent"),
    (
        "state-link-sriov",
        "state up/down is not supported on SR-IOV interfaces",
    ),
    (
        "state-absent-bridge-only",
        "state absent only on bridge interfaces",
    ),
    (
        "state-absent-default-network",
        "state absent not on the default (pod or Multus default) network",
    ),
    // Guest device.
    (
        "model-unsupported",
        "model is one of e1000, e1000e, igb, ne2k_pci, pcnet, rtl8139, virtio",
    ),
    (
        "mac-malformed",
        "macAddress is a MAC address with ':' or '-' separators",
    ),
    ("mac-too-long", "macAddress has six bytes"),
    ("mac-multicast", "macAddress is a unicast address"),
    (
        "mac-reserved",
        "masquerade interfaces do not use the bridge's MAC 02:00:00:00:00:00",
    ),
    ("mac-duplicate", "no two interfaces share a MAC address"),
    (
        "pci-address-format",
        "pciAddress is dddd:bb:ss.f with slot 00-1f",
    ),
    ("boot-order-positive", "bootOrder is 1 or more"),
    ("boot-order-unique", "no two interfaces share a bootOrder"),
    ("acpi-index-range", "acpiIndex is within 1..16383"),
    ("acpi-index-unique", "no two interfaces share an acpiIndex"),
    // Ports.
    ("port-name-format", "port names are IANA service names"),
    (
        "port-name-unique",
        "port names are unique within an interface",
    ),
    ("port-number-required", "every port has a port number"),
    ("port-number-range", "port numbers are within 1..65535"),
    ("port-protocol", "port protocol is TCP or UDP"),
    (
        "port-duplicate",
        "no port/protocol pair is listed twice on an interface",
    ),
    (
        "port-ranges-gate",
        "portRanges need the PortRangesSpec feature gate",
    ),
    (
        "port-ranges-masquerade-only",
        "portRanges only on masquerade interfaces",
    ),
    (
        "port-ranges-with-ports",
        "portRanges and ports are not both set on an interface",
    ),
    ("port-ranges-count", "at most 10 portRanges per interface"),
    ("port-range-protocol", "portRange protocol is TCP or UDP"),
    (
        "port-range-bounds",
        "portRange start and end are within 1..65535",
    ),
    ("port-range-order", "portRange start is not after end"),
    (
        "port-ranges-overlap",
        "portRanges of one protocol do not overlap",
    ),
    // DHCP options.
    (
        "dhcp-private-option-range",
        "DHCP private options are within 224..254",
    ),
    (
        "dhcp-private-option-unique",
        "DHCP private options are not repeated",
    ),
    (
        "dhcp-ntp-server-ipv4",
        "DHCP NTP servers are IPv4 addresses",
    ),
    (
        "dhcp-option-too-long",
        "DHCP option values fit in 255 bytes",
    ),
];

/// Validates a defaulted object. `pod_addresses`, when known, are the addresses of the
/// pod's links; VM networks (masquerade CIDRs) must not collide with them.
pub fn validate(
    obj: &VmObject,
    cluster: &ClusterConfig,
    pod_addresses: Option<&[IpNet]>,
) -> Report {
    let mut ctx = Ctx::new(obj, cluster, pod_addresses);
    names::check(&mut ctx);
    sources::check(&mut ctx);
    bindings::check(&mut ctx);
    fields::check(&mut ctx);
    ports::check(&mut ctx);
    ctx.report
}

/// What every check needs: the object, indexes over it, and the report being built.
pub(crate) struct Ctx<'a> {
    pub obj: &'a VmObject,
    pub cluster: &'a ClusterConfig,
    pub pod_addresses: Option<&'a [IpNet]>,
    prefix: &'static str,
    /// Network name → index of its first occurrence.
    networks_by_name: BTreeMap<&'a str, usize>,
    /// Interface name → index of its first occurrence.
    interfaces_by_name: BTreeMap<&'a str, usize>,
    pub report: Report,
}

impl<'a> Ctx<'a> {
    fn new(
        obj: &'a VmObject,
        cluster: &'a ClusterConfig,
        pod_addresses: Option<&'a [IpNet]>,
    ) -> Self {
        let mut networks_by_name = BTreeMap::new();
        for (i, n) in obj.networks().iter().enumerate() {
            networks_by_name.entry(n.name.as_str()).or_insert(i);
        }
        let mut interfaces_by_name = BTreeMap::new();
        for (i, iface) in obj.interfaces().iter().enumerate() {
            interfaces_by_name.entry(iface.name.as_str()).or_insert(i);
        }
        Ctx {
            obj,
            cluster,
            pod_addresses,
            prefix: obj.kind.spec_prefix(),
            networks_by_name,
            interfaces_by_name,
            report: Report::default(),
        }
    }

    pub fn interfaces(&self) -> &'a [Interface] {
        self.obj.interfaces()
    }

    pub fn networks(&self) -> &'a [Network] {
        self.obj.networks()
    }

    /// The network an interface is attached to (first of that name), if any.
    pub fn network_of(&self, iface: &Interface) -> Option<&'a Network> {
        let idx = *self.networks_by_name.get(iface.name.as_str())?;
        self.networks().get(idx)
    }

    /// The interface using a network (first of that name), if any.
    pub fn interface_of(&self, net: &Network) -> Option<&'a Interface> {
        let idx = *self.interfaces_by_name.get(net.name.as_str())?;
        self.interfaces().get(idx)
    }

    /// Whether `i` is the first interface carrying its name (later ones are duplicates).
    pub fn is_first_interface(&self, i: usize) -> bool {
        self.interfaces()
            .get(i)
            .is_some_and(|iface| self.interfaces_by_name.get(iface.name.as_str()) == Some(&i))
    }

    pub fn is_first_network(&self, i: usize) -> bool {
        self.networks()
            .get(i)
            .is_some_and(|n| self.networks_by_name.get(n.name.as_str()) == Some(&i))
    }

    /// `<prefix>` + `rest`, e.g. `spec.hostname`.
    pub fn path(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// `<prefix>domain.devices.interfaces[i]`.
    pub fn iface_path(&self, i: usize) -> String {
        format!("{}domain.devices.interfaces[{i}]", self.prefix)
    }

    /// `<prefix>networks[i]`.
    pub fn net_path(&self, i: usize) -> String {
        format!("{}networks[{i}]", self.prefix)
    }

    pub fn violation(&mut self, path: String, rule: &'static str, message: impl Into<String>) {
        self.report.violations.push(Violation {
            path,
            rule,
            message: message.into(),
        });
    }

    pub fn warning(&mut self, path: String, message: impl Into<String>) {
        self.report.warnings.push(Warning {
            path,
            message: message.into(),
        });
    }
}

/// Kubernetes' DNS-1123 label: lowercase alphanumerics and '-', alphanumeric at both
/// ends, at most 63 characters.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let ok_end = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !b.is_empty() && b.len() <= 63 && b.iter().all(ok_char) && ok_end(b.first()) && ok_end(b.last())
}

/// Kubernetes' DNS-1123 subdomain: dot-separated labels (alphanumeric at both ends of each),
/// at most 253 characters.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;
    use crate::read::{Document, parse_documents};

    /// Reads, defaults and validates the single VM object in `yaml`.
    pub(crate) fn check_with(yaml: &str, cluster: &ClusterConfig, pod: Option<&[IpNet]>) -> Report {
        let docs = parse_documents(yaml.as_bytes()).expect("test manifest parses");
        let Some(Document::Vm(obj)) = docs.into_iter().next() else {
            panic!("no VM object in test manifest")
        };
        validate(&defaults::apply(&obj, cluster), cluster, pod)
    }

    pub(crate) fn check(yaml: &str) -> Report {
        check_with(yaml, &ClusterConfig::default(), None)
    }

    /// `(rule, path)` of every violation.
    pub(crate) fn found(report: &Report) -> Vec<(&'static str, String)> {
        report
            .violations
            .iter()
            .map(|v| (v.rule, v.path.clone()))
            .collect()
    }

    #[test]
    fn empty_vmi_with_default_pod_network_is_valid() {
        let r = check("kind: VirtualMachineInstance\nmetadata: {name: a}\n");
        assert!(r.is_valid(), "{r:?}");
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn rule_ids_are_unique_kebab_case() {
        let mut seen = std::collections::BTreeSet::new();
        for (id, desc) in RULES {
            assert!(seen.insert(*id), "{id} listed twice");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{id}"
            );
            assert!(!desc.is_empty());
        }
    }

    #[test]
    fn vm_paths_start_at_the_template_spec() {
        let r = check(
            "kind: VirtualMachine\nspec:\n  template:\n    spec:\n      domain: {devices: {interfaces: [{name: a, bridge: {}}]}}\n",
        );
        assert_eq!(
            found(&r),
            vec![(
                "interface-without-network",
                "spec.template.spec.domain.devices.interfaces[0].name".to_string()
            )]
        );
    }

    #[test]
    fn all_violations_are_reported_not_just_the_first() {
        let r = check(
            "kind: VirtualMachineInstance\nspec:\n  hostname: Bad_Host\n  domain: {devices: {interfaces: [{name: a, bridge: {}, model: nope, bootOrder: 0}]}}\n  networks: [{name: a, pod: {}}]\n",
        );
        let rules: Vec<_> = r.violations.iter().map(|v| v.rule).collect();
        assert_eq!(
            rules,
            vec![
                "hostname-format",
                "model-unsupported",
                "boot-order-positive"
            ]
        );
    }

    #[test]
    fn a_thousand_distinct_interfaces_are_valid() {
        let mut yaml = String::from(
            "kind: VirtualMachineInstance\nspec:\n  domain:\n    devices:\n      interfaces:\n",
        );
        for i in 0..1000 {
            yaml.push_str(&format!(
                "      - {{name: n{i}, bridge: {{}}, macAddress: '02:00:00:00:{:02x}:{:02x}', bootOrder: {}, acpiIndex: {}}}\n",
                i / 256,
                i % 256,
                i + 1,
                i + 1
            ));
        }
        yaml.push_str("  networks:\n");
        for i in 0..1000 {
            yaml.push_str(&format!(
                "  - {{name: n{i}, multus: {{networkName: nad-{i}}}}}\n"
            ));
        }
        let docs = parse_documents(yaml.as_bytes()).expect("parses");
        let Some(Document::Vm(obj)) = docs.into_iter().next() else {
            panic!("no VM")
        };
        let cluster = ClusterConfig::default();
        let defaulted = defaults::apply(&obj, &cluster);
        let r = validate(&defaulted, &cluster, None);
        assert!(r.is_valid(), "{:?}", r.violations.first());
    }

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label("A"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
    }
}

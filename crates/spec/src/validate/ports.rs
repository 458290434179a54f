//! Forwarded ports: `ports[]` (masquerade, passt and plugins forward them) and
//! `portRanges[]` (masquerade only, behind the PortRangesSpec gate).
//!
//! KubeVirt looks at these only on the pod network; netbind checks them wherever they are
//! written, since a malformed port is malformed anywhere. Each field is checked on its
//! own; checks that combine fields (start ≤ end, duplicates, overlaps) only use entries
//! whose fields are valid, so one bad number gives one violation. Overlaps are found by
//! sorting the ranges of one protocol by start and comparing each with the widest range
//! seen so far, which also catches a range nested in an earlier, longer one.

use std::collections::{BTreeMap, BTreeSet};

use super::Ctx;
use crate::cluster::GATE_PORT_RANGES;
use crate::model::Interface;

const MAX_PORT_RANGES: usize = 10;
const PORTS: std::ops::RangeInclusive<i64> = 1..=65535;

pub(super) fn check(ctx: &mut Ctx) {
    for (i, iface) in ctx.interfaces().iter().enumerate() {
        ports(ctx, i, iface);
        port_ranges(ctx, i, iface);
    }
}

fn ports(ctx: &mut Ctx, i: usize, iface: &Interface) {
    let base = ctx.iface_path(i);
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pairs: BTreeMap<(i64, &str), usize> = BTreeMap::new();
    for (k, port) in iface.ports.iter().enumerate() {
        let path = format!("{base}.ports[{k}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            if let Err(why) = iana_service_name(name) {
                ctx.violation(
                    format!("{path}.name"),
                    "port-name-format",
                    format!("port name {name:?} {why}"),
                );
            } else if let Some(first) = names.get(name) {
                let message = format!("port name {name:?} is already used by ports[{first}]");
                ctx.violation(format!("{path}.name"), "port-name-unique", message);
            } else {
                names.insert(name, k);
            }
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let protocol_ok = matches!(protocol, "TCP" | "UDP");
        if !protocol_ok {
            let message = format!("protocol {protocol:?} is not supported; use TCP or UDP");
            ctx.violation(format!("{path}.protocol"), "port-protocol", message);
        }
        if port.port == 0 {
            ctx.violation(
                format!("{path}.port"),
                "port-number-required",
                "port is required: a number from 1 to 65535",
            );
        } else if !PORTS.contains(&port.port) {
            let message = format!("port {} is out of range; use 1 to 65535", port.port);
            ctx.violation(format!("{path}.port"), "port-number-range", message);
        } else if protocol_ok {
            if let Some(first) = pairs.get(&(port.port, protocol)) {
                let message = format!(
                    "{protocol} port {} is already listed as ports[{first}]",
                    port.port
                );
                ctx.violation(format!("{path}.port"), "port-duplicate", message);
            } else {
                pairs.insert((port.port, protocol), k);
            }
        }
    }
}

/// Kubernetes' IANA_SVC_NAME: at most 15 characters of `a-z`, `0-9` and `-`, at least
/// one letter, no `--`, no `-` at either end.
fn iana_service_name(name: &str) -> Result<(), &'static str> {
    if name.len() > 15 {
        return Err("is longer than 15 characters (IANA service name)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may only contain a-z, 0-9 and '-' (IANA service name)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("needs at least one letter (IANA service name)");
    }
    if name.contains("--") || name.starts_with('-') || name.ends_with('-') {
        return Err("may not start or end with '-' or contain '--' (IANA service name)");
    }
    Ok(())
}

fn port_ranges(ctx: &mut Ctx, i: usize, iface: &Interface) {
    if iface.port_ranges.is_empty() {
        return;
    }
    let base = format!("{}.portRanges", ctx.iface_path(i));
    if !ctx.cluster.gate(GATE_PORT_RANGES) {
        let message = "portRanges need the PortRangesSpec feature gate; enable it in the cluster configuration";
        return ctx.violation(base, "port-ranges-gate", message);
    }
    if iface.masquerade.is_none() {
        ctx.violation(
            base.clone(),
            "port-ranges-masquerade-only",
            "portRanges are only supported with masquerade binding",
        );
    }
    if !iface.ports.is_empty() {
        ctx.violation(
            base.clone(),
            "port-ranges-with-ports",
            "set either ports or portRanges on an interface, not both",
        );
    }
    if iface.port_ranges.len() > MAX_PORT_RANGES {
        let message = format!(
            "{} portRanges given; at most {MAX_PORT_RANGES} are allowed",
            iface.port_ranges.len()
        );
        ctx.violation(base.clone(), "port-ranges-count", message);
    }
    // protocol → (start, end, index) of each valid range
    let mut valid: BTreeMap<&str, Vec<(i64, i64, usize)>> = BTreeMap::new();
    for (k, range) in iface.port_ranges.iter().enumerate() {
        let path = format!("{base}[{k}]");
        let protocol = range.protocol.as_deref().unwrap_or("");
        let protocol_ok = matches!(protocol, "TCP" | "UDP");
        if !protocol_ok {
            let message = if protocol.is_empty() {
                "protocol is required: TCP or UDP".to_string()
            } else {
                format!("protocol {protocol:?} is not supported; use TCP or UDP")
            };
            ctx.violation(format!("{path}.protocol"), "port-range-protocol", message);
        }
        let mut bounds_ok = true;
        for (field, value) in [("start", range.start), ("end", range.end)] {
            if !PORTS.contains(&value) {
                bounds_ok = false;
                let message = format!("{field} {value} is not a port; use 1 to 65535");
                ctx.violation(format!("{path}.{field}"), "port-range-bounds", message);
            }
        }
        if bounds_ok && range.start > range.end {
            let message = format!("start {} is after end {}", range.start, range.end);
            ctx.violation(format!("{path}.start"), "port-range-order", message);
        } else if bounds_ok && protocol_ok {
            valid
                .entry(protocol)
                .or_default()
                .push((range.start, range.end, k));
        }
    }
    let mut overlapping = BTreeSet::new();
    for (protocol, ranges) in &mut valid {
        ranges.sort_unstable();
        let mut widest: Option<(i64, i64, usize)> = None;
        for &(start, end, k) in ranges.iter() {
            if let Some((w_start, w_end, w_k)) = widest {
                if start <= w_end {
                    let message = format!(
                        "{protocol} range {start}-{end} overlaps portRanges[{w_k}] ({w_start}-{w_end})"
                    );
                    overlapping.insert((k, message));
                }
                if end > w_end {
                    widest = Some((start, end, k));
                }
            } else {
                widest = Some((start, end, k));
            }
        }
    }
    for (k, message) in overlapping {
        ctx.violation(format!("{base}[{k}]"), "port-ranges-overlap", message);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, check_with, found};
    use super::iana_service_name;
    use crate::cluster::ClusterConfig;

    fn masq(extra: &str) -> String {
        format!(
            "kind: VirtualMachineInstance\nspec:\n  domain: {{devices: {{interfaces: [{{name: a, masquerade: {{}}, {extra}}}]}}}}\n  networks: [{{name: a, pod: {{}}}}]\n"
        )
    }

    #[test]
    fn iana_names() {
        assert!(iana_service_name("http").is_ok());
        assert!(iana_service_name("h-2").is_ok());
        assert!(iana_service_name("80").is_err());
        assert!(iana_service_name("a--b").is_err());
        assert!(iana_service_name("Http").is_err());
        assert!(iana_service_name("abcdefghijklmnop").is_err());
    }

    #[test]
    fn range_nested_in_an_earlier_wide_one_overlaps() {
        let r = check(&masq(
            "portRanges: [{protocol: TCP, start: 1000, end: 2000}, {protocol: TCP, start: 1100, end: 1200}, {protocol: TCP, start: 1500, end: 1600}]",
        ));
        let paths: Vec<_> = found(&r).into_iter().map(|(_, p)| p).collect();
        assert_eq!(
            paths,
            vec![
                "spec.domain.devices.interfaces[0].portRanges[1]",
                "spec.domain.devices.interfaces[0].portRanges[2]"
            ]
        );
    }

    #[test]
    fn same_range_on_tcp_and_udp_does_not_overlap() {
        let r = check(&masq(
            "portRanges: [{protocol: TCP, start: 10, end: 20}, {protocol: UDP, start: 10, end: 20}]",
        ));
        assert!(r.is_valid(), "{r:?}");
    }

    #[test]
    fn gate_off_reports_only_the_gate() {
        let cluster = ClusterConfig::parse(b"featureGates: []").unwrap();
        let r = check_with(
            &masq("portRanges: [{protocol: SCTP, start: 0, end: 5}]"),
            &cluster,
            None,
        );
        assert_eq!(
            found(&r),
            vec![(
                "port-ranges-gate",
                "spec.domain.devices.interfaces[0].portRanges".into()
            )]
        );
    }

    #[test]
    fn same_port_on_tcp_and_udp_is_not_a_duplicate() {
        let r = check(&masq("ports: [{port: 53}, {port: 53, protocol: UDP}]"));
        assert!(r.is_valid(), "{r:?}");
        let r = check(&masq("ports: [{port: 53}, {port: 53, protocol: TCP}]"));
        assert_eq!(
            found(&r),
            vec![(
                "port-duplicate",
                "spec.domain.devices.interfaces[0].ports[1].port".into()
            )]
        );
    }
}

//! Names: interface name syntax, uniqueness, the interface ⇄ network cross reference,
//! and the guest's hostname and subdomain.
//!
//! An interface and its network are tied by equal names. A duplicate name is reported
//! once, on the later entry, and that entry is then left out of the cross-reference
//! check (its first namesake already answers it). An interface whose name is empty gets
//! only "name is required", not also "no network named ''".

use super::{Ctx, is_dns1123_label, is_dns1123_subdomain};

pub(super) fn check(ctx: &mut Ctx) {
    interface_names(ctx);
    network_names(ctx);
    host_names(ctx);
}

fn interface_names(ctx: &mut Ctx) {
    for (i, iface) in ctx.interfaces().iter().enumerate() {
        let path = format!("{}.name", ctx.iface_path(i));
        if iface.name.is_empty() {
            ctx.violation(path, "interface-name-format", "interface name is required");
            continue;
        }
        if !iface
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            ctx.violation(
                path.clone(),
                "interface-name-format",
                format!(
                    "interface name {:?} may only contain letters, digits, '-' and '_'",
                    iface.name
                ),
            );
        }
        if !ctx.is_first_interface(i) {
            ctx.violation(
                path,
                "interface-name-unique",
                format!(
                    "interface name {:?} is used twice; each network takes one interface",
                    iface.name
                ),
            );
        } else if ctx.network_of(iface).is_none() {
            ctx.violation(
                path,
                "interface-without-network",
                format!(
                    "interface {:?} has no network of the same name in networks",
                    iface.name
                ),
            );
        }
    }
}

fn network_names(ctx: &mut Ctx) {
    for (i, net) in ctx.networks().iter().enumerate() {
        let path = format!("{}.name", ctx.net_path(i));
        if !ctx.is_first_network(i) {
            ctx.violation(
                path,
                "network-name-unique",
                format!("network name {:?} is used twice", net.name),
            );
        } else if ctx.interface_of(net).is_none() {
            ctx.violation(
                path,
                "network-without-interface",
                format!(
                    "network {:?} has no interface of the same name in domain.devices.interfaces",
                    net.name
                ),
            );
        }
    }
}

fn host_names(ctx: &mut Ctx) {
    let spec = &ctx.obj.spec;
    if let Some(h) = spec
        .hostname
        .as_deref()
        .filter(|h| !h.is_empty() && !is_dns1123_label(h))
    {
        let message = format!(
            "hostname {h:?} must be a DNS-1123 label: lowercase letters, digits and '-', at most 63"
        );
        ctx.violation(ctx.path("hostname"), "hostname-format", message);
    }
    if let Some(s) = spec
        .subdomain
        .as_deref()
        .filter(|s| !s.is_empty() && !is_dns1123_subdomain(s))
    {
        let message =
            format!("subdomain {s:?} must be a DNS-1123 subdomain: dot-separated lowercase labels");
        ctx.violation(ctx.path("subdomain"), "subdomain-format", message);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, found};

    const HEAD: &str = "kind: VirtualMachineInstance\nspec:\n";

    #[test]
    fn duplicate_interface_is_reported_once_on_the_later_entry() {
        let r = check(&format!(
            "{HEAD}  domain: {{devices: {{interfaces: [{{name: a, bridge: {{}}}}, {{name: a, bridge: {{}}}}]}}}}\n  networks: [{{name: a, pod: {{}}}}]\n"
        ));
        assert_eq!(
            found(&r),
            vec![(
                "interface-name-unique",
                "spec.domain.devices.interfaces[1].name".into()
            )]
        );
    }

    #[test]
    fn empty_interface_name_is_only_required_not_also_unmatched() {
        let r = check(&format!(
            "{HEAD}  domain: {{devices: {{interfaces: [{{name: '', bridge: {{}}}}]}}}}\n  networks: [{{name: '', pod: {{}}}}]\n"
        ));
        assert_eq!(
            found(&r),
            vec![(
                "interface-name-format",
                "spec.domain.devices.interfaces[0].name".into()
            )]
        );
    }

    #[test]
    fn underscore_and_capitals_are_allowed_in_interface_names() {
        let r = check(&format!(
            "{HEAD}  domain: {{devices: {{interfaces: [{{name: My_Net-1, bridge: {{}}}}]}}}}\n  networks: [{{name: My_Net-1, pod: {{}}}}]\n"
        ));
        assert!(r.is_valid(), "{r:?}");
    }
}

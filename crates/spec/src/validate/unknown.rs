//! Warnings for keys netbind does not know inside networks and interfaces.
//!
//! Reading keeps such keys in each object's `unknown` map (a typo such as `macAdress`
//! would otherwise vanish silently). Every key becomes one warning with its full path;
//! nothing is a violation, since KubeVirt's newer fields must not make netbind refuse a
//! manifest. Maps are ordered, so the warnings are too.

use super::Ctx;
use crate::model::{Empty, Unknown};

pub(super) fn check(ctx: &mut Ctx) {
    for (i, net) in ctx.networks().iter().enumerate() {
        let base = ctx.net_path(i);
        warn(ctx, &base, &net.unknown);
        if let Some(pod) = &net.pod {
            warn(ctx, &format!("{base}.pod"), &pod.unknown);
        }
        if let Some(m) = &net.multus {
            warn(ctx, &format!("{base}.multus"), &m.unknown);
        }
    }
    for (i, iface) in ctx.interfaces().iter().enumerate() {
        let base = ctx.iface_path(i);
        warn(ctx, &base, &iface.unknown);
        let empties: [(&str, &Option<Empty>); 7] = [
            ("bridge", &iface.bridge),
            ("masquerade", &iface.masquerade),
            ("sriov", &iface.sriov),
            ("passtBinding", &iface.passt_binding),
            ("slirp", &iface.slirp),
            ("macvtap", &iface.macvtap),
            ("passt", &iface.passt),
        ];
        for (field, binding) in empties {
            if let Some(b) = binding {
                warn(ctx, &format!("{base}.{field}"), &b.unknown);
            }
        }
        if let Some(plugin) = &iface.binding {
            warn(ctx, &format!("{base}.binding"), &plugin.unknown);
        }
        for (k, port) in iface.ports.iter().enumerate() {
            warn(ctx, &format!("{base}.ports[{k}]"), &port.unknown);
        }
        for (k, range) in iface.port_ranges.iter().enumerate() {
            warn(ctx, &format!("{base}.portRanges[{k}]"), &range.unknown);
        }
        if let Some(dhcp) = &iface.dhcp_options {
            let dhcp_base = format!("{base}.dhcpOptions");
            warn(ctx, &dhcp_base, &dhcp.unknown);
            for (k, opt) in dhcp.private_options.iter().enumerate() {
                warn(
                    ctx,
                    &format!("{dhcp_base}.privateOptions[{k}]"),
                    &opt.unknown,
                );
            }
        }
    }
}

fn warn(ctx: &mut Ctx, base: &str, unknown: &Unknown) {
    for key in unknown.keys() {
        ctx.warning(format!("{base}.{key}"), "unknown field, ignored");
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;

    #[test]
    fn unknown_keys_warn_with_their_path_and_do_not_invalidate() {
        let r = check(
            "kind: VirtualMachine\nspec:\n  template:\n    spec:\n      domain: {devices: {interfaces: [{name: a, colour: red, masquerade: {x: 1}, ports: [{port: 80, proto: TCP}]}]}}\n      networks: [{name: a, pod: {cidr: x}}]\n",
        );
        assert!(r.is_valid(), "{r:?}");
        let paths: Vec<_> = r.warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "spec.template.spec.networks[0].pod.cidr",
                "spec.template.spec.domain.devices.interfaces[0].colour",
                "spec.template.spec.domain.devices.interfaces[0].masquerade.x",
                "spec.template.spec.domain.devices.interfaces[0].ports[0].proto",
            ]
        );
        assert!(
            r.warnings
                .iter()
                .all(|w| w.message == "unknown field, ignored")
        );
    }
}

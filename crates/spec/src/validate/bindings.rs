//! Bindings (connection methods) and link state, per interface.
//!
//! Counting follows KubeVirt: the live bindings are `bridge`, `masquerade`, `sriov`,
//! `passtBinding` and `binding`; the discontinued `slirp`, `macvtap` and `passt` are
//! reported as such and not counted again as "missing" or "multiple". Whether a binding
//! suits its network is only asked when the interface has exactly one live binding and
//! its network exists with exactly one source — otherwise the earlier violation already
//! says what is wrong. Feature gates and plugin registration are facts about the binding
//! alone and are checked whenever the binding is set.

use super::Ctx;
use crate::cluster::GATE_PASST_BINDING;
use crate::model::{BindingKind, Interface};

pub(super) fn check(ctx: &mut Ctx) {
    for (i, iface) in ctx.interfaces().iter().enumerate() {
        binding_count(ctx, i, iface);
        binding_facts(ctx, i, iface);
        binding_network(ctx, i, iface);
        state(ctx, i, iface);
    }
}

fn binding_count(ctx: &mut Ctx, i: usize, iface: &Interface) {
    let kinds = iface.bindings();
    let path = ctx.iface_path(i);
    for kind in kinds.iter().filter(|k| k.is_discontinued()) {
        let message = match kind {
            BindingKind::Slirp => {
                "slirp binding was discontinued in KubeVirt 1.3; use binding: {name: slirp} or passtBinding"
            }
            BindingKind::Macvtap => {
                "macvtap binding was discontinued in KubeVirt 1.3; use binding: {name: macvtap}"
            }
            _ => "passt binding was discontinued in KubeVirt 1.3; use passtBinding: {}",
        };
        ctx.violation(
            format!("{path}.{}", kind.field()),
            "binding-discontinued",
            message,
        );
    }
    let live: Vec<BindingKind> = kinds
        .iter()
        .copied()
        .filter(|k| !k.is_discontinued())
        .collect();
    match live.as_slice() {
        [] if kinds.is_empty() => ctx.violation(
            path,
            "interface-binding-missing",
            format!("interface {:?} needs a binding: bridge, masquerade, sriov, passtBinding or binding", iface.name),
        ),
        [first, second, ..] => ctx.violation(
            format!("{path}.{}", second.field()),
            "interface-binding-multiple",
            format!("interface {:?} has both {} and {}; keep one binding", iface.name, first.field(), second.field()),
        ),
        _ => {}
    }
}

fn binding_facts(ctx: &mut Ctx, i: usize, iface: &Interface) {
    let path = ctx.iface_path(i);
    if iface.passt_binding.is_some() && !ctx.cluster.gate(GATE_PASST_BINDING) {
        let message = "passtBinding needs the PasstBinding feature gate; enable it in the cluster configuration";
        ctx.violation(
            format!("{path}.passtBinding"),
            "passt-binding-gate",
            message,
        );
    }
    if let Some(plugin) = &iface.binding {
        let path = format!("{path}.binding.name");
        if plugin.name.is_empty() {
            ctx.violation(
                path,
                "binding-plugin-unknown",
                "binding plugin name is required",
            );
        } else if !ctx.cluster.network.binding.contains_key(&plugin.name) {
            let message = format!(
                "binding plugin {:?} is not registered in the cluster configuration (network.binding)",
                plugin.name
            );
            ctx.violation(path, "binding-plugin-unknown", message);
        }
    }
}

fn binding_network(ctx: &mut Ctx, i: usize, iface: &Interface) {
    let live: Vec<BindingKind> = iface
        .bindings()
        .into_iter()
        .filter(|k| !k.is_discontinued())
        .collect();
    let [kind] = live.as_slice() else { return };
    let Some(net) = ctx.network_of(iface) else {
        return;
    };
    if net.pod.is_some() == net.multus.is_some() {
        return; // no source or two sources: reported on the network
    }
    let on_pod = net.pod.is_some();
    let path = format!("{}.{}", ctx.iface_path(i), kind.field());
    match kind {
        BindingKind::Masquerade if !on_pod => {
            ctx.violation(
                path,
                "masquerade-pod-network-only",
                "masquerade binding is only allowed on the pod network",
            );
        }
        BindingKind::PasstBinding if !on_pod => {
            ctx.violation(
                path,
                "passt-binding-pod-network-only",
                "passtBinding is only allowed on the pod network",
            );
        }
        BindingKind::Bridge
            if on_pod && !ctx.cluster.network.permit_bridge_interface_on_pod_network =>
        {
            let message = "bridge binding on the pod network is not permitted by the cluster configuration \
                           (permitBridgeInterfaceOnPodNetwork: false); use masquerade or passtBinding";
            ctx.violation(path, "bridge-on-pod-network-not-permitted", message);
        }
        BindingKind::Sriov if on_pod => {
            let message = "sriov binding needs a Multus network backed by an SR-IOV device; the pod network has no VF";
            ctx.violation(path, "sriov-multus-network-only", message);
        }
        _ => {}
    }
}

fn state(ctx: &mut Ctx, i: usize, iface: &Interface) {
    let Some(state) = iface.state.as_deref().filter(|s| !s.is_empty()) else {
        return;
    };
    let path = format!("{}.state", ctx.iface_path(i));
    match state {
        "up" | "down" if iface.sriov.is_some() => {
            let message =
                format!("state {state:?} is not supported on SR-IOV interfaces; leave state unset");
            ctx.violation(path, "state-link-sriov", message);
        }
        "up" | "down" => {}
        "absent" if iface.bridge.is_none() => {
            ctx.violation(
                path,
                "state-absent-bridge-only",
                "state \"absent\" is only supported on bridge interfaces",
            );
        }
        "absent" => {
            if ctx
                .network_of(iface)
                .is_some_and(|n| n.is_pod() || n.is_multus_default())
            {
                let message = "state \"absent\" is not supported on the default network; it cannot be unplugged";
                ctx.violation(path, "state-absent-default-network", message);
            }
        }
        other => {
            let message = format!("state {other:?} is not one of up, down, absent");
            ctx.violation(path, "state-value", message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, check_with, found};
    use crate::cluster::ClusterConfig;

    fn one(iface: &str, net: &str) -> String {
        format!(
            "kind: VirtualMachineInstance\nspec:\n  domain: {{devices: {{interfaces: [{{name: n, {iface}}}]}}}}\n  networks: [{{name: n, {net}}}]\n"
        )
    }

    #[test]
    fn slirp_alone_is_discontinued_not_also_missing() {
        let r = check(&one("slirp: {}", "pod: {}"));
        assert_eq!(
            found(&r),
            vec![(
                "binding-discontinued",
                "spec.domain.devices.interfaces[0].slirp".into()
            )]
        );
    }

    #[test]
    fn masquerade_on_multus_names_the_binding_field() {
        let r = check(&one("masquerade: {}", "multus: {networkName: x}"));
        assert_eq!(
            found(&r),
            vec![(
                "masquerade-pod-network-only",
                "spec.domain.devices.interfaces[0].masquerade".into()
            )]
        );
    }

    #[test]
    fn two_bindings_point_at_the_second_and_skip_network_checks() {
        let r = check(&one(
            "masquerade: {}, sriov: {}",
            "multus: {networkName: x}",
        ));
        assert_eq!(
            found(&r),
            vec![(
                "interface-binding-multiple",
                "spec.domain.devices.interfaces[0].sriov".into()
            )]
        );
    }

    #[test]
    fn absent_on_masquerade_is_only_the_bridge_rule() {
        let r = check(&one("masquerade: {}, state: absent", "pod: {}"));
        assert_eq!(
            found(&r),
            vec![(
                "state-absent-bridge-only",
                "spec.domain.devices.interfaces[0].state".into()
            )]
        );
    }

    #[test]
    fn absent_bridge_on_a_secondary_network_is_fine() {
        assert!(
            check(&one(
                "bridge: {}, state: absent",
                "multus: {networkName: x}"
            ))
            .is_valid()
        );
    }

    #[test]
    fn registered_plugin_is_accepted() {
        let cluster =
            ClusterConfig::parse(b"network: {binding: {slirp: {sidecarImage: x}}}").unwrap();
        assert!(check_with(&one("binding: {name: slirp}", "pod: {}"), &cluster, None).is_valid());
        let r = check(&one("binding: {name: slirp}", "pod: {}"));
        assert_eq!(
            found(&r),
            vec![(
                "binding-plugin-unknown",
                "spec.domain.devices.interfaces[0].binding.name".into()
            )]
        );
    }
}

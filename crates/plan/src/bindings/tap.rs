//! Tap attachment: a binding plugin with `domainAttachmentType: tap` (e.g. macvtap). The
//! plugin's CNI already made the device — a macvtap (or tap) named like the pod link — so
//! netbind changes nothing in the pod; the guest NIC targets that device as is, with its
//! MAC and MTU. As KubeVirt, a tap named `tap<stem>` is preferred when the pod has one.

use super::{BindingPlan, Ctx};
use crate::error::PlanError;

pub fn plan(ctx: &Ctx<'_>) -> Result<BindingPlan, PlanError> {
    let link = ctx.require_link()?;
    let mut bp = BindingPlan::default();
    if let Some(kind) = link.kind.as_deref()
        && !matches!(kind, "macvtap" | "tap" | "tun" | "ipvtap")
    {
        bp.notes.push(format!(
            "pod link {} is a {kind}, not a tap or macvtap: the plugin's CNI should have made one",
            link.name
        ));
    }
    if link.kind.as_deref() == Some("macvtap") {
        bp.notes.push(format!(
            "QEMU: a macvtap is opened as /dev/tap<ifindex of {}> and passed with fd=; ifname= only works for a tap (libvirt does this itself)",
            link.name
        ));
    }
    Ok(bp)
}

/// The device the guest NIC opens.
pub fn target(ctx: &Ctx<'_>) -> String {
    let tap = ctx.tap_name();
    if ctx.pod.link(&tap).is_some() {
        tap
    } else {
        ctx.pod_link_name.clone()
    }
}

//! Tap attachment: a binding plugin with `domainAttachmentType: tap` (e.g. macvtap). The
//! plugin's CNI already made the device — a macvtap (or tap) named like the pod link — so
//! netbind changes nothing in the pod; the guest NIC targets that device as is, with its
//! MAC and MTU. As KubeVirt, a tap named `tap<stem>` is preferred when the pod has one.
//!
//! A target that is a macvtap (kind `macvtap` in the pod view) gets the backend
//! [`GuestBackend::Macvtap`]: QEMU attaches to a macvtap only through a descriptor of its
//! character device `/dev/tap<ifindex>`, opened by the launcher (`ifname=` only works for
//! a tap; libvirt opens the device itself). The descriptor number is planned (`fd`, from 3
//! up over the plan's macvtaps); the path is known when the pod view has the ifindex.

use super::ctx::{BindingPlan, Ctx};
use crate::error::PlanError;
use crate::model::GuestBackend;

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

/// The guest backend: the target as a tap, or as a macvtap passed as descriptor `fd`
/// (the QEMU caveats note what the launcher must open).
pub fn backend(ctx: &Ctx<'_>, fd: u32) -> GuestBackend {
    let device = target(ctx);
    let link = ctx.pod.link(&device);
    if link.and_then(|l| l.kind.as_deref()) != Some("macvtap") {
        return GuestBackend::Tap { device };
    }
    let path = link.and_then(|l| l.ifindex).map(|i| format!("/dev/tap{i}"));
    GuestBackend::Macvtap { device, fd, path }
}

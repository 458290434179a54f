//! Links netbind creates: a bridge, a tap (persistent, owned by QEMU's user, multi-queue
//! when asked), a placeholder (`dummy`, or `ifb` on a kernel without the dummy driver)
//! holding addresses. Undo: [`Undo::DeleteLink`].
//!
//! Check: absent → act, with the undo "delete it"; present and recorded as ours (the
//! journal has this step) with the right kind → done when MAC, MTU (and, for the
//! placeholder, addresses) are right, else act to finish it; present and not ours, or
//! of another kind → [`StepError::Exists`]: netbind never takes over a link it did not
//! make. Act creates what is absent, else sets what differs; the link is then forgotten
//! in the run's picture (the kernel knows its new state). Undo deletes the link only
//! when it is still of the kind netbind made (a placeholder made as `ifb` counts as
//! `dummy`).

use ipnet::IpNet;

use super::ctx::{Check, Ctx};
use super::step::StepError;
use crate::journal::Undo;
use crate::ns::Ns;

/// For a link-creating step: `Act(DeleteLink)` when absent, `Done` when ours and
/// right, an error when someone else's.
fn check_create(
    ctx: &Ctx<'_>,
    name: &str,
    kinds: &[&str],
    ours: bool,
    mac: Option<&str>,
    mtu: u32,
) -> Result<Check, StepError> {
    match ctx.link(name)? {
        None => Ok(Check::Act(Undo::DeleteLink {
            link: name.to_string(),
            kind: kinds[0].to_string(),
        })),
        Some(s) => {
            let kind = s.kind.clone().unwrap_or_default();
            if !ours || !kinds.contains(&kind.as_str()) {
                return Err(StepError::Exists {
                    link: name.to_string(),
                    kind,
                });
            }
            let mac_ok =
                mac.is_none_or(|m| s.mac.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(m)));
            // Ours and already made: finishing touches only (no new undo needed).
            if mac_ok && s.mtu == mtu {
                Ok(Check::Done)
            } else {
                Ok(Check::Act(Undo::DeleteLink {
                    link: name.to_string(),
                    kind,
                }))
            }
        }
    }
}

pub(super) fn check_bridge(
    ctx: &Ctx<'_>,
    name: &str,
    mac: Option<&str>,
    mtu: u32,
    ours: bool,
) -> Result<Check, StepError> {
    check_create(ctx, name, &["bridge"], ours, mac, mtu)
}

pub(super) fn create_bridge(
    ctx: &mut Ctx<'_>,
    name: &str,
    mac: Option<&str>,
    mtu: u32,
) -> Result<(), StepError> {
    let ns = ctx.ns;
    let links = &ns.links;
    match ctx.link(name)? {
        None => {
            ns.block_on(links.create_bridge(name, mac, mtu))?;
            ctx.created.push(name.to_string());
        }
        Some(s) => {
            if let Some(mac) = mac {
                ns.block_on(links.set_mac(&s, mac))?;
            }
            ns.block_on(links.set_mtu(&s, mtu))?;
        }
    }
    ctx.forget(name);
    Ok(())
}

pub(super) fn check_tap(
    ctx: &Ctx<'_>,
    name: &str,
    mtu: u32,
    ours: bool,
) -> Result<Check, StepError> {
    crate::link::check_name(name)?;
    check_create(ctx, name, &["tun"], ours, None, mtu)
}

pub(super) fn create_tap(
    ctx: &mut Ctx<'_>,
    name: &str,
    mtu: u32,
    queues: u32,
    uid: u32,
    gid: u32,
) -> Result<(), StepError> {
    let ns = ctx.ns;
    let links = &ns.links;
    let s = match ctx.link(name)? {
        Some(s) => s,
        None => {
            crate::sys::create_persistent_tap(name, queues > 1, uid, gid)?;
            ctx.created.push(name.to_string());
            ctx.forget(name);
            ctx.require(name)?
        }
    };
    if s.mtu != mtu {
        ns.block_on(links.set_mtu(&s, mtu))?;
        ctx.changed(name, |s| s.mtu = mtu);
    }
    Ok(())
}

pub(super) fn check_placeholder(
    ctx: &Ctx<'_>,
    name: &str,
    mac: Option<&str>,
    mtu: u32,
    addresses: &[IpNet],
    ours: bool,
) -> Result<Check, StepError> {
    let c = check_create(ctx, name, &["dummy", "ifb"], ours, mac, mtu)?;
    if let Check::Done = c {
        let s = ctx.require(name)?;
        let have = ctx.ns.block_on(ctx.ns.links.addresses(&s))?;
        if addresses.iter().any(|a| !have.contains(a)) {
            return Ok(Check::Act(Undo::DeleteLink {
                link: name.to_string(),
                kind: "dummy".into(),
            }));
        }
    }
    Ok(c)
}

pub(super) fn create_placeholder(
    ctx: &mut Ctx<'_>,
    name: &str,
    mac: Option<&str>,
    mtu: u32,
    addresses: &[IpNet],
) -> Result<(), StepError> {
    let ns = ctx.ns;
    let links = &ns.links;
    let s = match ctx.link(name)? {
        Some(s) => s,
        None => {
            let kind = ns.block_on(links.create_placeholder(name, mac, mtu))?;
            if kind != "dummy" {
                ctx.notes.push(format!(
                    "this kernel has no dummy driver: {name} was made as an {kind} link"
                ));
            }
            ctx.created.push(name.to_string());
            ctx.forget(name);
            ctx.require(name)?
        }
    };
    if let Some(mac) = mac
        && !s
            .mac
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(mac))
    {
        ns.block_on(links.set_mac(&s, mac))?;
    }
    if s.mtu != mtu {
        ns.block_on(links.set_mtu(&s, mtu))?;
    }
    for a in addresses {
        ns.block_on(links.add_address(&s, *a))?;
    }
    ctx.forget(name);
    Ok(())
}

/// Whether a link of kind `found` is the one netbind made as `kind`.
pub(super) fn same_kind(found: &str, kind: &str) -> bool {
    found == kind || (kind == "dummy" && found == "ifb")
}

/// Undo of any link-creating step.
pub(super) fn delete(ns: &Ns, link: &str, kind: &str) -> Result<(), StepError> {
    if let Some(s) = ns.block_on(ns.links.state(link))? {
        let found = s.kind.as_deref().unwrap_or_default();
        if same_kind(found, kind) {
            ns.block_on(ns.links.delete(link))?;
        }
    }
    Ok(())
}

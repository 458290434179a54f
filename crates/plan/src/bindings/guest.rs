//! The guest device of one interface: what QEMU or libvirt is given for the NIC the VM
//! sees — alias, model and QEMU driver, MAC, MTU, queues, PCI address, boot order, ACPI
//! index, link state and the backend it attaches to (a tap, the engine's vhost-user or
//! stream socket, a macvtap descriptor, a VFIO host device) — and its two renderings, the
//! libvirt `<interface>`/`<hostdev>` XML and the QEMU arguments ([`crate::render`]).
//!
//! It is assembled after the binding has planned the pod side, from the interface as
//! written and what the binding decided ([`BindingPlan`]: the engine's socket, the tap
//! and its queues, a guest MTU of its own); the values a binding does not decide are the
//! same for every method. Out-of-range `bootOrder`/`acpiIndex` and bad PCI addresses are
//! [`PlanError`]s; what the guest device cannot carry on its attachment is a note.

use super::ctx::{BindingPlan, Ctx};
use super::queues::virtio_queues;
use super::{tap, usernet};
use crate::error::PlanError;
use crate::model::{GuestBackend, GuestDevice, LinkState, LinkStep, Method, UsernetAttachment};
use crate::render;

/// Guest device from the interface and what its method decided; rendered.
pub(crate) fn guest_device(
    ctx: &Ctx<'_>,
    method: Method,
    state: LinkState,
    bp: &BindingPlan,
    next_fd: u32,
) -> Result<(GuestDevice, Vec<String>), PlanError> {
    let iface = ctx.iface;
    let mut notes = Vec::new();
    let model = iface
        .model
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "virtio".into());
    let boot_order = positive(iface.boot_order, &iface.name, "bootOrder", u32::MAX as i64)?;
    let acpi_index = positive(iface.acpi_index, &iface.name, "acpiIndex", 16383)?;
    let pci_address = match iface.pci_address.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(render::parse_pci(a).map(|p| p.to_string()).ok_or_else(|| {
            PlanError::BadPciAddress {
                interface: iface.name.clone(),
                address: a.into(),
            }
        })?),
    };
    let (alias, model, qemu_driver, backend, mtu) = match method {
        Method::Sriov => {
            let vf = ctx
                .vfs
                .get(&iface.name)
                .map(|v| v.pci_address.clone())
                .unwrap_or_default();
            (
                format!("ua-sriov-{}", iface.name),
                String::new(),
                "vfio-pci".to_string(),
                GuestBackend::Hostdev { pci_address: vf },
                None,
            )
        }
        _ => {
            let backend = match method {
                Method::Usernet => usernet_backend(ctx, bp),
                Method::Tap => tap::backend(ctx, next_fd),
                _ => GuestBackend::Tap {
                    device: ctx.tap_name(),
                },
            };
            let mtu = bp.guest_mtu.unwrap_or(Some(ctx.mtu()));
            (
                format!("ua-{}", iface.name),
                model.clone(),
                qemu_driver(&model),
                backend,
                mtu,
            )
        }
    };
    // Queues go with a tap this plan creates (`CreateTap` with the multiqueue flag);
    // other attachments (the engine's socket, a macvtap descriptor) carry one.
    let queues = match &backend {
        GuestBackend::Tap { device } => bp
            .links
            .iter()
            .find_map(|l| match l {
                LinkStep::CreateTap { name, queues, .. } if name == device => Some(*queues),
                _ => None,
            })
            .unwrap_or(1),
        _ => 1,
    };
    if queues == 1 && model == "virtio" && virtio_queues(ctx.obj) > 1 {
        notes.push(
            "networkInterfaceMultiqueue: one queue on this attachment (several need a tap netbind creates)"
                .into(),
        );
    }
    if method == Method::Sriov && acpi_index.is_some() {
        notes.push(
            "acpiIndex: not set on the SR-IOV host device (KubeVirt sets none either)".into(),
        );
    }
    let mut device = GuestDevice {
        alias,
        model,
        qemu_driver,
        mac: ctx.guest_mac.clone(),
        mtu,
        queues,
        pci_address,
        boot_order,
        acpi_index: if method == Method::Sriov {
            None
        } else {
            acpi_index
        },
        link_down: state == LinkState::Down,
        backend,
        libvirt_xml: String::new(),
        qemu_args: Vec::new(),
    };
    device.libvirt_xml = render::libvirt::device_xml(&device);
    device.qemu_args = render::qemu::device_args(&device);
    notes.extend(render::qemu::caveats(&device));
    Ok((device, notes))
}

/// The engine's end of a usernet NIC, as the plan's attachment says.
fn usernet_backend(ctx: &Ctx<'_>, bp: &BindingPlan) -> GuestBackend {
    match &bp.usernet {
        Some(u) if u.attachment == UsernetAttachment::VhostUser => GuestBackend::VhostUser {
            socket: u.socket.clone(),
            source: ctx.pod_link_name.clone(),
            libvirt_mac: (ctx.iface.mac_address.as_deref())
                .filter(|m| !m.is_empty())
                .and(ctx.guest_mac.clone()),
            port_forwards: usernet::passt_port_forwards(&u.tcp, &u.udp, ctx.istio),
        },
        u => GuestBackend::Stream {
            socket: u.as_ref().map(|u| u.socket.clone()).unwrap_or_default(),
        },
    }
}

fn positive(
    value: Option<i64>,
    interface: &str,
    field: &'static str,
    max: i64,
) -> Result<Option<u32>, PlanError> {
    match value {
        None => Ok(None),
        Some(v) if (1..=max).contains(&v) => Ok(u32::try_from(v).ok()),
        Some(v) => Err(PlanError::OutOfRange {
            interface: interface.into(),
            field,
            value: v,
        }),
    }
}

/// QEMU device driver for a KubeVirt interface model.
fn qemu_driver(model: &str) -> String {
    match model {
        "virtio" => "virtio-net-pci",
        "e1000" => "e1000",
        "e1000e" => "e1000e",
        "igb" => "igb",
        "ne2k_pci" => "ne2k_pci",
        "pcnet" => "pcnet",
        "rtl8139" => "rtl8139",
        other => other,
    }
    .into()
}

//! The guest device as QEMU command-line arguments.
//!
//! - tap-backed NICs: `-netdev tap,id=hostua-<name>,ifname=<tap>,script=no,downscript=no`
//!   (QEMU attaches to the existing tap; `queues=N` when multiqueue) and
//!   `-device <driver>,netdev=hostua-<name>,id=ua-<name>,mac=…[,host_mtu=…]` (`host_mtu`
//!   and `mq` only for virtio);
//! - macvtap (a `tap` plugin's device): `-netdev tap,id=hostua-<name>,fd=<N>` — QEMU
//!   cannot open a macvtap by name, so the launcher opens `/dev/tap<ifindex>` read-write
//!   as descriptor N before starting QEMU (N and the path are in the plan:
//!   [`GuestBackend::Macvtap`], `NetworkPlan::passed_fds`, `--domain-out`'s `fds`), then
//!   the same `-device`;
//! - SR-IOV: `-device vfio-pci,host=<vf>,id=ua-sriov-<name>`;
//! - usernet over vhost-user: `-chardev socket,id=charua-<name>,path=<socket>` (the
//!   engine listens, QEMU connects), `-netdev vhost-user,id=…,chardev=charua-<name>` and
//!   the same `-device`; the guest's RAM must be shared, which the plan says once for the
//!   VM ([`shared_memory_args`]: `-object memory-backend-memfd,id=mem,size=<M>M,share=on
//!   -machine memory-backend=mem`, first in `NetworkPlan::qemu_args`); a hot-plugged one
//!   (`chardev-add`, `netdev_add`, `device_add`) needs a guest that booted with it;
//! - usernet over a stream socket: `-netdev
//!   stream,id=…,server=off,addr.type=unix,addr.path=<socket>` and the same `-device`.
//!
//! Then `bootindex`, `acpi-index` and `addr=<slot>.<function>` when given. Option values
//! are escaped for QEMU's parser (`,` doubled). vhost-net is not requested: it needs
//! `/dev/vhost-net` in the launcher (add `vhost=on` to the netdev where it exists).
//! [`caveats`] lists what the arguments cannot express.

use super::parse_pci;
use crate::model::{GuestBackend, GuestDevice};

pub fn device_args(dev: &GuestDevice) -> Vec<String> {
    let netdev_id = format!("host{}", dev.alias);
    let mut args = Vec::new();
    let mut device = match &dev.backend {
        GuestBackend::Tap { device } => {
            let mut netdev = format!(
                "tap,id={},ifname={},script=no,downscript=no",
                q(&netdev_id),
                q(device)
            );
            if dev.queues > 1 {
                netdev.push_str(&format!(",queues={}", dev.queues));
            }
            args.push("-netdev".to_string());
            args.push(netdev);
            nic(dev, &netdev_id)
        }
        GuestBackend::Macvtap { fd, .. } => {
            // QEMU rejects ifname=, script=, downscript= and queues= next to fd=.
            args.push("-netdev".to_string());
            args.push(format!("tap,id={},fd={fd}", q(&netdev_id)));
            nic(dev, &netdev_id)
        }
        GuestBackend::VhostUser { socket, .. } => {
            let chardev = format!("char{}", dev.alias);
            args.push("-chardev".to_string());
            args.push(format!("socket,id={},path={}", q(&chardev), q(socket)));
            args.push("-netdev".to_string());
            args.push(format!(
                "vhost-user,id={},chardev={}",
                q(&netdev_id),
                q(&chardev)
            ));
            nic(dev, &netdev_id)
        }
        GuestBackend::Stream { socket } => {
            args.push("-netdev".to_string());
            args.push(format!(
                "stream,id={},server=off,addr.type=unix,addr.path={}",
                q(&netdev_id),
                q(socket)
            ));
            nic(dev, &netdev_id)
        }
        GuestBackend::Hostdev { pci_address } => {
            format!("vfio-pci,host={},id={}", q(pci_address), q(&dev.alias))
        }
    };
    if let Some(order) = dev.boot_order {
        device.push_str(&format!(",bootindex={order}"));
    }
    if let Some(index) = dev.acpi_index {
        device.push_str(&format!(",acpi-index={index}"));
    }
    if let Some(a) = dev.pci_address.as_deref().and_then(parse_pci) {
        device.push_str(&format!(",addr=0x{:x}.0x{:x}", a.slot, a.function));
    }
    args.push("-device".to_string());
    args.push(device);
    args
}

/// The guest's RAM as a shared memfd of `mib` MiB, which QEMU then sizes the machine by
/// (a launcher's `-m` must say the same or be left out).
pub fn shared_memory_args(mib: u64) -> Vec<String> {
    vec![
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={mib}M,share=on"),
        "-machine".into(),
        "memory-backend=mem".into(),
    ]
}

fn nic(dev: &GuestDevice, netdev_id: &str) -> String {
    let mut s = format!(
        "{},netdev={},id={}",
        q(&dev.qemu_driver),
        q(netdev_id),
        q(&dev.alias)
    );
    if let Some(mac) = &dev.mac {
        s.push_str(&format!(",mac={}", q(mac)));
    }
    let virtio = dev.qemu_driver == "virtio-net-pci";
    if virtio && let Some(mtu) = dev.mtu {
        s.push_str(&format!(",host_mtu={mtu}"));
    }
    if virtio && dev.queues > 1 {
        s.push_str(&format!(",mq=on,vectors={}", 2 * dev.queues + 2));
    }
    s
}

/// What the QEMU arguments do not carry, as plan notes.
pub fn caveats(dev: &GuestDevice) -> Vec<String> {
    let mut notes = Vec::new();
    if dev.link_down {
        notes.push(format!(
            "QEMU: start with the link down by QMP `set_link {} off` (no command-line option)",
            dev.alias
        ));
    }
    if let Some(a) = dev.pci_address.as_deref().and_then(parse_pci)
        && (a.domain != 0 || a.bus != 0)
    {
        notes.push(format!("QEMU: addr sets slot and function only; bus 0x{:02x} of {a} needs a bus= of the machine", a.bus));
    }
    if let GuestBackend::Macvtap { device, fd, path } = &dev.backend {
        let path = path
            .clone()
            .unwrap_or_else(|| format!("/dev/tap<ifindex of {device}>"));
        notes.push(format!(
            "QEMU: fd={fd} must be {path} opened read-write by the launcher"
        ));
    }
    if matches!(dev.backend, GuestBackend::Stream { .. }) {
        notes.push("libvirt: the usernet device is a <qemu:commandline> element; it goes under <domain>, not <devices>".into());
    }
    notes
}

/// Escapes a QEMU option value: a comma is written twice.
fn q(value: &str) -> String {
    value.replace(',', ",,")
}

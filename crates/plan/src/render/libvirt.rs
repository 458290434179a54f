//! The guest device as a libvirt domain XML fragment (for `<devices>`).
//!
//! - tap-backed NICs (bridge, masquerade, managedTap, tap plugins): as KubeVirt,
//!   `<interface type='ethernet'>` with `<target dev='…' managed='no'/>` — libvirt opens
//!   the tap netbind made and changes nothing about it; a macvtap (tap plugins) is the
//!   same element — libvirt opens `/dev/tap<ifindex>` itself, no descriptor is passed;
//! - SR-IOV: `<hostdev mode='subsystem' type='pci' managed='no'>` with the VF's address;
//! - usernet: libvirt has no interface type that attaches to an existing unix stream
//!   socket (`type='user'` with `<backend type='passt'/>` starts passt itself;
//!   `type='vhostuser'` speaks vhost-user), so netbind hands libvirt the same QEMU
//!   arguments through its QEMU command-line passthrough: a `<qemu:commandline>` element
//!   that belongs directly under `<domain>` (the namespace is declared on the element).
//!
//! Child order follows what `virsh dumpxml` prints. Every value is escaped.

use super::{parse_pci, xml_escape as esc};
use crate::model::{GuestBackend, GuestDevice};

pub const QEMU_XMLNS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

pub fn device_xml(dev: &GuestDevice) -> String {
    match &dev.backend {
        GuestBackend::Tap { device } | GuestBackend::Macvtap { device, .. } => {
            interface_xml(dev, device)
        }
        GuestBackend::Hostdev { pci_address } => hostdev_xml(dev, pci_address),
        GuestBackend::Stream { .. } => {
            let mut out = format!("<qemu:commandline xmlns:qemu='{QEMU_XMLNS}'>\n");
            for arg in super::qemu::device_args(dev) {
                out.push_str(&format!("  <qemu:arg value='{}'/>\n", esc(&arg)));
            }
            out.push_str("</qemu:commandline>\n");
            out
        }
    }
}

fn interface_xml(dev: &GuestDevice, tap: &str) -> String {
    let mut out = String::from("<interface type='ethernet'>\n");
    if let Some(mac) = &dev.mac {
        out.push_str(&format!("  <mac address='{}'/>\n", esc(mac)));
    }
    out.push_str(&format!("  <target dev='{}' managed='no'/>\n", esc(tap)));
    out.push_str(&format!("  <model type='{}'/>\n", esc(&dev.model)));
    if dev.queues > 1 {
        out.push_str(&format!(
            "  <driver name='vhost' queues='{}'/>\n",
            dev.queues
        ));
    }
    if let Some(mtu) = dev.mtu {
        out.push_str(&format!("  <mtu size='{mtu}'/>\n"));
    }
    if let Some(order) = dev.boot_order {
        out.push_str(&format!("  <boot order='{order}'/>\n"));
    }
    if dev.link_down {
        out.push_str("  <link state='down'/>\n");
    }
    out.push_str(&format!("  <alias name='{}'/>\n", esc(&dev.alias)));
    if let Some(index) = dev.acpi_index {
        out.push_str(&format!("  <acpi index='{index}'/>\n"));
    }
    out.push_str(&guest_address(dev));
    out.push_str("</interface>\n");
    out
}

fn hostdev_xml(dev: &GuestDevice, vf: &str) -> String {
    let mut out = String::from("<hostdev mode='subsystem' type='pci' managed='no'>\n  <source>\n");
    if let Some(a) = parse_pci(vf) {
        out.push_str(&format!(
            "    <address domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' function='0x{:x}'/>\n",
            a.domain, a.bus, a.slot, a.function
        ));
    }
    out.push_str("  </source>\n");
    if let Some(order) = dev.boot_order {
        out.push_str(&format!("  <boot order='{order}'/>\n"));
    }
    out.push_str(&format!("  <alias name='{}'/>\n", esc(&dev.alias)));
    out.push_str(&guest_address(dev));
    out.push_str("</hostdev>\n");
    out
}

fn guest_address(dev: &GuestDevice) -> String {
    match dev.pci_address.as_deref().and_then(parse_pci) {
        Some(a) => format!(
            "  <address type='pci' domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' function='0x{:x}'/>\n",
            a.domain, a.bus, a.slot, a.function
        ),
        None => String::new(),
    }
}

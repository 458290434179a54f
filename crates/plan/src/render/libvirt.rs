//! The guest device as a libvirt domain XML fragment (for `<devices>`).
//!
//! - tap-backed NICs (bridge, masquerade, managedTap, tap plugins): as KubeVirt,
//!   `<interface type='ethernet'>` with `<target dev='…' managed='no'/>` — libvirt opens
//!   the tap netbind made and changes nothing about it; a macvtap (tap plugins) is the
//!   same element — libvirt opens `/dev/tap<ifindex>` itself, no descriptor is passed;
//! - SR-IOV: `<hostdev mode='subsystem' type='pci' managed='no'>` with the VF's address;
//! - usernet over vhost-user: KubeVirt's `passtBinding` element, `<interface
//!   type='vhostuser'>` with `<source dev='<pod link>'/>`, `<model
//!   type='virtio-non-transitional'/>` (other models as written), `<backend type='passt'
//!   logFile='/var/run/kubevirt/passt.log'/>` and the `<portForward>` elements of the
//!   plan's ports; `<mac>` only for a written `macAddress`, as KubeVirt. libvirt then
//!   starts the binary named `passt` (netbind as passt) on a socket of its own and QEMU on
//!   it, so `netbind up --launcher libvirt` runs no engine for it. The domain needs
//!   [`memory_backing_xml`] under `<domain>` (`NetworkPlan::libvirt_domain_xml`). Beyond
//!   KubeVirt: `<boot>` and `<link state='down'/>` when the interface asks for them;
//! - usernet over a stream socket: libvirt has no interface type that attaches to an
//!   existing unix stream socket, so netbind hands libvirt the same QEMU arguments
//!   through its QEMU command-line passthrough: a `<qemu:commandline>` element that
//!   belongs directly under `<domain>` (the namespace is declared on the element).
//!
//! Child order follows what `virsh dumpxml` prints. Every value is escaped.

use super::{parse_pci, xml_escape as esc};
use crate::model::{GuestBackend, GuestDevice, PasstPortForward};

pub const QEMU_XMLNS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

/// Where KubeVirt has libvirt's passt log (`<backend logFile>`).
pub const PASST_LOG_FILE: &str = "/var/run/kubevirt/passt.log";

pub fn device_xml(dev: &GuestDevice) -> String {
    match &dev.backend {
        GuestBackend::Tap { device } | GuestBackend::Macvtap { device, .. } => {
            interface_xml(dev, device)
        }
        GuestBackend::Hostdev { pci_address } => hostdev_xml(dev, pci_address),
        GuestBackend::VhostUser {
            source,
            libvirt_mac,
            port_forwards,
            ..
        } => vhost_user_xml(dev, source, libvirt_mac.as_deref(), port_forwards),
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
    close_interface(out, dev)
}

/// What every `<interface>` ends with: boot order, link state, alias, ACPI index and
/// PCI address, and the closing tag.
fn close_interface(mut out: String, dev: &GuestDevice) -> String {
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

fn vhost_user_xml(
    dev: &GuestDevice,
    source: &str,
    mac: Option<&str>,
    forwards: &[PasstPortForward],
) -> String {
    let mut out = String::from("<interface type='vhostuser'>\n");
    if let Some(mac) = mac {
        out.push_str(&format!("  <mac address='{}'/>\n", esc(mac)));
    }
    out.push_str(&format!("  <source dev='{}'/>\n", esc(source)));
    let model = match dev.model.as_str() {
        "virtio" => "virtio-non-transitional",
        other => other,
    };
    out.push_str(&format!("  <model type='{}'/>\n", esc(model)));
    out.push_str(&format!(
        "  <backend type='passt' logFile='{}'/>\n",
        esc(PASST_LOG_FILE)
    ));
    for f in forwards {
        if f.ranges.is_empty() {
            out.push_str(&format!("  <portForward proto='{}'/>\n", esc(&f.proto)));
            continue;
        }
        out.push_str(&format!("  <portForward proto='{}'>\n", esc(&f.proto)));
        for r in &f.ranges {
            let exclude = if r.exclude { " exclude='yes'" } else { "" };
            out.push_str(&format!("    <range start='{}'{exclude}/>\n", r.start));
        }
        out.push_str("  </portForward>\n");
    }
    close_interface(out, dev)
}

/// The guest's RAM as shared memfd memory, for directly under `<domain>`: what a
/// vhost-user back end needs, as KubeVirt writes it for `passtBinding`.
pub fn memory_backing_xml() -> String {
    "<memoryBacking>\n  <source type='memfd'/>\n  <access mode='shared'/>\n</memoryBacking>\n"
        .into()
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

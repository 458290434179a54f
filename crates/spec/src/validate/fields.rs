//! Per-interface guest-device fields: model, MAC address, PCI address, boot order, ACPI
//! index and DHCP options.
//!
//! Uniqueness across interfaces (MAC, boot order, ACPI index) is checked on values that
//! are themselves valid, and reported on the later interface, naming the earlier one.
//! MACs are compared as bytes, so `02:AA:…` and `02-aa-…` are the same address. Unset
//! and empty values are "not given", as in KubeVirt (`acpiIndex: 0` included: KubeVirt
//! drops a zero there). Boot orders of disks are not read, so a clash between a disk and
//! an interface is not seen here.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Ctx;
use super::mac::{MacError, parse_mac};
use crate::model::{DhcpOptions, Interface};

/// KubeVirt's list of NIC models.
pub const MODELS: &[&str] = &[
    "e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139", "virtio",
];

/// The in-pod bridge's MAC under masquerade.
pub const RESERVED_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0];

const MAX_ACPI_INDEX: i64 = 16383;
const MAX_DHCP_OPTION_LEN: usize = 255;

pub(super) fn check(ctx: &mut Ctx) {
    let mut macs: BTreeMap<[u8; 6], usize> = BTreeMap::new();
    let mut boot_orders: BTreeMap<i64, usize> = BTreeMap::new();
    let mut acpi: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, iface) in ctx.interfaces().iter().enumerate() {
        model(ctx, i, iface);
        mac(ctx, i, iface, &mut macs);
        pci(ctx, i, iface);
        boot_order(ctx, i, iface, &mut boot_orders);
        acpi_index(ctx, i, iface, &mut acpi);
        if let Some(opts) = &iface.dhcp_options {
            dhcp(ctx, i, opts);
        }
    }
}

fn model(ctx: &mut Ctx, i: usize, iface: &Interface) {
    let Some(model) = iface.model.as_deref().filter(|m| !m.is_empty()) else {
        return;
    };
    let path = format!("{}.model", ctx.iface_path(i));
    if !MODELS.contains(&model) {
        let message = format!(
            "model {model:?} is not supported; use one of {}",
            MODELS.join(", ")
        );
        ctx.violation(path, "model-unsupported", message);
    } else if model != "virtio"
        && ctx.obj.spec.domain.devices.network_interface_multiqueue == Some(true)
    {
        let message = format!(
            "networkInterfaceMultiqueue has no effect on model {model}; only virtio NICs get queues"
        );
        ctx.warning(path, message);
    }
}

fn mac(ctx: &mut Ctx, i: usize, iface: &Interface, seen: &mut BTreeMap<[u8; 6], usize>) {
    let Some(text) = iface.mac_address.as_deref().filter(|m| !m.is_empty()) else {
        return;
    };
    let path = format!("{}.macAddress", ctx.iface_path(i));
    let bytes = match parse_mac(text) {
        Ok(b) => b,
        Err(e @ MacError::Malformed(_)) => {
            return ctx.violation(path, "mac-malformed", e.to_string());
        }
        Err(e @ MacError::TooLong(_)) => return ctx.violation(path, "mac-too-long", e.to_string()),
    };
    if bytes[0] & 1 == 1 {
        let message = format!(
            "MAC address {text} is a multicast address; a NIC needs a unicast one (even first byte)"
        );
        return ctx.violation(path, "mac-multicast", message);
    }
    if iface.masquerade.is_some() && bytes == RESERVED_MAC {
        let message = "MAC address 02:00:00:00:00:00 is reserved for the in-pod bridge under masquerade; choose another";
        return ctx.violation(path, "mac-reserved", message);
    }
    if let Some(first) = seen.get(&bytes) {
        let message = format!("MAC address {text} is also used by interfaces[{first}]");
        return ctx.violation(path, "mac-duplicate", message);
    }
    seen.insert(bytes, i);
}

/// `dddd:bb:ss.f`: hex domain, bus and slot, function 0–7 (KubeVirt's pattern), and a
/// slot a PCI bus has (00–1f), which libvirt would refuse otherwise.
fn pci(ctx: &mut Ctx, i: usize, iface: &Interface) {
    let Some(text) = iface.pci_address.as_deref().filter(|p| !p.is_empty()) else {
        return;
    };
    let path = format!("{}.pciAddress", ctx.iface_path(i));
    let hex = |s: &[u8]| s.iter().all(u8::is_ascii_hexdigit);
    let message = match text.as_bytes() {
        [d0, d1, d2, d3, b':', b0, b1, b':', s0, s1, b'.', f]
            if hex(&[*d0, *d1, *d2, *d3, *b0, *b1, *s0, *s1]) && (b'0'..=b'7').contains(f) =>
        {
            if (*s0 as char).to_digit(16).is_some_and(|high| high <= 1) {
                return;
            }
            format!(
                "PCI address {text} has slot {}{}; slots are 00-1f",
                *s0 as char, *s1 as char
            )
        }
        _ => format!(
            "malformed PCI address {text:?}; write domain:bus:slot.function, e.g. 0000:81:00.1"
        ),
    };
    ctx.violation(path, "pci-address-format", message);
}

fn boot_order(ctx: &mut Ctx, i: usize, iface: &Interface, seen: &mut BTreeMap<i64, usize>) {
    let Some(order) = iface.boot_order else {
        return;
    };
    let path = format!("{}.bootOrder", ctx.iface_path(i));
    if order < 1 {
        return ctx.violation(
            path,
            "boot-order-positive",
            format!("bootOrder {order} must be 1 or more"),
        );
    }
    if let Some(first) = seen.get(&order) {
        let message = format!("bootOrder {order} is already used by interfaces[{first}]");
        return ctx.violation(path, "boot-order-unique", message);
    }
    seen.insert(order, i);
}

fn acpi_index(ctx: &mut Ctx, i: usize, iface: &Interface, seen: &mut BTreeMap<i64, usize>) {
    let Some(index) = iface.acpi_index.filter(|x| *x != 0) else {
        return;
    };
    let path = format!("{}.acpiIndex", ctx.iface_path(i));
    if !(1..=MAX_ACPI_INDEX).contains(&index) {
        let message = format!("acpiIndex {index} is out of range; use 1 to {MAX_ACPI_INDEX}");
        return ctx.violation(path, "acpi-index-range", message);
    }
    if let Some(first) = seen.get(&index) {
        let message = format!("acpiIndex {index} is already used by interfaces[{first}]");
        return ctx.violation(path, "acpi-index-unique", message);
    }
    seen.insert(index, i);
}

fn dhcp(ctx: &mut Ctx, i: usize, opts: &DhcpOptions) {
    let base = format!("{}.dhcpOptions", ctx.iface_path(i));
    for (field, value) in [
        ("bootFileName", &opts.boot_file_name),
        ("tftpServerName", &opts.tftp_server_name),
    ] {
        if let Some(v) = value.as_deref().filter(|v| v.len() > MAX_DHCP_OPTION_LEN) {
            let message = format!(
                "{field} is {} bytes; a DHCP option holds at most {MAX_DHCP_OPTION_LEN}",
                v.len()
            );
            ctx.violation(format!("{base}.{field}"), "dhcp-option-too-long", message);
        }
    }
    for (k, server) in opts.ntp_servers.iter().enumerate() {
        let ipv4 = match server.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => true,
            Ok(IpAddr::V6(v6)) => v6.to_ipv4_mapped().is_some(),
            Err(_) => false,
        };
        if !ipv4 {
            let message = format!("NTP server {server:?} is not an IPv4 address");
            ctx.violation(
                format!("{base}.ntpServers[{k}]"),
                "dhcp-ntp-server-ipv4",
                message,
            );
        }
    }
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for (k, opt) in opts.private_options.iter().enumerate() {
        let path = format!("{base}.privateOptions[{k}]");
        if !(224..=254).contains(&opt.option) {
            let message = format!(
                "DHCP private option {} is out of range; use 224 to 254",
                opt.option
            );
            ctx.violation(
                format!("{path}.option"),
                "dhcp-private-option-range",
                message,
            );
        } else if let Some(first) = seen.get(&opt.option) {
            let message = format!(
                "DHCP private option {} is already set by privateOptions[{first}]",
                opt.option
            );
            ctx.violation(
                format!("{path}.option"),
                "dhcp-private-option-unique",
                message,
            );
        } else {
            seen.insert(opt.option, k);
        }
        if opt.value.len() > MAX_DHCP_OPTION_LEN {
            let message = format!(
                "value is {} bytes; a DHCP option holds at most {MAX_DHCP_OPTION_LEN}",
                opt.value.len()
            );
            ctx.violation(format!("{path}.value"), "dhcp-option-too-long", message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, found};

    fn iface(extra: &str) -> String {
        format!(
            "kind: VirtualMachineInstance\nspec:\n  domain: {{devices: {{interfaces: [{{name: a, bridge: {{}}, {extra}}}, {{name: b, bridge: {{}}}}]}}}}\n  networks: [{{name: a, pod: {{}}}}, {{name: b, multus: {{networkName: x}}}}]\n"
        )
    }

    #[test]
    fn same_mac_in_other_spelling_is_a_duplicate() {
        let r = check(
            "kind: VirtualMachineInstance\nspec:\n  domain: {devices: {interfaces: [{name: a, bridge: {}, macAddress: '02:AA:bb:cc:dd:ee'}, {name: b, bridge: {}, macAddress: 02-aa-bb-cc-dd-ee}]}}\n  networks: [{name: a, pod: {}}, {name: b, multus: {networkName: x}}]\n",
        );
        assert_eq!(
            found(&r),
            vec![(
                "mac-duplicate",
                "spec.domain.devices.interfaces[1].macAddress".into()
            )]
        );
    }

    #[test]
    fn reserved_mac_is_fine_on_bridge() {
        assert!(check(&iface("macAddress: '02:00:00:00:00:00'")).is_valid());
    }

    #[test]
    fn pci_slot_above_1f_is_refused() {
        assert!(check(&iface("pciAddress: '0000:81:1f.7'")).is_valid());
        let r = check(&iface("pciAddress: '0000:81:20.0'"));
        assert_eq!(
            found(&r),
            vec![(
                "pci-address-format",
                "spec.domain.devices.interfaces[0].pciAddress".into()
            )]
        );
    }

    #[test]
    fn acpi_index_zero_means_unset_as_in_kubevirt() {
        assert!(check(&iface("acpiIndex: 0")).is_valid());
        let r = check(&iface("acpiIndex: 16384"));
        assert_eq!(
            found(&r),
            vec![(
                "acpi-index-range",
                "spec.domain.devices.interfaces[0].acpiIndex".into()
            )]
        );
    }

    #[test]
    fn out_of_range_private_option_repeated_is_not_also_a_duplicate() {
        let r = check(&iface(
            "dhcpOptions: {privateOptions: [{option: 10, value: a}, {option: 10, value: b}]}",
        ));
        let rules: Vec<_> = r.violations.iter().map(|v| v.rule).collect();
        assert_eq!(
            rules,
            vec!["dhcp-private-option-range", "dhcp-private-option-range"]
        );
    }

    #[test]
    fn ipv4_mapped_ntp_server_is_ipv4_as_in_go() {
        assert!(
            check(&iface(
                "dhcpOptions: {ntpServers: ['::ffff:10.0.0.1', 192.168.0.1]}"
            ))
            .is_valid()
        );
    }

    #[test]
    fn multiqueue_on_e1000_is_a_warning() {
        let r = check(
            "kind: VirtualMachineInstance\nspec:\n  domain: {devices: {networkInterfaceMultiqueue: true, interfaces: [{name: a, bridge: {}, model: e1000}]}}\n  networks: [{name: a, pod: {}}]\n",
        );
        assert!(r.is_valid());
        assert_eq!(
            r.warnings[0].path,
            "spec.domain.devices.interfaces[0].model"
        );
    }
}

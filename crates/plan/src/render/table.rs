//! The human-readable plan: a header, plan notes, then one block per interface with a
//! label column. Only the plan's own data is printed, in its order, so the same plan
//! gives the same bytes. With [`Options::show_device`] each block ends with the guest
//! device as the hypervisor gets it: the QEMU arguments on one line, the libvirt element
//! line by line. The guest memory a vhost-user NIC needs shared is the VM's, so it comes
//! once, after the notes (its QEMU arguments and XML too with `show_device`).

use std::fmt::Write;

use crate::model::{GuestBackend, InterfacePlan, NetworkPlan, PortForward, Source};

const LABEL: usize = 12;

/// What the table shows beyond the plan's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Add each interface's QEMU arguments and libvirt XML (`--show-device`).
    pub show_device: bool,
}

pub fn render(plan: &NetworkPlan) -> String {
    render_with(plan, Options::default())
}

pub fn render_with(plan: &NetworkPlan, options: Options) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}  (pod view: {})", plan.object, plan.pod_view);
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if let Some(m) = &plan.shared_memory {
        let size = m
            .mib
            .map_or_else(|| "size unknown".to_string(), |mib| format!("{mib} MiB"));
        let mut lines = vec![format!("shared (memfd, for vhost-user): {size}")];
        if options.show_device {
            if !m.qemu_args.is_empty() {
                lines.push(format!("qemu: {}", m.qemu_args.join(" ")));
            }
            lines.extend(m.libvirt_xml.lines().map(|l| format!("libvirt: {l}")));
        }
        row(&mut out, "memory", &lines);
    }
    if plan.interfaces.is_empty() {
        out.push_str("no interfaces\n");
    }
    for iface in &plan.interfaces {
        out.push('\n');
        interface(&mut out, iface);
        if options.show_device {
            device(&mut out, iface);
        }
    }
    out
}

/// The guest device, compactly: QEMU arguments joined by spaces, then the XML's lines.
fn device(out: &mut String, i: &InterfacePlan) {
    let g = &i.guest;
    let qemu = if g.qemu_args.is_empty() {
        "none".to_string()
    } else {
        g.qemu_args.join(" ")
    };
    row(out, "qemu", &[qemu]);
    let mut xml: Vec<String> = g
        .libvirt_xml
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if xml.is_empty() {
        xml.push("none".into());
    }
    row(out, "libvirt", &xml);
}

fn row(out: &mut String, label: &str, lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        let l = if i == 0 { label } else { "" };
        let _ = writeln!(out, "{l:<LABEL$}{line}");
    }
}

fn interface(out: &mut String, i: &InterfacePlan) {
    row(out, "interface", std::slice::from_ref(&i.name));
    row(out, "network", std::slice::from_ref(&i.network));
    let source = match &i.source {
        Source::Pod => "pod".to_string(),
        Source::Multus {
            network_name,
            default: true,
        } => format!("multus {network_name} (default)"),
        Source::Multus { network_name, .. } => format!("multus {network_name}"),
    };
    row(out, "source", &[source]);
    let state = match i.state {
        crate::model::LinkState::Up => "",
        crate::model::LinkState::Down => ", link down",
    };
    row(
        out,
        "method",
        &[format!(
            "{} (binding {}{state})",
            i.method.as_str(),
            i.binding
        )],
    );
    let pl = &i.pod_link;
    let mut link = pl.name.clone();
    if !pl.present {
        link.push_str(" (not in the pod)");
    } else {
        if let Some(mac) = &pl.mac {
            let _ = write!(link, " mac {mac}");
        }
        let _ = write!(link, " mtu {}", pl.mtu);
        for a in &pl.addresses {
            let _ = write!(link, " {a}");
        }
    }
    row(out, "pod link", &[link]);
    let mut steps: Vec<String> = i.links.iter().map(ToString::to_string).collect();
    if steps.is_empty() {
        steps.push("no changes".into());
    }
    row(out, "in-pod", &steps);
    if !i.sysctls.is_empty() {
        let s: Vec<String> = i
            .sysctls
            .iter()
            .map(|s| format!("{}={}", s.key, s.value))
            .collect();
        row(out, "sysctls", &s);
    }
    row(out, "addresses", &[guest_addresses(i)]);
    let mut services = Vec::new();
    if let Some(d) = &i.dhcp4 {
        let mut s = format!(
            "dhcp4 on {} from {}: {}",
            d.interface, d.server_address, d.address
        );
        if let Some(r) = d.router {
            let _ = write!(s, " router {r}");
        }
        if !d.classless_routes.is_empty() {
            let routes: Vec<String> = d
                .classless_routes
                .iter()
                .map(|r| format!("{} via {}", r.destination, r.gateway))
                .collect();
            let _ = write!(s, " routes [{}]", routes.join(", "));
        }
        if !d.dns.is_empty() {
            let dns: Vec<String> = d.dns.iter().map(|a| a.to_string()).collect();
            let _ = write!(s, " dns {}", dns.join(","));
        }
        let _ = write!(s, " mtu {} host {}", d.mtu, d.hostname);
        services.push(s);
    }
    if let Some(d) = &i.dhcp6 {
        services.push(format!("dhcp6 on {}: {}", d.interface, d.address));
    }
    if let Some(r) = &i.ra {
        let flags = [(r.managed, "M"), (r.other_config, "O"), (r.autonomous, "A")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, f)| *f)
            .collect::<Vec<_>>()
            .join("");
        services.push(format!(
            "ra on {}: prefix {} flags {flags} mtu {}",
            r.interface, r.prefix, r.mtu
        ));
    }
    if let Some(u) = &i.usernet {
        services.push(format!(
            "usernet {} {} mtu {} tcp {} udp {}",
            u.attachment.as_str(),
            u.socket,
            u.mtu,
            forward(&u.tcp),
            forward(&u.udp)
        ));
    }
    if services.is_empty() {
        services.push("none".into());
    }
    row(out, "services", &services);
    if let Some(nft) = &i.nftables {
        row(out, "nftables", &[nft.summary()]);
    }
    let g = &i.guest;
    let mut dev = g.qemu_driver.clone();
    if let Some(mac) = &g.mac {
        let _ = write!(dev, " mac {mac}");
    }
    if let Some(mtu) = g.mtu {
        let _ = write!(dev, " mtu {mtu}");
    }
    match &g.backend {
        GuestBackend::Tap { device } => {
            let _ = write!(dev, " on tap {device}");
        }
        GuestBackend::Macvtap { device, fd, path } => {
            let _ = write!(dev, " on macvtap {device} as fd {fd}");
            if let Some(p) = path {
                let _ = write!(dev, " ({p})");
            }
        }
        GuestBackend::Hostdev { pci_address } => {
            let _ = write!(dev, " on VF {pci_address}");
        }
        GuestBackend::Stream { socket } => {
            let _ = write!(dev, " on socket {socket}");
        }
        GuestBackend::VhostUser { socket, .. } => {
            let _ = write!(dev, " on vhost-user {socket}");
        }
    }
    if let Some(b) = g.boot_order {
        let _ = write!(dev, " boot {b}");
    }
    if let Some(a) = &g.pci_address {
        let _ = write!(dev, " pci {a}");
    }
    if let Some(a) = g.acpi_index {
        let _ = write!(dev, " acpi {a}");
    }
    row(out, "guest", &[dev]);
    if !i.notes.is_empty() {
        row(out, "notes", &i.notes);
    }
}

fn forward(f: &PortForward) -> String {
    f.spec()
}

fn guest_addresses(i: &InterfacePlan) -> String {
    let v = guest_address_list(i);
    if v.is_empty() {
        "none assigned by netbind".into()
    } else {
        v.join(" ")
    }
}

/// The addresses netbind hands the guest (DHCPv4, DHCPv6, the user-mode engine).
pub(crate) fn guest_address_list(i: &InterfacePlan) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(d) = &i.dhcp4 {
        v.push(d.address.to_string());
    }
    if let Some(d) = &i.dhcp6 {
        v.push(d.address.to_string());
    }
    if let Some(u) = &i.usernet {
        v.extend(u.guest_addresses.iter().map(|a| a.to_string()));
    }
    v
}

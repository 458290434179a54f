//! Usernet: `passtBinding`, and binding plugins without a `domainAttachmentType` (sidecar
//! plugins such as passt and slirp), served by netbind's user-mode engine instead of a
//! sidecar. The guest's traffic enters and leaves the pod as sockets of one process: no
//! links, no NAT rules.
//!
//! The guest NIC reaches the engine by **vhost-user** unless the VM asks otherwise: the
//! engine reads and writes the NIC's virtqueues in the guest's memory, which must then be
//! shared (the plan's [`crate::model::SharedMemory`], once per VM). The annotation
//! `netbind.io/usernet-attachment: stream` on the VM (on a VM's template) makes every
//! usernet NIC of it a QEMU `-netdev stream` socket instead (each frame through the
//! socket); `vhostUser` is the default; any other value is a [`PlanError`]. Who starts the
//! engine follows from the attachment and from who starts the guest
//! ([`crate::model::Launcher`], `netbind up --launcher`):
//!
//! | attachment | QEMU on `qemuArgs` | libvirt on `libvirtXml` |
//! | --- | --- | --- |
//! | `vhostUser` | `-chardev socket,path=<socket>` + `-netdev vhost-user`; `netbind up` runs the engine (`--vhost-user`) on the socket | KubeVirt's `<interface type='vhostuser'>` with `<backend type='passt'/>`: libvirt runs netbind as its `passt`, `netbind up` runs no engine |
//! | `stream` | `-netdev stream` to the socket; `netbind up` runs the engine | the same arguments as `<qemu:commandline>`; `netbind up` runs the engine |
//!
//! The engine's socket is `/run/netbind/<namespace>/<vm>/<iface>.sock` (when that passes
//! the 107 bytes a socket path may have, `/run/netbind/s/<16 hex of
//! sha256(namespace/vm/iface)>.sock`). The guest gets the pod link's own global
//! addresses and the pod's default gateways, DNS and search list, MTU 65520 (passt's
//! default; the guest NIC carries it, not the pod link's).
//!
//! Inbound ports, as KubeVirt hands them to passt: `ports[]` by protocol; no ports at all
//! → every TCP and UDP port; with Istio the Envoy ports are excluded from TCP: no TCP
//! ports listed → every other TCP port, and (as in KubeVirt) when no port is listed at
//! all UDP is not forwarded. libvirt's `<portForward>` elements say the same
//! ([`passt_port_forwards`]): a protocol without ranges forwards all its ports, and with
//! Istio the TCP element starts with the Envoy ports as `exclude='yes'` ranges.
//!
//! Sysctls, as KubeVirt sets them for passtBinding: `net.ipv4.ping_group_range=107 107`
//! (ICMP echo through ping sockets as the qemu group) and
//! `net.ipv4.ip_unprivileged_port_start=0` (listening on low ports without privileges).
//! Both are namespaced and change nothing a mesh or policy looks at; libvirt's passt
//! needs them as much as `netbind up`'s engine.
//!
//! Busy polling (the engine looks for events up to 200 µs before it sleeps, which spares
//! a request/response exchange its cross-CPU wake-ups) is off when the VM's vCPUs run on
//! dedicated CPUs (`dedicatedCpuPlacement`) without `isolateEmulatorThread`: the engine
//! shares those CPUs with the vCPUs and would take time from them. With an isolated
//! emulator thread the pod has a CPU for the engine's side of the work.

use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

pub use crate::model::DEFAULT_BUSY_POLL_US;

use super::ctx::{BindingPlan, Ctx};
use super::shared::{ISTIO_ENVOY_PORTS, QEMU_UID, is_global_unicast, port_number};
use crate::error::PlanError;
use crate::model::{
    PasstPortForward, PasstPortRange, PortForward, Sysctl, UsernetAttachment, UsernetConfig,
};

/// The VM annotation that picks how its usernet NICs attach (`vhostUser`, `stream`).
pub const ATTACHMENT_ANNOTATION: &str = "netbind.io/usernet-attachment";

pub const DEFAULT_MTU: u32 = 65520;
pub const SOCKET_DIR: &str = "/run/netbind";
/// `sizeof(sockaddr_un.sun_path)` less the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

pub fn plan(ctx: &Ctx<'_>) -> Result<BindingPlan, PlanError> {
    let link = ctx.require_link()?;
    let mut bp = BindingPlan::default();
    let guest_addresses: Vec<IpNet> = link
        .addresses
        .iter()
        .copied()
        .filter(|a| is_global_unicast(a.addr()))
        .collect();
    let gateway = |v6: bool| {
        ctx.pod
            .routes
            .iter()
            .filter(|r| r.dev == link.name && r.destination.prefix_len() == 0)
            .filter_map(|r| r.gateway)
            .find(|g| g.is_ipv6() == v6)
    };
    let gateway4 = match gateway(false) {
        Some(IpAddr::V4(g)) => Some(g),
        _ => None,
    };
    let gateway6 = match gateway(true) {
        Some(IpAddr::V6(g)) => Some(g),
        _ => None,
    };
    let (tcp, udp) = port_forwards(ctx)?;
    let attachment = attachment(ctx)?;
    let socket = socket_path(&ctx.obj.namespace, &ctx.obj.name, &ctx.iface.name);
    if !socket.starts_with(&format!("{SOCKET_DIR}/{}/", ctx.obj.namespace)) {
        bp.notes.push(format!(
            "socket path shortened to {socket} (a unix socket path has at most 107 bytes)"
        ));
    }
    if !ctx.network.is_pod() && !ctx.network.is_multus_default() {
        bp.notes.push(format!(
            "usernet on a secondary network: the engine uses the namespace's routing, not {} specifically",
            link.name
        ));
    }
    let cpu = ctx.obj.spec.domain.cpu.as_ref();
    let shares_vcpu_cpus = cpu.is_some_and(|c| {
        c.dedicated_cpu_placement == Some(true) && c.isolate_emulator_thread != Some(true)
    });
    if shares_vcpu_cpus {
        bp.notes.push(
            "busy polling off: the engine would share the vCPUs' dedicated CPUs \
             (isolateEmulatorThread gives it one of its own)"
                .into(),
        );
    }
    bp.usernet = Some(UsernetConfig {
        socket,
        attachment,
        guest_mac: ctx.client_mac(),
        guest_addresses,
        gateway4,
        gateway6,
        map_gateway_to_loopback: true,
        mtu: DEFAULT_MTU,
        dns: ctx.pod.dns.nameservers.clone(),
        search: ctx.search.clone(),
        hostname: ctx.hostname.clone(),
        tcp,
        udp,
        busy_poll_us: if shares_vcpu_cpus {
            0
        } else {
            DEFAULT_BUSY_POLL_US
        },
    });
    bp.sysctls = vec![
        Sysctl::new(
            "net.ipv4.ping_group_range",
            format!("{QEMU_UID} {QEMU_UID}"),
        ),
        Sysctl::new("net.ipv4.ip_unprivileged_port_start", "0"),
    ];
    bp.guest_mtu = Some(Some(DEFAULT_MTU));
    Ok(bp)
}

/// The attachment the VM's annotation asks for; vhost-user without one.
fn attachment(ctx: &Ctx<'_>) -> Result<UsernetAttachment, PlanError> {
    match ctx
        .obj
        .annotations
        .get(ATTACHMENT_ANNOTATION)
        .map(String::as_str)
    {
        None | Some("vhostUser") => Ok(UsernetAttachment::VhostUser),
        Some("stream") => Ok(UsernetAttachment::Stream),
        Some(other) => Err(PlanError::BadAttachment {
            interface: ctx.iface.name.clone(),
            annotation: ATTACHMENT_ANNOTATION,
            value: other.into(),
        }),
    }
}

/// The engine's socket for one interface.
pub fn socket_path(namespace: &str, vm: &str, iface: &str) -> String {
    let path = format!("{SOCKET_DIR}/{namespace}/{vm}/{iface}.sock");
    if path.len() <= MAX_SOCKET_PATH {
        return path;
    }
    let digest = Sha256::digest(format!("{namespace}/{vm}/{iface}").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{SOCKET_DIR}/s/{hex}.sock")
}

fn port_forwards(ctx: &Ctx<'_>) -> Result<(PortForward, PortForward), PlanError> {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for p in &ctx.iface.ports {
        let port = port_number(&ctx.iface.name, "ports[].port", p.port)?;
        match p
            .protocol
            .as_deref()
            .unwrap_or("TCP")
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "tcp" => tcp.push(port),
            "udp" => udp.push(port),
            _ => {}
        }
    }
    let exclude: Vec<u16> = if ctx.istio {
        ISTIO_ENVOY_PORTS.to_vec()
    } else {
        Vec::new()
    };
    let fwd = |ports: Vec<u16>| {
        if ports.is_empty() {
            PortForward::None
        } else {
            PortForward::Ports { ports }
        }
    };
    Ok(match (tcp.is_empty(), udp.is_empty(), exclude.is_empty()) {
        (true, true, true) => (
            PortForward::All { exclude: vec![] },
            PortForward::All { exclude: vec![] },
        ),
        // KubeVirt's TCP element then holds only the exclusions: every other port.
        (true, _, false) => (PortForward::All { exclude }, fwd(udp)),
        _ => (fwd(tcp), fwd(udp)),
    })
}

/// libvirt's `<portForward>` elements for the engine's inbound ports, as KubeVirt writes
/// them: a protocol forwarding every port has no ranges, one forwarding none has no
/// element, and with Istio the TCP element lists the Envoy ports first as exclusions
/// (next to listed ports they change nothing; alone they leave every other port).
pub fn passt_port_forwards(
    tcp: &PortForward,
    udp: &PortForward,
    istio: bool,
) -> Vec<PasstPortForward> {
    let element = |proto: &str, forward: &PortForward, excluded: &[u16]| {
        let ranges = |ports: &[u16], exclude: bool| {
            ports
                .iter()
                .map(move |&start| PasstPortRange { start, exclude })
                .collect::<Vec<_>>()
        };
        let ranges = match forward {
            PortForward::None => return None,
            PortForward::All { exclude } => ranges(exclude, true),
            PortForward::Ports { ports } => {
                let mut r = ranges(excluded, true);
                r.extend(ranges(ports, false));
                r
            }
        };
        Some(PasstPortForward {
            proto: proto.into(),
            ranges,
        })
    };
    let envoy: &[u16] = if istio { &ISTIO_ENVOY_PORTS } else { &[] };
    [element("tcp", tcp, envoy), element("udp", udp, &[])]
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_is_per_namespace_vm_and_interface() {
        assert_eq!(
            socket_path("ns", "vm", "default"),
            "/run/netbind/ns/vm/default.sock"
        );
    }

    #[test]
    fn overlong_socket_path_is_hashed() {
        let long = "n".repeat(63);
        let p = socket_path(&long, &long, "default");
        assert!(p.starts_with("/run/netbind/s/"), "{p}");
        assert_eq!(p.len(), "/run/netbind/s/".len() + 16 + ".sock".len());
    }
}

//! `netbind usernet`: runs the user-mode engine for one guest NIC until SIGINT/SIGTERM.
//!
//! How it works: the engine's addresses come from `--plan FILE` (a `NetworkPlan` whose
//! interface carries a `usernet` config) or from the namespace the process runs in: the
//! link with the default route gives the guest's addresses and gateways, `/etc/resolv.conf`
//! the resolvers; either way the guest's DNS queries go to the resolvers it is told
//! about (loopback ones through the gateway address). Flags override
//! ports, MTU, gateway mapping and the flow cap. The guest attaches by `--socket`
//! (QEMU `-netdev stream`; with `--vhost-user` QEMU's vhost-user back end), `--netns` (a
//! tap made in that namespace, configured like the pod) or `--fd`; with `--plan` and none
//! of them, on the plan's socket, as the plan's `attachment` says (`--vhost-user` or not
//! overrides it). Counters go to stderr on SIGUSR1 and at exit. Once everything is
//! open, the engine drops all capabilities, switches user with `--runas`, and runs under a
//! seccomp allowlist unless `--no-seccomp` (netbind_usernet::harden). What it does is
//! logged (`crate::log`): its addresses at start, the guest's pings, its counters at exit.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use netbind_plan::model::UsernetAttachment;
use netbind_usernet::config::{EngineConfig, MAX_MTU};
use netbind_usernet::harden::Hardening;
use netbind_usernet::run::{Attach, RunOptions};
use netbind_usernet::{PortSpec, attach, run};

use crate::Outcome;

#[derive(Debug, clap::Args)]
pub struct UsernetArgs {
    /// Listen on this unix socket for QEMU (`-netdev stream,addr.type=unix,addr.path=…`).
    #[arg(long, value_name = "PATH", group = "guest")]
    socket: Option<PathBuf>,
    /// Create a tap in this network namespace (name under /run/netns or a path) and give
    /// it the guest's addresses and routes, like pasta --config-net.
    #[arg(long, value_name = "NS", group = "guest")]
    netns: Option<String>,
    /// Use an inherited descriptor: a connected stream socket or a tap.
    #[arg(long, value_name = "N", group = "guest")]
    fd: Option<i32>,
    /// Be QEMU's vhost-user back end (`-netdev vhost-user`) on --socket or --fd,
    /// instead of the stream protocol: the guest's queues in memory QEMU shares. With
    /// --plan alone the plan's attachment decides; this forces vhost-user.
    #[arg(long)]
    vhost_user: bool,
    /// vhost-user: where a migration's repair helper (passt-repair, `netbind
    /// passt-repair`) connects [default: the socket's path with `.repair` added].
    #[arg(long, value_name = "PATH")]
    repair_path: Option<PathBuf>,
    /// Name of the tap made with --netns.
    #[arg(long, value_name = "NAME", default_value = "tap0")]
    tap_name: String,
    /// Inbound TCP ports, passt's syntax: `[ADDRESS][%DEVICE]/PORTS` with PORTS `none`,
    /// `all`, or a list of `22`, `8000-8080`, `8080:80` (to guest port 80), `~9000` (all
    /// but); without ADDRESS on every address. May be repeated.
    #[arg(short = 't', long = "tcp-ports", value_name = "SPEC")]
    tcp: Vec<String>,
    /// Inbound UDP ports, same syntax.
    #[arg(short = 'u', long = "udp-ports", value_name = "SPEC")]
    udp: Vec<String>,
    /// Do not map the gateway address to the namespace's loopback.
    #[arg(long)]
    no_map_gw: bool,
    /// Keep the counters in this file (`name value` lines), rewritten every second.
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
    /// Capture the guest side to this pcap file.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Most flows at once; new ones beyond are refused (RST / ICMP unreachable).
    #[arg(long, value_name = "N", default_value_t = netbind_usernet::config::DEFAULT_MAX_FLOWS)]
    max_flows: usize,
    /// Guest MTU.
    #[arg(long, value_name = "N")]
    mtu: Option<u16>,
    /// Take the configuration from a plan (JSON, `netbind plan --output json`).
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// After opening its descriptors, run as this user and group (numbers, `UID:GID`).
    #[arg(long, value_name = "UID:GID")]
    runas: Option<String>,
    /// Do not install the seccomp allowlist (for debugging; capabilities are dropped all
    /// the same).
    #[arg(long)]
    no_seccomp: bool,
    /// Look for events this long (microseconds) before sleeping, so that the next packet
    /// of a request/response exchange needs no wake-up; the window adapts and closes when
    /// traffic pauses (0: always sleep; at most 5000). Default: the plan's, else 200.
    #[arg(long, value_name = "MICROS", value_parser = clap::value_parser!(u64).range(0..=5000))]
    busy_poll: Option<u64>,
    /// With --plan: the interface (by name) whose usernet config to use; default the first.
    #[arg(long, value_name = "NAME", requires = "plan")]
    interface: Option<String>,
}

pub fn usernet(args: &UsernetArgs) -> Result<Outcome> {
    let (mut cfg, planned_busy_poll) = match &args.plan {
        Some(path) => {
            let (cfg, busy_poll_us) = from_plan(path, args.interface.as_deref())?;
            (cfg, Some(busy_poll_us))
        }
        None => (from_namespace(None)?, None),
    };
    let busy_poll = args
        .busy_poll
        .or(planned_busy_poll)
        .map_or(run::DEFAULT_BUSY_POLL, Duration::from_micros);
    if !args.tcp.is_empty() {
        cfg.tcp_ports = parse_specs(&args.tcp)?;
    }
    if !args.udp.is_empty() {
        cfg.udp_ports = parse_specs(&args.udp)?;
    }
    if args.no_map_gw {
        cfg.map_gateway = false;
    }
    if let Some(mtu) = args.mtu {
        if !(1280..=MAX_MTU).contains(&mtu) {
            bail!("--mtu {mtu}: must be within 1280..={MAX_MTU}");
        }
        cfg.mtu = mtu;
    }
    cfg.max_flows = args.max_flows.max(1);
    let vhost_user = |path: &std::path::Path| -> anyhow::Result<Attach> {
        let repair = args
            .repair_path
            .clone()
            .unwrap_or_else(|| crate::passt::repair_path_for(path));
        Ok(Attach::VhostUser {
            listener: run::listen_unix(path)?,
            one_off: false,
            repair: Some(netbind_usernet::migrate::repair::Repair::new(
                run::listen_unix(&repair)?,
                &repair,
            )),
        })
    };
    let attach = match (&args.socket, &args.netns, args.fd) {
        (_, Some(_), _) if args.vhost_user => {
            bail!("--vhost-user serves QEMU on --socket or --fd, not a tap (--netns)")
        }
        (Some(path), None, None) if args.vhost_user => vhost_user(path)?,
        (None, None, Some(n)) if args.vhost_user => {
            Attach::VhostUserFd(run::inherited_fd(n).with_context(|| format!("--fd {n}"))?)
        }
        (None, None, None) if args.plan.is_some() => {
            let u = planned(args)?;
            if args.vhost_user || u.attachment == UsernetAttachment::VhostUser {
                vhost_user(std::path::Path::new(&u.socket))?
            } else {
                Attach::Socket(PathBuf::from(&u.socket))
            }
        }
        (Some(path), None, None) => Attach::Socket(path.clone()),
        (None, Some(ns), None) => {
            Attach::Tap(attach::tap::create_in_netns(ns, &args.tap_name, &cfg)?)
        }
        (None, None, Some(n)) => {
            Attach::Fd(run::inherited_fd(n).with_context(|| format!("--fd {n}"))?)
        }
        (None, None, None) => bail!("say where the guest is: --socket PATH, --netns NS or --fd N"),
        _ => bail!("give only one of --socket, --netns, --fd"),
    };
    tracing::info!(
        "guest {} {} gateway {} {} mtu {} dns {:?} → {:?}",
        show(cfg.guest4.map(IpNet::V4)),
        show(cfg.guest6.map(IpNet::V6)),
        show(cfg.gateway4.map(IpAddr::V4)),
        show(cfg.gateway6.map(IpAddr::V6)),
        cfg.mtu,
        cfg.dns,
        cfg.dns_upstream,
    );
    let runas = args
        .runas
        .as_deref()
        .map(Hardening::parse_runas)
        .transpose()?;
    let harden = Hardening {
        seccomp: !args.no_seccomp,
        runas,
    };
    cfg.raw_ping =
        pings_need_raw_sockets(runas.map_or_else(|| nix::unistd::getegid().as_raw(), |(_, g)| g));
    let opts = RunOptions {
        pcap: args.pcap.clone(),
        signals: true,
        stop: Arc::new(AtomicBool::new(false)),
        stats: args.stats.clone(),
        harden: Some(harden),
        busy_poll,
    };
    let counters = run::run(cfg, attach, opts)?;
    tracing::info!("{counters}");
    Ok(Outcome::Ok)
}

/// Guest pings go out through ping sockets, which the kernel allows only to the groups in
/// `net.ipv4.ping_group_range` (the default allows none). When they are denied to the
/// engine's group `gid`: through raw ICMP sockets if the engine has `CAP_NET_RAW` (true
/// is returned), else a warning at start, not only a counter.
pub(crate) fn pings_need_raw_sockets(gid: u32) -> bool {
    use netbind_usernet::icmp::{PING_GROUP_RANGE, ping_allowed};
    let range = std::fs::read_to_string(PING_GROUP_RANGE).unwrap_or_default();
    if ping_allowed(&range, gid) {
        return false;
    }
    let range = range.split_whitespace().collect::<Vec<_>>().join(" ");
    let raw = caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_NET_RAW)
        .unwrap_or(false);
    if raw {
        tracing::info!(
            "net.ipv4.ping_group_range is `{range}`, which leaves out the engine's group {gid}: the guest's pings go through raw ICMP sockets (CAP_NET_RAW, opened before capabilities are dropped)"
        );
    } else {
        tracing::warn!(
            "the guest's pings will go unanswered: net.ipv4.ping_group_range is `{range}`, which leaves out the engine's group {gid}; set it to include {gid} (KubeVirt sets `107 107` in the pod), or start the engine with CAP_NET_RAW"
        );
    }
    raw
}

fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn read_plan(path: &PathBuf) -> Result<netbind_plan::model::NetworkPlan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // `netbind plan --output json` prints a list of plans; a single plan is fine too.
    if let Ok(mut list) = serde_json::from_str::<Vec<netbind_plan::model::NetworkPlan>>(&text) {
        if list.is_empty() {
            bail!("{}: no plan in the list", path.display());
        }
        return Ok(list.swap_remove(0));
    }
    serde_json::from_str(&text).with_context(|| format!("{}: not a NetworkPlan", path.display()))
}

/// The specs of repeated `-t`/`-u` options, the plan's replaced.
fn parse_specs(specs: &[String]) -> Result<Vec<PortSpec>, netbind_usernet::PortSpecError> {
    specs.iter().map(|s| PortSpec::parse(s)).collect()
}

fn usernet_config(
    args_plan: &PathBuf,
    interface: Option<&str>,
) -> Result<netbind_plan::model::UsernetConfig> {
    let plan = read_plan(args_plan)?;
    plan.interfaces
        .iter()
        .filter(|i| interface.is_none_or(|n| i.name == n))
        .find_map(|i| i.usernet.clone())
        .with_context(|| {
            format!(
                "{}: no interface with a usernet config",
                args_plan.display()
            )
        })
}

/// The usernet config of `--plan` (and `--interface`).
fn planned(args: &UsernetArgs) -> Result<netbind_plan::model::UsernetConfig> {
    let path = args.plan.as_ref().context("no plan")?;
    usernet_config(path, args.interface.as_deref())
}

/// The engine's configuration and busy-poll window (µs) from a plan.
fn from_plan(path: &PathBuf, interface: Option<&str>) -> Result<(EngineConfig, u64)> {
    let u = usernet_config(path, interface)?;
    // The plan's resolvers are the pod's (`up` read them from the pod's resolv.conf,
    // `/etc/netns/NS/resolv.conf`): the guest is told about them and its queries go to
    // them. Not this process's `/etc/resolv.conf`: an engine entered into the pod's
    // namespace by `setns` still sees the host's file there.
    let cfg = EngineConfig::from_usernet(&u)?;
    Ok((cfg, u.busy_poll_us.into()))
}

/// The guest takes the namespace's own addresses, gateways and resolvers: those of
/// `interface`, else of the link with the default route.
pub(crate) fn from_namespace(interface: Option<&str>) -> Result<EngineConfig> {
    let view = netbind_netns::read_own_view()
        .context("cannot read this namespace's addresses and routes")?;
    let default_dev = view
        .routes
        .iter()
        .find(|r| r.destination.prefix_len() == 0 && r.gateway.is_some())
        .map(|r| r.dev.clone());
    let link = match interface {
        Some(name) => (view.links.iter())
            .find(|l| l.name == name)
            .with_context(|| format!("--interface {name}: no such link in this namespace"))?,
        None => (view.links.iter())
            .filter(|l| l.name != "lo")
            .find(|l| Some(&l.name) == default_dev.as_ref())
            .or_else(|| {
                view.links
                    .iter()
                    .find(|l| l.name != "lo" && !l.addresses.is_empty())
            })
            .context("this namespace has no link with an address to give the guest")?,
    };
    let global = |a: &IpNet| match a.addr() {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local(),
    };
    let gateway = |v6: bool| {
        view.routes
            .iter()
            .filter(|r| r.destination.prefix_len() == 0 && r.dev == link.name)
            .filter_map(|r| r.gateway)
            .find(|g| g.is_ipv6() == v6)
    };
    let mut cfg = EngineConfig {
        guest4: link
            .addresses
            .iter()
            .filter(|a| global(a))
            .find_map(|a| match a {
                IpNet::V4(n) => Some(*n),
                IpNet::V6(_) => None,
            }),
        guest6: link
            .addresses
            .iter()
            .filter(|a| global(a))
            .find_map(|a| match a {
                IpNet::V6(n) => Some(*n),
                IpNet::V4(_) => None,
            }),
        gateway4: match gateway(false) {
            Some(IpAddr::V4(g)) => Some(g),
            _ => None,
        },
        gateway6: match gateway(true) {
            Some(IpAddr::V6(g)) => Some(g),
            _ => None,
        },
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
        ..EngineConfig::default()
    };
    if cfg.guest4.is_none() && cfg.guest6.is_none() {
        bail!("link {} has no global address to give the guest", link.name);
    }
    cfg.fill_gateways();
    let dns = std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| netbind_plan::podview::Dns::from_resolv_conf(&t))
        .unwrap_or_default();
    cfg.search = dns.search.clone();
    cfg.set_resolvers(&dns.nameservers);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guest is offered the pod's resolvers and its queries must reach them, not
    /// the resolvers of wherever the engine process runs (here: this machine's).
    #[test]
    fn the_engine_asks_the_resolvers_the_plan_gives_the_guest_not_its_own_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let vm = dir.path().join("vm.yaml");
        std::fs::write(
            &vm,
            "kind: VirtualMachineInstance\nmetadata: {name: vm, namespace: ns}\nspec:\n  domain: {devices: {interfaces: [{name: default, passtBinding: {}}]}}\n  networks: [{name: default, pod: {}}]\n",
        )
        .unwrap();
        let cluster = netbind_spec::ClusterConfig::default();
        let checked = crate::commands::check_file(vm.to_str().unwrap(), &cluster, None).unwrap();
        let obj = &checked.objects[0].obj;
        let mut view = netbind_plan::PodView::typical(obj);
        let pod_dns: IpAddr = "10.99.0.53".parse().unwrap();
        view.dns.nameservers = vec![pod_dns];
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        assert!(!host.contains("10.99.0.53"), "the host's resolvers differ");
        let plan = netbind_plan::plan(obj, &cluster, &view).unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, serde_json::to_string(&plan).unwrap()).unwrap();
        let (cfg, _) = from_plan(&path, None).unwrap();
        assert_eq!(
            cfg.dns_upstream,
            vec![std::net::SocketAddr::new(pod_dns, 53)]
        );
        assert_eq!(cfg.dns, vec![pod_dns], "what the guest is told");
    }
}

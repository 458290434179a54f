//! `netbind up` and `netbind down`: the pod's data plane, built, served and removed.
//!
//! How `up` works, phase by phase, with the capabilities each needs:
//! 1. **read** (CAP_SYS_ADMIN for `setns`): parse FILE (exactly one VM/VMI), find the
//!    state dir (`--state-dir`, default `/run/netbind/<namespace>/<vm>`). The pod view
//!    comes from the state dir when an earlier `up` saved one — later runs must plan from
//!    the namespace as CNI left it, not as netbind changed it — otherwise it is read live
//!    from `--netns` and saved there before anything changes. A later run adds the links
//!    CNI made since (a hot-plugged Multus network) to the saved view.
//! 2. **plan** (none): validate against the pod's addresses and plan; pure.
//! 3. **apply** (CAP_SYS_ADMIN + CAP_NET_ADMIN): `netbind_netns::apply_with`, journaled in
//!    the state dir, so running `up` again is a no-op and a killed `up` converges when run
//!    again; with a changed plan it applies the difference (hot-plug, hot-unplug; see
//!    `netbind_netns::apply::replan`). `NETBIND_FAIL_AFTER_STEP=N` /
//!    `NETBIND_KILL_AFTER_STEP=N` are test hooks.
//! 4. **render** (none): `--domain-out FILE` gets JSON, written when the guest can start
//!    (with serving: after the services are open and every engine listens)
//!    `{"object": …, "launcher": "qemu", "qemuArgs": [...], "libvirtXml": "...",
//!    "libvirtDomainXml": "...", "fds": [...], "interfaces": [{"name", "alias",
//!    "linkState", "qemuArgs", "libvirtXml"}]}` — the guest devices as QEMU arguments
//!    (one array element per argument; the shared guest memory of vhost-user NICs
//!    first) and as libvirt `<interface>`/`<hostdev>` XML for `<devices>`, what the
//!    domain itself needs for them (`<memoryBacking>`, for directly under `<domain>`),
//!    and the descriptors the launcher must open read-write and pass to QEMU under the
//!    numbers `qemuArgs` name (`{"fd": 3, "path": "/dev/tap12", "link": "pod…"}` for a
//!    macvtap), written atomically.
//! 5. **serve** (opening: CAP_NET_BIND_SERVICE + CAP_NET_RAW; serving: none): every
//!    proxied interface (`passtBinding`, sidecar binding plugins) gets its own user-mode
//!    engine, `netbind usernet --plan <state dir>/plan.json --interface NAME` (with
//!    `--vhost-user` for a vhost-user NIC), started from a thread inside the pod's
//!    namespace (a child forked there lives there), which drops its own privileges;
//!    SIGTERM to `up` is passed on to the engines. Except with `--launcher libvirt`:
//!    libvirt starts the `passt` of a vhost-user NIC itself (netbind as passt, from the
//!    `<backend type='passt'/>` of `libvirtXml`), so `up` runs no engine for it (the
//!    plan's sysctls are still set; `InterfacePlan::engine_run_by_up` decides). The DHCPv4,
//!    DHCPv6 and RA services the plan asks for are opened on a thread inside the pod's
//!    namespace; then every capability is dropped (bounding, ambient, inheritable,
//!    effective, permitted) on the main thread *before* one thread per service is spawned
//!    (threads inherit the empty sets). `up` stays in the foreground until SIGTERM or
//!    SIGINT, then prints each service's counters and exits 0. `--no-serve` stops after 4.
//!    Each serving `up` records itself per interface in the state dir (`served/<name>`:
//!    its PID) and serves only the interfaces no live `up` serves: after a hot-plug the
//!    earlier `up` keeps its services and engines, the new one takes what it plugged.
//!
//! `down` (CAP_SYS_ADMIN + CAP_NET_ADMIN) undoes the state dir's journal, newest first,
//! and removes the state dir: exactly what `up` changed, nothing else.
//!
//! Exit codes: 0 done; 1 invalid manifest or refused plan; 2 unreadable input;
//! 3 the namespace could not be changed (apply or teardown failed — the message names
//! the step, the link and the reason).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use netbind_netns::journal::StateDir;
use netbind_netns::{ApplyOptions, apply_with, teardown};
use netbind_plan::{Launcher, NetworkPlan, UsernetAttachment};
use netbind_spec::{ClusterConfig, Document, VmObject, defaults};

use crate::input::{self, display_name};
use crate::{DownArgs, Outcome, UpArgs, output};

/// Where state lives unless `--state-dir` says otherwise.
pub const STATE_ROOT: &str = "/run/netbind";

/// The one VM of FILE, defaulted (not yet validated).
pub(crate) fn the_object(path: &str, cluster: &ClusterConfig) -> anyhow::Result<VmObject> {
    Ok(the_located_object(path, cluster)?.0)
}

/// As [`the_object`], with its file for pointing messages into it. Unknown fields are
/// warned on stderr.
pub(crate) fn the_located_object(
    path: &str,
    cluster: &ClusterConfig,
) -> anyhow::Result<(VmObject, input::Manifest, usize)> {
    let file = display_name(path);
    let manifest = input::manifests(path)?;
    let vms: Vec<(usize, &VmObject)> = (manifest.docs.iter().enumerate())
        .filter_map(|(i, p)| match &p.doc {
            Document::Vm(obj) => Some((i, &**obj)),
            Document::Unsupported { .. } => None,
        })
        .collect();
    match vms.as_slice() {
        [(one, obj)] => {
            let obj = defaults::apply(obj, cluster);
            if let Some(parsed) = manifest.docs.get(*one) {
                let src = manifest.source(parsed);
                output::stderr(&src.warnings(&parsed.unknown, &Default::default()));
            }
            let one = *one;
            Ok((obj, manifest, one))
        }
        [] => bail!("{file}: no VirtualMachine or VirtualMachineInstance found"),
        many => bail!(
            "{file}: {} VMs found; `up`/`down` work on one VM per pod: split the file",
            many.len()
        ),
    }
}

pub(crate) fn state_dir(given: Option<&PathBuf>, obj: &VmObject) -> PathBuf {
    match given {
        Some(d) => d.clone(),
        None => {
            let ns = if obj.namespace.is_empty() {
                "default"
            } else {
                &obj.namespace
            };
            PathBuf::from(STATE_ROOT).join(ns).join(&obj.name)
        }
    }
}

/// The guest devices, for `--domain-out`, as `launcher` is to start the guest.
pub fn domain_json(plan: &NetworkPlan, launcher: Launcher) -> serde_json::Value {
    serde_json::json!({
        "object": plan.object,
        // Whose rendering the engines `up` runs go with: `qemuArgs` or `libvirtXml`.
        "launcher": launcher.as_str(),
        "qemuArgs": plan.qemu_args(),
        "libvirtXml": plan.libvirt_xml(),
        "libvirtDomainXml": plan.libvirt_domain_xml(),
        // Descriptors the launcher opens (read-write) and passes to QEMU under these
        // numbers: `qemuArgs` name them as `fd=N` (macvtaps, `/dev/tap<ifindex>`).
        "fds": plan.passed_fds(),
        // The same per interface, for a launcher that hot-plugs one (QEMU `netdev_add` /
        // `device_add` with these arguments, libvirt `attach-device` with this XML),
        // unplugs one by its alias, or sets a running guest's link (`spec…state: down`:
        // QEMU `set_link ALIAS off`, libvirt `domif-setlink`).
        "interfaces": plan.interfaces.iter().map(|i| serde_json::json!({
            "name": i.name,
            "alias": i.guest.alias,
            "linkState": i.state,
            "qemuArgs": i.guest.qemu_args,
            "libvirtXml": i.guest.libvirt_xml,
        })).collect::<Vec<_>>(),
    })
}

fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("netbind-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A first `up` saves the pod view before it plans; if it ends with nothing recorded
/// (invalid, unplannable, rolled back), the state dir goes again, so a failed `up`
/// leaves nothing behind.
struct ForgetIfNothingRecorded<'a>(&'a StateDir);

impl Drop for ForgetIfNothingRecorded<'_> {
    fn drop(&mut self) {
        if matches!(self.0.journal(), Ok(None)) {
            let _ = self.0.remove();
        }
    }
}

pub fn up(args: &UpArgs) -> anyhow::Result<Outcome> {
    let file = display_name(&args.file);
    let cluster = input::cluster_config(args.cluster_config.as_deref())?;
    let (obj, manifest, doc) = the_located_object(&args.file, &cluster)?;
    let dir = state_dir(args.state_dir.as_ref(), &obj);
    let state = StateDir::new(&dir);
    let recorded = state.launcher().context("reading the recorded launcher")?;
    let launcher = match (args.launcher.map(Launcher::from), recorded.as_deref()) {
        (Some(given), Some(was)) if given.as_str() != was => {
            output::stderr(&format!(
                "{file}: {}: --launcher {}: its guest was set up for --launcher {was} ({}); give that, or run `netbind down` first\n",
                obj.display_name(),
                given.as_str(),
                dir.display()
            ));
            return Ok(Outcome::Unreadable);
        }
        (Some(given), _) => given,
        (None, Some("libvirt")) => Launcher::Libvirt,
        (None, _) => Launcher::Qemu,
    };
    let mut _fresh = None;
    let view = match state.pod_view().context("reading the saved pod view")? {
        // A later run: the saved view, plus what CNI added since (a hot-plugged network).
        Some(saved) => {
            let live = netbind_netns::read_pod_view(&args.netns)
                .with_context(|| format!("--netns {}: cannot read the pod view", args.netns))?;
            let mut v = match state.journal().context("reading the journal")? {
                Some(j) => j.with_hotplugged_links(&saved, &live),
                None => saved.clone(),
            };
            if let Some(path) = &args.network_status {
                v.network_status = Some(input::network_status_file(path)?);
            }
            if v != saved {
                state
                    .save_pod_view(&v)
                    .context("saving the pod view to the state dir")?;
            }
            v
        }
        None => {
            let mut v = netbind_netns::read_pod_view(&args.netns)
                .with_context(|| format!("--netns {}: cannot read the pod view", args.netns))?;
            if let Some(path) = &args.network_status {
                v.network_status = Some(input::network_status_file(path)?);
            }
            state
                .save_pod_view(&v)
                .context("saving the pod view to the state dir")?;
            _fresh = Some(ForgetIfNothingRecorded(&state));
            v
        }
    };
    let report = netbind_spec::validate::validate(&obj, &cluster, Some(&view.addresses()));
    if let Some(parsed) = manifest.docs.get(doc) {
        let src = manifest.source(parsed);
        output::stderr(&src.warnings(&[], &report));
        if !report.is_valid() {
            output::stderr(&src.violations(&obj.display_name(), &report.violations));
        }
    }
    if !report.is_valid() {
        return Ok(Outcome::Invalid);
    }
    let plan = match netbind_plan::plan(&obj, &cluster, &view) {
        Ok(p) => p,
        Err(e) => {
            output::stderr(&format!("{file}: {}: {e}\n", obj.display_name()));
            return Ok(Outcome::Invalid);
        }
    };

    let applied = match apply_with(&plan, &args.netns, &dir, &ApplyOptions::from_env()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(object = %obj.display_name(), "{}: {:#}", obj.display_name(), anyhow::Error::new(e));
            return Ok(Outcome::Failed);
        }
    };
    for note in &applied.notes {
        tracing::info!("note: {note}");
    }
    state
        .save_launcher(launcher.as_str())
        .context("recording the launcher in the state dir")?;
    // Links undone (unplugged, or made anew): whatever served them serves nothing now.
    for name in &applied.plan_changes.relinked {
        state.forget_server(name);
    }
    let changes: Vec<String> = [
        ("unplugged", &applied.plan_changes.unplugged),
        ("plugged", &applied.plan_changes.plugged),
        ("changed", &applied.plan_changes.reworked),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(what, v)| format!("{what} {}", v.join(", ")))
    .collect();
    if !changes.is_empty() {
        let c = &applied.plan_changes;
        tracing::info!(
            plugged = %c.plugged.join(", "), unplugged = %c.unplugged.join(", "),
            changed = %c.reworked.join(", "),
            "the plan changed: {}", changes.join("; ")
        );
    }
    tracing::info!(
        object = %plan.object, netns = %args.netns, steps = applied.steps,
        changed = applied.changed, state = %dir.display(),
        "{} in {}: {} steps, {} changed, {:.1} ms",
        plan.object,
        args.netns,
        applied.steps,
        applied.changed,
        applied.elapsed.as_secs_f64() * 1e3,
    );

    let out = DomainOut {
        path: args.domain_out.as_deref(),
        launcher,
    };
    if args.no_serve {
        write_domain(&plan, out)?;
        return Ok(Outcome::Ok);
    }
    serve(&plan, &args.netns, &dir, out)
}

/// Where `--domain-out` goes, and who starts the guest from it.
#[derive(Debug, Clone, Copy)]
struct DomainOut<'a> {
    path: Option<&'a std::path::Path>,
    launcher: Launcher,
}

/// `--domain-out`, written once the guest can be started: everything it connects to exists.
fn write_domain(plan: &NetworkPlan, out: DomainOut<'_>) -> anyhow::Result<()> {
    if let Some(path) = out.path {
        let text = serde_json::to_string_pretty(&domain_json(plan, out.launcher))? + "\n";
        write_atomically(path, &text)
            .with_context(|| format!("--domain-out {}: cannot write", path.display()))?;
    }
    Ok(())
}

/// Opens the plan's services inside the namespace, drops every capability, serves until
/// SIGTERM/SIGINT.
fn serve(
    plan: &NetworkPlan,
    netns: &str,
    dir: &std::path::Path,
    domain_out: DomainOut<'_>,
) -> anyhow::Result<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the SIGTERM/SIGINT handler")?;
    }
    // After a hot-plug the `up` that served the other interfaces is still running: this
    // one serves what nobody serves (the interfaces it plugged, or all after a restart).
    let state = StateDir::new(dir);
    // Under the state dir's lock, so that two `up`s starting at once do not both take an
    // interface.
    let turn = state.lock().context("locking the state dir")?;
    let (elsewhere, ours): (Vec<_>, Vec<_>) = plan
        .interfaces
        .iter()
        .partition(|i| state.server_of(&i.name).is_some());
    if !elsewhere.is_empty() {
        let names: Vec<&str> = elsewhere.iter().map(|i| i.name.as_str()).collect();
        tracing::info!(
            interfaces = %names.join(", "),
            "{} served by an earlier `netbind up`",
            names.join(", ")
        );
        if ours.is_empty() {
            write_domain(plan, domain_out)?;
            return Ok(Outcome::Ok);
        }
    }
    let mine = NetworkPlan {
        interfaces: ours.into_iter().cloned().collect(),
        ..plan.clone()
    };
    let served: Vec<String> = mine.interfaces.iter().map(|i| i.name.clone()).collect();
    state
        .serve(&served)
        .context("recording this process as the server in the state dir")?;
    drop(turn);
    let result = serve_these(&mine, plan, netns, dir, domain_out, &stop);
    state.unserve(&served);
    result
}

/// Serves the interfaces of `mine` (this process's share of `plan`) until SIGTERM/SIGINT;
/// `--domain-out` gets the whole `plan`.
fn serve_these(
    mine: &NetworkPlan,
    plan: &NetworkPlan,
    netns: &str,
    dir: &std::path::Path,
    domain_out: DomainOut<'_>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Outcome> {
    use netbind_dhcp::runner;
    let launcher = domain_out.launcher;
    let mut engines = start_engines(mine, netns, dir, launcher)?;
    let services = netbind_netns::run_in_netns(netns, || {
        let mut out = Vec::new();
        for iface in &mine.interfaces {
            if let Some(c) = &iface.dhcp4 {
                out.push(runner::open_dhcp4(c)?);
            }
            if let Some(c) = &iface.dhcp6 {
                out.push(runner::open_dhcp6(c)?);
            }
            if let Some(c) = &iface.ra {
                out.push(runner::open_ra(c)?);
            }
        }
        Ok::<_, runner::RunnerError>(out)
    })
    .with_context(|| format!("--netns {netns}: cannot enter to open the DHCP/RA sockets"))?
    .context("cannot open the DHCP/RA sockets")?;
    drop_all_capabilities().context("cannot drop capabilities after opening the sockets")?;
    if let Err(e) =
        wait_for_engines(mine, &mut engines).and_then(|()| write_domain(plan, domain_out))
    {
        stop_engines(&mut engines);
        remove_engine_sockets(mine, launcher);
        return Err(e);
    }

    let names: Vec<String> = services.iter().map(runner::Service::name).collect();
    let services_stop = runner::Stop::new();
    let threads: Vec<_> = services
        .into_iter()
        .map(|s| {
            let stop = Arc::clone(&services_stop);
            std::thread::spawn(move || s.run(stop))
        })
        .collect();
    if names.is_empty() {
        tracing::info!("nothing to serve; waiting for SIGTERM");
    } else {
        tracing::info!(
            services = %names.join(", "),
            "serving {} (no capabilities); SIGTERM to stop",
            names.join(", ")
        );
    }
    // Asleep until a signal: SIGTERM/SIGINT (their handler also sets `stop`, which covers
    // one that came before this), or SIGCHLD when an engine exits.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGCHLD,
    ])
    .context("cannot wait for signals")?;
    // What ended on its own, not because we stopped it: `up` then exits non-zero.
    let mut died: Vec<String> = Vec::new();
    loop {
        for (name, child) in &mut engines {
            if let Ok(Some(status)) = child.try_wait() {
                tracing::error!(interface = %name, %status, "engine of {name} exited ({status}); stopping");
                died.push(format!("engine of {name}"));
                stop.store(true, Ordering::Relaxed);
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let _ = signals.wait().count();
    }
    services_stop.stop();
    stop_engines(&mut engines);
    remove_engine_sockets(mine, launcher);
    for (name, t) in names.iter().zip(threads) {
        match t.join() {
            Ok(totals) => tracing::info!(
                service = %name, received = totals.received, answered = totals.answered,
                dropped = totals.dropped,
                "{name}: received {}, answered {}, dropped {}",
                totals.received, totals.answered, totals.dropped
            ),
            Err(_) => {
                tracing::error!(service = %name, "{name}: stopped unexpectedly");
                died.push(name.clone());
            }
        }
    }
    if !died.is_empty() {
        tracing::error!(
            ended = %died.join(", "),
            "{} ended unexpectedly; the guest lost them",
            died.join(", ")
        );
        return Ok(Outcome::Failed);
    }
    Ok(Outcome::Ok)
}

/// Starts `netbind usernet` for every interface the plan gives a user-mode engine that
/// `launcher` does not start itself (libvirt, a vhost-user NIC's passt), inside the pod's
/// namespace. The plan goes to the state dir for the engines to read.
fn start_engines(
    plan: &NetworkPlan,
    netns: &str,
    dir: &std::path::Path,
    launcher: Launcher,
) -> anyhow::Result<Vec<(String, std::process::Child)>> {
    let (proxied, libvirts): (Vec<_>, Vec<_>) = plan
        .interfaces
        .iter()
        .filter(|i| i.usernet.is_some())
        .partition(|i| i.engine_run_by_up(launcher));
    for i in &libvirts {
        tracing::info!(
            interface = %i.name,
            "{}: vhost-user served by the passt libvirt starts (netbind as passt); no engine here",
            i.name
        );
    }
    if proxied.is_empty() {
        return Ok(Vec::new());
    }
    let plan_path = dir.join(netbind_netns::journal::PLAN);
    write_atomically(&plan_path, &serde_json::to_string(plan)?)
        .with_context(|| format!("cannot write {}", plan_path.display()))?;
    for iface in &proxied {
        if let Some(parent) = iface
            .usernet
            .as_ref()
            .and_then(|u| std::path::Path::new(&u.socket).parent())
        {
            std::fs::create_dir_all(parent).with_context(|| {
                format!("cannot create {} for the engine's socket", parent.display())
            })?;
        }
    }
    let state = StateDir::new(dir);
    let stats_dir = dir.join(netbind_netns::journal::ENGINES);
    std::fs::create_dir_all(&stats_dir)
        .with_context(|| format!("cannot create {}", stats_dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the netbind binary to start engines")?;
    let started = netbind_netns::run_in_netns(netns, || {
        let mut children = Vec::new();
        for iface in &proxied {
            let vhost_user = iface
                .usernet
                .as_ref()
                .is_some_and(|u| u.attachment == UsernetAttachment::VhostUser);
            let child = std::process::Command::new(&exe)
                .arg("usernet")
                .arg("--plan")
                .arg(&plan_path)
                .arg("--interface")
                .arg(&iface.name)
                .args(vhost_user.then_some("--vhost-user"))
                .arg("--stats")
                .arg(state.engine_stats_path(&iface.name))
                .args(crate::log::child_args())
                .stdin(std::process::Stdio::null())
                .spawn();
            match child {
                Ok(c) => children.push((iface.name.clone(), c)),
                Err(e) => return Err((iface.name.clone(), e, children)),
            }
        }
        Ok(children)
    })
    .with_context(|| format!("--netns {netns}: cannot enter to start the user-mode engines"))?;
    match started {
        Ok(children) => {
            for (name, child) in &children {
                tracing::info!(
                    interface = %name, pid = child.id(),
                    "user-mode engine for {name}: pid {}", child.id()
                );
            }
            Ok(children)
        }
        Err((name, e, mut children)) => {
            stop_engines(&mut children);
            Err(anyhow::Error::new(e)
                .context(format!("cannot start the user-mode engine for {name}")))
        }
    }
}

/// Waits until every engine accepts connections on its socket (QEMU does not retry a
/// socket that is not there yet), at most 10 s. A vhost-user engine takes the probe's
/// connection for a QEMU that left at once, and waits for the next.
fn wait_for_engines(
    plan: &NetworkPlan,
    engines: &mut [(String, std::process::Child)],
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (name, child) in engines.iter_mut() {
        let Some(socket) = plan
            .interfaces
            .iter()
            .find(|i| i.name == *name)
            .and_then(|i| i.usernet.as_ref())
        else {
            continue;
        };
        while std::os::unix::net::UnixStream::connect(&socket.socket).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "the user-mode engine for {name} exited ({status}) before listening on {}",
                    socket.socket
                );
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "the user-mode engine for {name} does not listen on {} after 10 s",
                    socket.socket
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// SIGTERM to every engine (they print their counters), SIGKILL after 5 s.
/// The engines' sockets go with them (an engine leaves its socket behind, and one left in
/// the state dir would keep `down` from removing the dir).
fn remove_engine_sockets(plan: &NetworkPlan, launcher: Launcher) {
    let ran = plan
        .interfaces
        .iter()
        .filter(|i| i.engine_run_by_up(launcher));
    for u in ran.filter_map(|i| i.usernet.as_ref()) {
        let _ = std::fs::remove_file(&u.socket);
    }
}

fn stop_engines(engines: &mut [(String, std::process::Child)]) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for (_, child) in engines.iter() {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for (_, child) in engines.iter_mut() {
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// Empties every capability set of the calling thread (and so of threads it spawns
/// later). The bounding set goes first: changing it needs CAP_SETPCAP, which the
/// clearing of the effective set then takes away.
fn drop_all_capabilities() -> Result<(), caps::errors::CapsError> {
    use caps::CapSet;
    for cap in caps::all() {
        // Without CAP_SETPCAP (already unprivileged) the bounding set cannot change; the
        // empty effective/permitted sets below still hold.
        let _ = caps::drop(None, CapSet::Bounding, cap);
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::clear(None, CapSet::Effective)?;
    caps::clear(None, CapSet::Permitted)?;
    Ok(())
}

/// How long `down` waits for a serving `up` to end after SIGTERM.
const SERVER_STOP_WAIT: Duration = Duration::from_secs(15);

/// Sends SIGTERM to each serving `up` and waits until none serves any more; the PID of
/// one still there after `wait`.
fn stop_servers(dir: &std::path::Path, pids: &[u32], wait: Duration) -> Result<(), u32> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for &pid in pids {
        if let Ok(p) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
        }
    }
    let state = StateDir::new(dir);
    let deadline = std::time::Instant::now() + wait;
    loop {
        match state.live_servers().first() {
            None => return Ok(()),
            Some(&pid) if std::time::Instant::now() >= deadline => return Err(pid),
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

pub fn down(args: &DownArgs) -> anyhow::Result<Outcome> {
    let cluster = ClusterConfig::default();
    let obj = the_object(&args.file, &cluster)?;
    let dir = state_dir(args.state_dir.as_ref(), &obj);
    // An `up` still serving this VM would be left running over links that are gone:
    // it stops first (SIGTERM, as its supervisor would), and `down` waits for it.
    let servers = StateDir::new(&dir).live_servers();
    if !servers.is_empty() {
        let pids: Vec<String> = servers.iter().map(u32::to_string).collect();
        tracing::info!(
            object = %obj.display_name(), pids = %pids.join(", "),
            "stopping the `netbind up` serving {} (PID {}) first",
            obj.display_name(),
            pids.join(", ")
        );
        if let Err(left) = stop_servers(&dir, &servers, SERVER_STOP_WAIT) {
            tracing::error!(
                object = %obj.display_name(), pid = left,
                "{}: the `netbind up` with PID {left} did not stop within {} s; nothing was undone (stop it, then run down again)",
                obj.display_name(),
                SERVER_STOP_WAIT.as_secs()
            );
            return Ok(Outcome::Failed);
        }
    }
    match teardown(&args.netns, &dir) {
        Ok(r) if !r.found => {
            tracing::info!(
                state = %dir.display(),
                "nothing recorded in {}; nothing to undo",
                dir.display()
            );
            Ok(Outcome::Ok)
        }
        Ok(r) => {
            tracing::info!(
                object = %obj.display_name(), netns = %args.netns, undone = r.undone,
                "{} in {}: undid {} change(s), {:.1} ms",
                obj.display_name(),
                args.netns,
                r.undone,
                r.elapsed.as_secs_f64() * 1e3
            );
            Ok(Outcome::Ok)
        }
        Err(e) => {
            tracing::error!(object = %obj.display_name(), "{}: {:#}", obj.display_name(), anyhow::Error::new(e));
            Ok(Outcome::Failed)
        }
    }
}

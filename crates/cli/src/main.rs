//! `netbind`: the command line over the pipeline (`manifest → spec → plan`).
//!
//! How it works: clap parses the arguments into [`Command`]; each subcommand reads its
//! inputs through [`input`] (bounded reads, located parse errors), runs the pure stages
//! of `netbind-spec` and `netbind-plan`, and prints through [`output`]. Only this file
//! and the command modules decide exit codes:
//! - 0: every object valid (and planned), or nothing to do;
//! - 1: a manifest is invalid, or planning refused it;
//! - 2: an input could not be read or parsed (manifest, cluster configuration, pod view,
//!   namespace) — and clap's own usage errors;
//! - 3: `up`/`down` could not change the namespace (see [`dataplane`]).
//!
//! What holds: user input never causes a panic or a backtrace; errors reach the user as
//! one message naming the file (and line, column or field path) and what to do. Same input
//! gives byte-identical output: everything printed comes from ordered data.
#![forbid(unsafe_code)]

mod commands;
mod dataplane;
mod input;
mod log;
mod output;
mod passt;
mod status;
mod usernet;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Wires a VM's network interfaces into its Kubernetes pod, from KubeVirt manifests.
#[derive(Debug, Parser)]
#[command(
    name = "netbind",
    version,
    about,
    propagate_version = true,
    after_help = "netbind passt [PASST OPTIONS]  (or netbind run under the name `passt`): the user-mode \
                  engine with passt's command line, for libvirt and QEMU; `netbind passt --help`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: log::LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check VirtualMachine/VirtualMachineInstance manifests the way KubeVirt's admission
    /// does, and more. Exit 0: all valid; 1: any invalid; 2: input unreadable.
    Validate(ValidateArgs),
    /// Show what netbind would build for every interface of every VM in FILE.
    Plan(PlanArgs),
    /// Print the launcher pod annotations (Multus networks, default network, mesh) per VM.
    Annotations(AnnotationsArgs),
    /// List the validation rule ids with their descriptions.
    Rules,
    /// Build the VM's interfaces in the pod's network namespace, then serve DHCP/RA until
    /// SIGTERM. Running it again is a no-op; with a changed manifest it applies the
    /// difference (hot-plug, `state: absent`); `down` undoes it. Needs root.
    Up(UpArgs),
    /// Remove exactly what `up` built in the pod's namespace. Needs root.
    Down(DownArgs),
    /// What `up` recorded for a VM: its interfaces, the changes kept for `down`, which
    /// `netbind up` serves each, and what `up` with FILE would change now (hot-plug, new
    /// ports). Reads the state dir only. Exit 0; 1 when nothing is recorded.
    Status(StatusArgs),
    /// Run the user-mode network engine for one guest NIC: its frames become sockets of
    /// this namespace. Counters on SIGUSR1 and at exit.
    Usernet(usernet::UsernetArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Manifest file with one VirtualMachine or VirtualMachineInstance; `-` reads stdin.
    #[arg(value_name = "FILE")]
    file: String,
    /// The pod's network namespace: a name under /run/netns or an absolute path.
    #[arg(long, value_name = "NS")]
    netns: String,
    /// Cluster configuration (netbind's shape or a `kind: KubeVirt` CR).
    #[arg(long, value_name = "F")]
    cluster_config: Option<String>,
    /// Where `up` records what it changed [default: /run/netbind/<namespace>/<vm>].
    #[arg(long, value_name = "D")]
    state_dir: Option<std::path::PathBuf>,
    /// Write the guest devices here as JSON: {"object", "qemuArgs": [...], "libvirtXml"}.
    #[arg(long, value_name = "FILE")]
    domain_out: Option<std::path::PathBuf>,
    /// The pod's `k8s.v1.cni.cncf.io/network-status` annotation value, from a file.
    #[arg(long, value_name = "F")]
    network_status: Option<String>,
    /// Return after building (and writing --domain-out); serve nothing.
    #[arg(long)]
    no_serve: bool,
    /// Who starts the guest from --domain-out: `qemu` (its qemuArgs; `up` runs every
    /// user-mode engine) or `libvirt` (its libvirtXml, whose vhost-user interfaces
    /// libvirt serves by starting netbind as its `passt`; `up` runs only the engines of
    /// stream sockets). Recorded in the state dir: a later `up` of the VM keeps it, and
    /// refuses another [default: the recorded one, else qemu].
    #[arg(long, value_enum)]
    launcher: Option<LauncherArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LauncherArg {
    Qemu,
    Libvirt,
}

impl From<LauncherArg> for netbind_plan::Launcher {
    fn from(l: LauncherArg) -> Self {
        match l {
            LauncherArg::Qemu => netbind_plan::Launcher::Qemu,
            LauncherArg::Libvirt => netbind_plan::Launcher::Libvirt,
        }
    }
}

#[derive(Debug, clap::Args)]
struct DownArgs {
    /// The manifest `up` was given (names the VM and so the default state dir).
    #[arg(value_name = "FILE")]
    file: String,
    /// The pod's network namespace: a name under /run/netns or an absolute path.
    #[arg(long, value_name = "NS")]
    netns: String,
    /// The state dir `up` used [default: /run/netbind/<namespace>/<vm>].
    #[arg(long, value_name = "D")]
    state_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The VM's manifest: names the default state dir; `status` also says what `up` with
    /// it would change now.
    #[arg(value_name = "FILE")]
    file: String,
    /// Cluster configuration (netbind's shape or a `kind: KubeVirt` CR).
    #[arg(long, value_name = "F")]
    cluster_config: Option<String>,
    /// The state dir `up` used [default: /run/netbind/<namespace>/<vm>].
    #[arg(long, value_name = "D")]
    state_dir: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value_t = StatusOutput::Table)]
    output: StatusOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StatusOutput {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// Manifest files (YAML or JSON, several documents each); `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Cluster configuration (netbind's shape or a `kind: KubeVirt` CR).
    #[arg(long, value_name = "F")]
    cluster_config: Option<String>,
    /// Pod view (YAML/JSON); its addresses are checked against the VM networks.
    #[arg(long, value_name = "F")]
    pod_view: Option<String>,
    #[arg(long, value_enum, default_value_t = ValidateOutput::Human)]
    output: ValidateOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ValidateOutput {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// Manifest file (YAML or JSON, several documents); `-` reads stdin.
    #[arg(value_name = "FILE")]
    file: String,
    /// Cluster configuration (netbind's shape or a `kind: KubeVirt` CR).
    #[arg(long, value_name = "F")]
    cluster_config: Option<String>,
    /// Pod view from a YAML/JSON file.
    #[arg(long, value_name = "F", conflicts_with = "netns")]
    pod_view: Option<String>,
    /// Read the pod view live (read-only) from a network namespace: a name under
    /// /run/netns or an absolute path. Needs root.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// The pod's `k8s.v1.cni.cncf.io/network-status` annotation value, from a file
    /// (finds SR-IOV VFs); replaces the pod view's.
    #[arg(long, value_name = "F")]
    network_status: Option<String>,
    /// `table` for people; `json`/`yaml` (always a list of plans) for machines; `dot`
    /// (graphviz) and `svg`: the wiring diagram, one row per interface from guest NIC to
    /// network (one graph or image for all VMs of the file).
    #[arg(long, value_enum, default_value_t = PlanOutput::Table)]
    output: PlanOutput,
    /// Table only: add each interface's guest device (QEMU arguments, libvirt XML).
    #[arg(long)]
    show_device: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanOutput {
    Table,
    Json,
    Yaml,
    Dot,
    Svg,
}

#[derive(Debug, clap::Args)]
struct AnnotationsArgs {
    /// Manifest file; `-` reads stdin.
    #[arg(value_name = "FILE")]
    file: String,
    /// Cluster configuration (netbind's shape or a `kind: KubeVirt` CR).
    #[arg(long, value_name = "F")]
    cluster_config: Option<String>,
    /// Always a list of `{object, annotations}`.
    #[arg(long, value_enum, default_value_t = MachineOutput::Json)]
    output: MachineOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MachineOutput {
    Json,
    Yaml,
}

/// The process outcome, apart from input errors (which are exit 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok = 0,
    Invalid = 1,
    Unreadable = 2,
    Failed = 3,
}

fn main() -> ExitCode {
    // Under passt's name (libvirt's and QEMU's `passt`), or as `netbind passt`: passt's
    // command line (see `passt.rs`).
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.first().is_some_and(|a| passt::invoked_as_passt(a)) {
        return passt::main(argv);
    }
    if argv
        .first()
        .is_some_and(|a| passt::invoked_as_passt_repair(a))
    {
        return passt::repair_main(argv);
    }
    if argv.get(1).is_some_and(|a| a == "passt-repair") {
        argv.remove(1);
        return passt::repair_main(argv);
    }
    if argv.get(1).is_some_and(|a| a == "passt") {
        argv.remove(1);
        argv[0] = "netbind passt".into();
        return passt::main(argv);
    }
    let cli = Cli::parse();
    let program = match cli.command {
        Command::Up(_) => "netbind up",
        Command::Down(_) => "netbind down",
        Command::Usernet(_) => "netbind usernet",
        _ => "netbind",
    };
    log::init(&cli.log, program);
    let result = match cli.command {
        Command::Validate(args) => commands::validate(&args),
        Command::Plan(args) => commands::plan(&args),
        Command::Annotations(args) => commands::annotations(&args),
        Command::Rules => commands::rules(),
        Command::Up(args) => dataplane::up(&args),
        Command::Down(args) => dataplane::down(&args),
        Command::Status(args) => status::status(&args),
        Command::Usernet(args) => usernet::usernet(&args),
    };
    match result {
        Ok(outcome) => ExitCode::from(outcome as u8),
        Err(err) => {
            if let Some(input) = err.downcast_ref::<input::InputError>() {
                eprintln!("{input}");
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(Outcome::Unreadable as u8)
        }
    }
}

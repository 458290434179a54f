//! Pipeline benchmark: `cargo bench -p netbind-cli --bench pipeline`.
//!
//! Times read + default + validate + plan in process, and the `netbind validate` /
//! `netbind plan` processes end to end, on
//! - one manifest with 1,000 interfaces (1 masquerade on the pod network + 999 bridge on
//!   Multus networks; at most one pod network is allowed),
//! - 10,000 small manifests, as one file of 10,000 documents and as 10,000 separate parses.
//!
//! Each case runs once to warm up, then `REPS` times; the median is reported, with the
//! time per object (per interface for the 1,000-interface manifest). Prints a markdown
//! table for the README, preceded by the date, kernel and CPU so figures can be cited.
//! Before timing, each input is checked to validate cleanly and plan fully, so the
//! benchmark never measures an error path.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netbind_plan::PodView;
use netbind_spec::{ClusterConfig, Document, defaults, read, validate};

const REPS: usize = 9;
const PROCESS_REPS: usize = 5;
const TARGET_MS: f64 = 50.0;

fn big_manifest(interfaces: usize) -> String {
    let mut ifaces = String::from("      - {name: default, masquerade: {}}\n");
    let mut nets = String::from("  - {name: default, pod: {}}\n");
    for i in 1..interfaces {
        ifaces.push_str(&format!("      - {{name: net{i:04}, bridge: {{}}}}\n"));
        nets.push_str(&format!(
            "  - {{name: net{i:04}, multus: {{networkName: nad{i:04}}}}}\n"
        ));
    }
    format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: wide, namespace: bench}}\nspec:\n  domain:\n    devices:\n      interfaces:\n{ifaces}  networks:\n{nets}"
    )
}

/// The same manifest as JSON (netbind reads JSON with serde_json, no YAML parser).
fn big_manifest_json(interfaces: usize) -> String {
    let mut ifaces = vec![serde_json::json!({"name": "default", "masquerade": {}})];
    let mut nets = vec![serde_json::json!({"name": "default", "pod": {}})];
    for i in 1..interfaces {
        ifaces.push(serde_json::json!({"name": format!("net{i:04}"), "bridge": {}}));
        nets.push(serde_json::json!({"name": format!("net{i:04}"), "multus": {"networkName": format!("nad{i:04}")}}));
    }
    serde_json::json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "wide", "namespace": "bench"},
        "spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets},
    })
    .to_string()
}

fn small_manifest(i: usize) -> String {
    format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: vm{i:05}, namespace: bench}}\nspec: {{domain: {{devices: {{interfaces: [{{name: default, masquerade: {{}}}}]}}}}, networks: [{{name: default, pod: {{}}}}]}}\n"
    )
}

/// read + default + validate + plan of every object; returns (objects, interfaces planned).
fn pipeline(bytes: &[u8], cluster: &ClusterConfig) -> (usize, usize) {
    let docs = read::parse_documents(bytes).expect("benchmark input parses");
    let mut objects = 0;
    let mut planned = 0;
    for doc in docs {
        let Document::Vm(obj) = doc else { continue };
        let obj = defaults::apply(&obj, cluster);
        let report = validate::validate(&obj, cluster, None);
        assert!(
            report.is_valid(),
            "benchmark input must be valid: {:?}",
            report.violations.first()
        );
        let plan = netbind_plan::plan(&obj, cluster, &PodView::typical(&obj))
            .expect("benchmark input plans");
        objects += 1;
        planned += plan.interfaces.len();
    }
    (objects, planned)
}

/// The same pipeline, timed per stage (medians): parse, defaults, validate, plan.
fn stages(bytes: &[u8], cluster: &ClusterConfig, reps: usize) -> [Duration; 4] {
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for _ in 0..=reps {
        let t = Instant::now();
        let docs = read::parse_documents(bytes).expect("benchmark input parses");
        samples[0].push(t.elapsed());
        let objs: Vec<_> = docs
            .into_iter()
            .filter_map(|d| match d {
                Document::Vm(obj) => Some(obj),
                Document::Unsupported { .. } => None,
            })
            .collect();
        let t = Instant::now();
        let objs: Vec<_> = objs.iter().map(|o| defaults::apply(o, cluster)).collect();
        samples[1].push(t.elapsed());
        let t = Instant::now();
        for o in &objs {
            std::hint::black_box(validate::validate(o, cluster, None));
        }
        samples[2].push(t.elapsed());
        let t = Instant::now();
        for o in &objs {
            let _ = std::hint::black_box(netbind_plan::plan(o, cluster, &PodView::typical(o)));
        }
        samples[3].push(t.elapsed());
    }
    samples.map(|mut s| {
        s.remove(0);
        median(s)
    })
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    median(
        (0..reps)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn netbind(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_netbind"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run netbind");
    assert_eq!(status.code(), Some(0), "netbind {args:?} must succeed");
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{model}, {cores} cores available")
}

struct Row {
    case: String,
    objects: usize,
    median: Duration,
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write benchmark input");
    path.to_str().expect("utf-8 path").to_string()
}

fn main() {
    let cluster = ClusterConfig::default();
    let dir = tempfile::tempdir().expect("temp dir");

    let wide = big_manifest(1_000);
    let wide_file = write(dir.path(), "wide.yaml", &wide);
    let wide_json = big_manifest_json(1_000);
    let smalls: Vec<String> = (0..10_000).map(small_manifest).collect();
    let many = smalls
        .iter()
        .map(|s| format!("---\n{s}"))
        .collect::<String>();
    let many_file = write(dir.path(), "many.yaml", &many);

    assert_eq!(
        pipeline(wide.as_bytes(), &cluster),
        (1, 1_000),
        "all 1,000 interfaces planned"
    );
    assert_eq!(
        pipeline(many.as_bytes(), &cluster),
        (10_000, 10_000),
        "all 10,000 manifests planned"
    );

    let mut rows = vec![
        Row {
            case: "1,000-interface manifest: read+default+validate+plan (in process)".into(),
            objects: 1_000,
            median: time(REPS, || {
                pipeline(wide.as_bytes(), &cluster);
            }),
        },
        Row {
            case: "1,000-interface manifest as JSON: read+default+validate+plan (in process)"
                .into(),
            objects: 1_000,
            median: time(REPS, || {
                pipeline(wide_json.as_bytes(), &cluster);
            }),
        },
        Row {
            case: "10,000 small manifests, one file of 10,000 documents (in process)".into(),
            objects: 10_000,
            median: time(REPS, || {
                pipeline(many.as_bytes(), &cluster);
            }),
        },
        Row {
            case: "10,000 small manifests, 10,000 separate parses (in process)".into(),
            objects: 10_000,
            median: time(REPS, || {
                for s in &smalls {
                    pipeline(s.as_bytes(), &cluster);
                }
            }),
        },
    ];
    let names = ["parse", "defaults", "validate", "plan"];
    for (input, label, objects) in [
        (&wide, "1,000-interface manifest", 1_000),
        (&many, "10,000-document file", 10_000),
    ] {
        for (name, median) in names.iter().zip(stages(input.as_bytes(), &cluster, REPS)) {
            rows.push(Row {
                case: format!("{label}: {name} only (in process)"),
                objects,
                median,
            });
        }
    }
    rows.push(Row {
        case: "`netbind validate` process, 1,000-interface manifest".into(),
        objects: 1_000,
        median: time(PROCESS_REPS, || netbind(&["validate", &wide_file])),
    });
    rows.push(Row {
        case: "`netbind plan --output json` process, 1,000-interface manifest".into(),
        objects: 1_000,
        median: time(PROCESS_REPS, || {
            netbind(&["plan", "--output", "json", &wide_file])
        }),
    });
    rows.push(Row {
        case: "`netbind validate` process, 10,000-document file".into(),
        objects: 10_000,
        median: time(PROCESS_REPS, || netbind(&["validate", &many_file])),
    });

    println!("netbind pipeline benchmark");
    println!("date: {}", sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    println!("kernel: {}", sh("uname", &["-r"]));
    println!("cpu: {}", cpu_model());
    println!(
        "profile: {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release (cargo bench)"
        }
    );
    println!(
        "median of {REPS} runs in process, {PROCESS_REPS} runs for processes, after one warm-up run\n"
    );
    println!("| case | objects | median ms | per object µs |");
    println!("| --- | ---: | ---: | ---: |");
    for r in &rows {
        let ms = r.median.as_secs_f64() * 1e3;
        let per = r.median.as_secs_f64() * 1e6 / r.objects as f64;
        println!("| {} | {} | {ms:.2} | {per:.2} |", r.case, r.objects);
    }
    let wide_ms = rows[0].median.as_secs_f64() * 1e3;
    let verdict = if wide_ms < TARGET_MS { "met" } else { "MISSED" };
    println!(
        "\ntarget: < {TARGET_MS} ms for the 1,000-interface manifest (read+default+validate+plan): {verdict} ({wide_ms:.2} ms)"
    );
    println!("(objects = interfaces for the 1,000-interface manifest, manifests otherwise)");
}

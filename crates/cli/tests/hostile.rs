//! Hostile input: each case ends in exit 2 with a clear message naming the input, no
//! panic, and the child's peak resident memory under 100 MB.
//!
//! Memory is measured with getrusage(RUSAGE_CHILDREN): the largest peak RSS of any
//! child this test process has waited for. Only netbind children are spawned here, so
//! asserting it after each case bounds every case seen so far. Caveat: Linux counts a
//! child's memory *before* exec too, which for a spawned child is this process's own
//! peak; so this process must stay small itself (no 100 MB buffers: the big inputs are
//! files, streamed), which is checked as well (VmHWM: RUSAGE_SELF would include what
//! cargo had before it spawned us, for the same reason).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use nix::sys::resource::{UsageWho, getrusage};

const RSS_LIMIT_KB: i64 = 100 * 1024;

/// Exit 2, no panic, a short message starting with `file` and saying one of `needles`.
fn assert_refused(out: &std::process::Output, file: &str, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(code(out), 2, "exit code; stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "a panic: {err}"
    );
    assert!(
        err.starts_with(file),
        "the message names the input {file}: {err}"
    );
    let lower = err.to_lowercase();
    assert!(
        needles.iter().any(|n| lower.contains(n)),
        "the message says one of {needles:?}: {err}"
    );
    assert!(
        err.lines().count() <= 5,
        "one short message, not a flood: {err}"
    );
    let max_rss_kb = getrusage(UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage")
        .max_rss();
    assert!(
        max_rss_kb < RSS_LIMIT_KB,
        "peak RSS of netbind {max_rss_kb} KiB >= 100 MB"
    );
    let own_kb = own_peak_rss_kb();
    assert!(
        own_kb < RSS_LIMIT_KB / 2,
        "the test process itself peaked at {own_kb} KiB, which spoils the measurement"
    );
}

/// This process's own peak RSS (VmHWM), without what its parent had before exec.
fn own_peak_rss_kb() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[test]
fn non_utf8_bytes_are_refused_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "latin1.yaml",
        b"kind: VirtualMachineInstance\nmetadata:\n  name: caf\xe9\n",
    );
    let out = run(&["validate", &file]);
    assert_refused(&out, &format!("{file}:3:"), &["not utf-8"]);
}

#[test]
fn a_billion_laughs_alias_bomb_is_refused() {
    let mut text = String::from(
        "kind: VirtualMachineInstance\na0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "lol.yaml", text);
    let out = run(&["validate", &file]);
    assert_refused(&out, &file, &["alias", "anchor"]);
}

/// A 100 MB manifest-looking file, written in small pieces.
fn hundred_mb_file(dir: &std::path::Path) -> String {
    let path = dir.join("huge.yaml");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    f.write_all(b"kind: VirtualMachineInstance\nmetadata:\n  annotations:\n")
        .unwrap();
    let line = b"    k: 0123456789012345678901234567890123456789012345678901234567890123456789\n";
    let mut written = 0;
    while written < 100 * 1024 * 1024 {
        f.write_all(line).unwrap();
        written += line.len();
    }
    f.flush().unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_100_mb_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let file = hundred_mb_file(dir.path());
    let out = run(&["validate", &file]);
    assert_refused(&out, &file, &["larger than"]);
}

#[test]
fn a_100_mb_stream_on_stdin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = hundred_mb_file(dir.path());
    let out = Command::new(NETBIND)
        .args(["validate", "-"])
        .stdin(Stdio::from(std::fs::File::open(&file).unwrap()))
        .output()
        .expect("run netbind");
    assert_refused(&out, "<stdin>", &["larger than"]);
}

#[test]
fn ten_thousand_nested_flow_sequences_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let file = write(dir.path(), "deep.json", &json);
    assert_refused(
        &run(&["validate", &file]),
        &file,
        &["recursion", "depth", "nest"],
    );
    let yaml = format!(
        "kind: VirtualMachineInstance\nspec: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let file = write(dir.path(), "deep-flow.yaml", &yaml);
    assert_refused(
        &run(&["validate", &file]),
        &file,
        &["recursion", "depth", "nest"],
    );
}

#[test]
fn ten_thousand_nested_block_sequences_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "kind: VirtualMachineInstance\nspec:\n  x:\n    {}x\n",
        "- ".repeat(10_000)
    );
    let file = write(dir.path(), "deep-block.yaml", &yaml);
    assert_refused(
        &run(&["validate", &file]),
        &file,
        &["recursion", "depth", "nest"],
    );
}

#[test]
fn deeply_nested_block_mappings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("kind: VirtualMachineInstance\n");
    for i in 0..2_000 {
        yaml.push_str(&" ".repeat(i));
        yaml.push_str("k:\n");
    }
    let file = write(dir.path(), "deep-map.yaml", &yaml);
    assert_refused(
        &run(&["validate", &file]),
        &file,
        &["recursion", "depth", "nest"],
    );
}

#[test]
fn tabs_in_indentation_are_refused_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "tabs.yaml",
        "kind: VirtualMachineInstance\nspec:\n\tdomain: {}\n",
    );
    let out = run(&["validate", &file]);
    assert_refused(&out, &format!("{file}:3:"), &["tab"]);
}

#[test]
fn hostile_input_to_plan_and_annotations_is_refused_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "tabs.yaml",
        "kind: VirtualMachineInstance\nspec:\n\tdomain: {}\n",
    );
    assert_refused(&run(&["plan", &file]), &format!("{file}:3:"), &["tab"]);
    assert_refused(
        &run(&["annotations", &file]),
        &format!("{file}:3:"),
        &["tab"],
    );
}

#[test]
fn a_hostile_cluster_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vm = write(
        dir.path(),
        "vm.yaml",
        "kind: VirtualMachineInstance\nmetadata: {name: a}\n",
    );
    let mut bomb = String::from("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n");
    for i in 1..10 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(",")
        ));
    }
    let cluster = write(dir.path(), "cluster.yaml", bomb);
    assert_refused(
        &run(&["validate", "--cluster-config", &cluster, &vm]),
        &cluster,
        &["alias", "anchor"],
    );
}

//! Shared helpers for the CLI tests: run the built `netbind`, find the test data.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const NETBIND: &str = env!("CARGO_BIN_EXE_netbind");

/// /work/shared/testdata (real manifests from KubeVirt; never edited).
pub fn testdata() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata"
    ));
    assert!(
        dir.is_dir(),
        "{} must exist (the shared/ folder beside the repository)",
        dir.display()
    );
    dir
}

/// The validation helper's invalid-spec corpus.
pub fn invalid_corpus() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/tests/invalid"
    ))
}

pub fn run(args: &[&str]) -> Output {
    Command::new(NETBIND)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run netbind")
}

pub fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(NETBIND)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netbind");
    let mut pipe = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    // The child may stop reading early (input too large); a broken pipe is expected then.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for netbind");
    let _ = writer.join();
    out
}

pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("netbind was killed by a signal: {out:?}"))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `text` to `name` in `dir` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path.to_str().expect("utf-8 temp path").to_string()
}

/// Every YAML file of a testdata folder, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        })
        .collect();
    files.sort();
    files
}

/// Whether a manifest holds a VirtualMachine or VirtualMachineInstance document.
pub fn has_vm(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).expect("read manifest");
    text.lines().any(|l| {
        let l = l.trim();
        l == "kind: VirtualMachine" || l == "kind: VirtualMachineInstance"
    })
}

/// A pod view with one link `eth0` holding `addresses`.
pub fn pod_view_json(addresses: &[&str]) -> String {
    serde_json::json!({"links": [{"name": "eth0", "mtu": 1500, "addresses": addresses}]})
        .to_string()
}

/// Parses stdout as the JSON array of `validate --output json`.
pub fn records(out: &Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not a JSON array ({e}): {}", stdout(out)))
}

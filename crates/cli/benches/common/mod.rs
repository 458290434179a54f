//! What the VM benchmarks share (`vm.rs`, `migrate.rs`).

/// The median of the finite values; NaN when there is none.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The uid and gid engines run as in the benchmarks: KubeVirt's qemu user, as a
/// launcher pod runs them.
pub const POD_USER: &str = "107";

/// A temporary directory the pod's user owns: the engine makes its sockets there,
/// QEMU (root) connects.
pub fn pod_user_dir(prefix: &str) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| e.to_string())?;
    std::process::Command::new("chown")
        .args([
            &format!("{POD_USER}:{POD_USER}"),
            &dir.path().display().to_string(),
        ])
        .status()
        .map_err(|e| e.to_string())?;
    Ok(dir)
}

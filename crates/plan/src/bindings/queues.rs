//! How many queues a guest NIC gets: one per vCPU with `networkInterfaceMultiqueue`,
//! counted as KubeVirt counts vCPUs, capped at the kernel's tap limit. Used by
//! [`super::ctx::Ctx::tap_queues`] (a tap netbind creates) and the guest device (the note
//! when an attachment carries one queue only).

use netbind_spec::VmObject;

/// The most queues a tap device takes (the kernel's `MAX_TAP_QUEUES`); KubeVirt caps there.
pub const MAX_QUEUES: u32 = 256;

/// A Kubernetes CPU quantity rounded up to whole CPUs, as `Quantity.Value()` does:
/// `2`, `"2"`, `"1.5"` → 2, `"500m"` → 1. `None` for what is not a quantity.
fn whole_cpus(q: &serde_json::Value) -> Option<u64> {
    let text = match q {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let (number, scale) = match text.strip_suffix('m') {
        Some(milli) => (milli, 1e-3),
        None => (text.as_str(), 1.0),
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0 && value <= f64::from(u32::MAX))
        .then(|| (value * scale).ceil() as u64)
}

/// How many queues a virtio NIC gets, as KubeVirt counts them: with
/// `networkInterfaceMultiqueue`, one per vCPU — sockets × cores × threads of
/// `domain.cpu`, or, when no topology is given, the CPU limit (else request) as sockets —
/// at most [`MAX_QUEUES`]; otherwise one.
pub fn virtio_queues(obj: &VmObject) -> u32 {
    let domain = &obj.spec.domain;
    if domain.devices.network_interface_multiqueue != Some(true) {
        return 1;
    }
    let count = |v: Option<i64>| {
        v.filter(|n| *n > 0)
            .map_or(1, |n| n.min(i64::from(MAX_QUEUES)) as u64)
    };
    let cpu = domain.cpu.clone().unwrap_or_default();
    let mut sockets = count(cpu.sockets);
    let no_topology = [cpu.sockets, cpu.cores, cpu.threads]
        .iter()
        .all(|v| v.is_none_or(|n| n == 0));
    if no_topology && let Some(r) = &domain.resources {
        let cpus = r.limits.get("cpu").or_else(|| r.requests.get("cpu"));
        if let Some(n) = cpus.and_then(whole_cpus) {
            sockets = n.max(1);
        }
    }
    let vcpus = sockets
        .saturating_mul(count(cpu.cores))
        .saturating_mul(count(cpu.threads));
    vcpus.min(u64::from(MAX_QUEUES)) as u32
}

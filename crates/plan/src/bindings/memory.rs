//! The guest's memory, shared: what a vhost-user NIC needs of the whole VM.
//!
//! A vhost-user back end maps the guest's RAM to reach the NIC's virtqueues, so the RAM
//! must come from memory another process can map. That is one setting per VM, not per
//! NIC, so the plan holds it once ([`SharedMemory`], made when any interface attaches by
//! vhost-user) and renders it both ways: QEMU gets a memfd backend marked shared that
//! becomes the machine's RAM (sized by the guest's memory, which QEMU then takes from
//! the backend), libvirt gets `<memoryBacking>` with a memfd source and shared access,
//! as KubeVirt writes it for `passtBinding` (libvirt sizes it from the domain's own
//! `<memory>`).
//!
//! The guest's memory is read as KubeVirt settles it: `spec.domain.memory.guest`, else
//! `resources.requests.memory`, else `resources.limits.memory` — a Kubernetes quantity
//! (`256Mi`, `1G`, `1.5Gi`, `268435456`, `5e8`), rounded up to whole MiB. Without one
//! (an instancetype gives the memory, or the manifest is partial) the QEMU arguments hold
//! no memory object and a plan note says what the launcher must add; hugepages are not
//! looked at (the memfd is of ordinary pages).

use netbind_spec::VmObject;

use crate::model::SharedMemory;
use crate::render;

const MIB: f64 = 1024.0 * 1024.0;

/// The guest's memory in bytes, from the first of `memory.guest`, the memory request, the
/// memory limit that is given; `Err` with the text of one that is not a quantity.
pub fn guest_memory_bytes(obj: &VmObject) -> Result<Option<u64>, String> {
    let domain = &obj.spec.domain;
    let resources = domain.resources.as_ref();
    let written = domain
        .memory
        .as_ref()
        .and_then(|m| m.guest.as_ref())
        .or_else(|| resources.and_then(|r| r.requests.get("memory")))
        .or_else(|| resources.and_then(|r| r.limits.get("memory")));
    match written {
        None => Ok(None),
        Some(q) => bytes(q).map(Some).ok_or_else(|| q.to_string()),
    }
}

/// A Kubernetes quantity of bytes, rounded up to a whole byte; `None` when it is not one
/// or not positive.
fn bytes(q: &serde_json::Value) -> Option<u64> {
    let text = match q {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let scale: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => MIB,
        "Gi" => MIB * 1024.0,
        "Ti" => MIB * 1024.0 * 1024.0,
        "Pi" => MIB * 1024.0 * 1024.0 * 1024.0,
        "Ei" => MIB * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent => {
            let e: i32 = exponent
                .strip_prefix(['e', 'E'])
                .filter(|e| !e.is_empty())?
                .parse()
                .ok()?;
            10f64.powi(e)
        }
    };
    let value: f64 = number.parse().ok()?;
    let total = (value * scale).ceil();
    (total.is_finite() && total >= 1.0 && total < u64::MAX as f64).then_some(total as u64)
}

/// The shared memory of a VM with a vhost-user NIC, and the note to make when its size is
/// not known.
pub fn shared_memory(obj: &VmObject) -> (SharedMemory, Option<String>) {
    let (mib, unknown) = match guest_memory_bytes(obj) {
        Ok(Some(b)) => (Some(b.div_ceil(1024 * 1024)), None),
        Ok(None) => (None, Some("the manifest gives no memory size".to_string())),
        Err(text) => (
            None,
            Some(format!("the memory size {text} is not a quantity")),
        ),
    };
    let note = unknown.map(|why| {
        format!(
            "vhost-user: the guest's memory must be shared, and {why} \
             (domain.memory.guest, resources.requests.memory): give QEMU \
             `-object memory-backend-memfd,id=mem,size=<memory>,share=on -machine memory-backend=mem`"
        )
    });
    let memory = SharedMemory {
        mib,
        qemu_args: mib
            .map(render::qemu::shared_memory_args)
            .unwrap_or_default(),
        libvirt_xml: render::libvirt::memory_backing_xml(),
    };
    (memory, note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_are_read_in_binary_decimal_and_exponent_forms() {
        assert_eq!(bytes(&json!("256Mi")), Some(256 << 20));
        assert_eq!(bytes(&json!("1.5Gi")), Some(3 << 29));
        assert_eq!(bytes(&json!("1G")), Some(1_000_000_000));
        assert_eq!(bytes(&json!("5e8")), Some(500_000_000));
        assert_eq!(bytes(&json!(268435456)), Some(268435456));
        assert_eq!(bytes(&json!("64Ki")), Some(65536));
    }

    #[test]
    fn what_is_not_a_positive_quantity_is_refused() {
        for q in [
            json!("lots"),
            json!("-1Gi"),
            json!("0"),
            json!("1Xi"),
            json!([1]),
        ] {
            assert_eq!(bytes(&q), None, "{q}");
        }
    }
}

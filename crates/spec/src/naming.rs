//! Pod-side names, as KubeVirt derives them.
//!
//! The primary (pod network or Multus default) link is `eth0`. A secondary Multus
//! network's link is `pod` + the first 11 hex digits of sha256(network name), so it stays
//! the same whatever the order of networks; older pods used `net1`, `net2`… in order.
//! From a pod link name come the in-pod bridge `k6t-<name without "pod">`, the renamed pod
//! link `<stem>-nic` and the tap `tap<name[3..]>` (`tap0` for `eth0`).

use sha2::{Digest, Sha256};

pub const PRIMARY_POD_LINK: &str = "eth0";

/// The hashed pod interface name of a secondary network: `pod` + 11 hex digits.
pub fn secondary_pod_link(network_name: &str) -> String {
    let digest = Sha256::digest(network_name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("pod{}", &hex[..11])
}

/// The legacy ordinal name of the `index`-th secondary network (1-based): `net1`, `net2`…
pub fn legacy_pod_link(index: usize) -> String {
    format!("net{index}")
}

/// The part of a pod link name KubeVirt keeps in derived names (`eth0` → `eth0`,
/// `pod1a2b…` → `1a2b…`).
fn stem(pod_link: &str) -> &str {
    pod_link.strip_prefix("pod").unwrap_or(pod_link)
}

/// In-pod bridge: `k6t-eth0`, `k6t-1a2b…`.
pub fn bridge_name(pod_link: &str) -> String {
    format!("k6t-{}", stem(pod_link))
}

/// Tap the guest NIC uses: `tap0` for the primary link, otherwise `tap` + the link name
/// after its first three characters (`pod1a2b…` → `tap1a2b…`, legacy `net1` → `tap1`).
pub fn tap_name(pod_link: &str) -> String {
    if pod_link == PRIMARY_POD_LINK {
        return "tap0".into();
    }
    match pod_link.get(3..) {
        Some(rest) if !rest.is_empty() => format!("tap{rest}"),
        _ => format!("tap{pod_link}"),
    }
}

/// The pod link after a bridge binding renamed it: `<stem>-nic` (`eth0-nic`, `1a2b…-nic`).
pub fn renamed_pod_link(pod_link: &str) -> String {
    format!("{}-nic", stem(pod_link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondary_name_is_pod_and_eleven_hex_digits() {
        // sha256("blue") = 16477688c0e00699c6cfa4497a3612d7e83c532062b64b250fed8908128ed548
        assert_eq!(secondary_pod_link("blue"), "pod16477688c0e");
    }

    #[test]
    fn derived_names_stay_within_ifnamsiz() {
        let link = secondary_pod_link("a-very-long-network-name");
        for name in [bridge_name(&link), tap_name(&link), renamed_pod_link(&link)] {
            assert!(name.len() <= 15, "{name}");
        }
    }

    #[test]
    fn legacy_secondary_tap_drops_the_net_prefix() {
        assert_eq!(tap_name("net1"), "tap1");
        assert_eq!(tap_name("pod16477688c0e"), "tap16477688c0e");
    }

    #[test]
    fn primary_names() {
        assert_eq!(bridge_name("eth0"), "k6t-eth0");
        assert_eq!(tap_name("eth0"), "tap0");
        assert_eq!(renamed_pod_link("eth0"), "eth0-nic");
    }
}

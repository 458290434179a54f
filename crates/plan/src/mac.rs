//! MAC addresses: normalising what users write, and deriving stable ones.
//!
//! A written `macAddress` may use `:` or `-` and any case; the plan always carries the
//! lower-case colon form. Where netbind has to invent a MAC it derives it from a SHA-256
//! of a stable string (namespace, VM, interface), so the same VM gets the same MAC on
//! every plan, and sets the first byte to `0x02` (locally administered, unicast).

use sha2::{Digest, Sha256};

/// `AA-BB-CC-DD-EE-FF` / `aa:bb:…` → `aa:bb:cc:dd:ee:ff`; `None` unless six hex octets.
pub fn normalize(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(
        parts
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// A locally administered unicast MAC derived from `seed`: `02:xx:xx:xx:xx:xx`.
pub fn derived(seed: &str) -> String {
    derived_with_first(seed, 0x02)
}

/// Like [`derived`], with a chosen first octet.
pub fn derived_with_first(seed: &str, first: u8) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let mut bytes = [first, d[0], d[1], d[2], d[3], d[4]];
    // 02:00:00:00:00:00 is the masquerade bridge's; never hand it out.
    if bytes[1..] == [0, 0, 0, 0, 0] {
        bytes[5] = 1;
    }
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_and_upper_case_become_lower_case_colons() {
        assert_eq!(
            normalize("DE-AD-00-00-BE-AF").as_deref(),
            Some("de:ad:00:00:be:af")
        );
    }

    #[test]
    fn short_or_non_hex_is_rejected() {
        assert_eq!(normalize("de:ad:00:00:be"), None);
        assert_eq!(normalize("de:ad:00:00:be:ag"), None);
        assert_eq!(normalize("dead.0000.beaf"), None);
    }

    #[test]
    fn derived_mac_is_stable_and_locally_administered() {
        // sha256("default/vm/default") begins 2e 78 a6 8c eb.
        assert_eq!(derived("default/vm/default"), "02:2e:78:a6:8c:eb");
        assert_ne!(derived("default/vm/default"), derived("default/vm/other"));
    }
}

//! Namespace sysctls: dotted keys to `/proc/sys` paths, read and written from the
//! namespace thread.
//!
//! How it works: `/proc/sys/net` shows the network namespace of the thread that opens a
//! file under it, so [`read`] and [`write`] must run on the thread that entered the pod's
//! namespace. A key is turned into a path without ever leaving `/proc/sys/net`:
//! per-device keys (`net.ipv4.conf.<dev>.<leaf>`, `net.ipv6.conf.…`, `net.ipv4.neigh.…`,
//! `net.ipv6.neigh.…`) split on their known prefix and on the *last* dot, so a device name
//! that contains dots (`eth0.100`) stays one directory; every other key must be made of
//! `[a-z0-9_-]` words (not starting with `-`: `net.bridge.bridge-nf-call-iptables`) joined by dots, each of which becomes one directory.
//!
//! What holds: a key that does not fit these shapes is refused, never guessed at.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error(
        "sysctl key {key:?} is not a network sysctl netbind can write (net.…, [a-z0-9_-] words)"
    )]
    Key { key: String },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
}

const PER_DEVICE: [&str; 4] = [
    "net.ipv4.conf.",
    "net.ipv6.conf.",
    "net.ipv4.neigh.",
    "net.ipv6.neigh.",
];

fn word(w: &str) -> bool {
    !w.is_empty()
        && !w.starts_with('-')
        && w.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The `/proc/sys` path of a dotted network sysctl key.
pub fn path(key: &str) -> Result<PathBuf, SysctlError> {
    let bad = || SysctlError::Key {
        key: key.to_string(),
    };
    for prefix in PER_DEVICE {
        if let Some(rest) = key.strip_prefix(prefix) {
            let (dev, leaf) = rest.rsplit_once('.').ok_or_else(bad)?;
            let dev_ok = !dev.is_empty()
                && dev.len() <= 15
                && dev != "."
                && dev != ".."
                && !dev
                    .bytes()
                    .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace());
            if !dev_ok || !word(leaf) {
                return Err(bad());
            }
            let dir = prefix.trim_end_matches('.').replace('.', "/");
            return Ok(PathBuf::from(format!("/proc/sys/{dir}/{dev}/{leaf}")));
        }
    }
    let words: Vec<&str> = key.split('.').collect();
    if words.len() < 2 || words[0] != "net" || !words.iter().all(|w| word(w)) {
        return Err(bad());
    }
    Ok(PathBuf::from(format!("/proc/sys/{}", words.join("/"))))
}

/// The current value, trimmed.
pub fn read(key: &str) -> Result<String, SysctlError> {
    let path = path(key)?;
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| SysctlError::Read { path, source })
}

pub fn write(key: &str, value: &str) -> Result<(), SysctlError> {
    let path = path(key)?;
    std::fs::write(&path, value.as_bytes()).map_err(|source| SysctlError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_become_directories() {
        assert_eq!(
            path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path("net.ipv6.conf.all.forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding")
        );
    }

    #[test]
    fn bridge_netfilter_keys_have_dashes() {
        assert_eq!(
            path("net.bridge.bridge-nf-call-iptables").unwrap(),
            PathBuf::from("/proc/sys/net/bridge/bridge-nf-call-iptables")
        );
        assert!(path("net.bridge.-x").is_err());
    }

    #[test]
    fn device_names_keep_their_dots_and_dashes() {
        assert_eq!(
            path("net.ipv4.conf.k6t-eth0.route_localnet").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/k6t-eth0/route_localnet")
        );
        assert_eq!(
            path("net.ipv4.conf.eth0.100.arp_ignore").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/arp_ignore")
        );
    }

    #[test]
    fn keys_that_could_escape_are_refused() {
        for bad in [
            "",
            "kernel.panic",
            "net",
            "net..ipv4",
            "net.ipv4.conf..forwarding",
            "net.ipv4.conf.../x",
            "net.ipv4.conf.a/b.forwarding",
            "net.ipv4.conf.eth0.Forwarding",
            "net.ipv4.conf.eth0",
            "net.ipv4/../../etc",
        ] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
    }
}

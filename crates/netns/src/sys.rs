//! Persistent taps, made through the tun/tap ioctls of `netbind-tun` (the one place
//! that does them, shared with the user-mode engine; no `unsafe` here any more).
//!
//! Linux cannot create a tap through rtnetlink (the `tun` link kind refuses `RTM_NEWLINK`),
//! so a tap is made the way `ip tuntap add` and KubeVirt's `create-tap` make it: open
//! `/dev/net/tun`, `TUNSETIFF` with the name and `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`
//! (plus `IFF_MULTI_QUEUE` for more than one queue), `TUNSETOWNER`/`TUNSETGROUP` so the
//! unprivileged hypervisor may attach, `TUNSETPERSIST` so the device outlives the file,
//! then close. Everything else about the tap (MTU, master, up) goes through netlink.
//!
//! What holds: names are checked (1–15 bytes, no NUL) before `/dev/net/tun` is opened;
//! the descriptor lives across every ioctl and is closed at the end.

use std::fs::OpenOptions;
use std::os::fd::AsFd;

use netbind_tun::{IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TAP, IFF_VNET_HDR};

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap name {name:?} is not 1 to 15 bytes without NUL")]
    Name { name: String },
    #[error("cannot open /dev/net/tun (needs CAP_NET_ADMIN and the tun driver)")]
    Open(#[source] std::io::Error),
    #[error("{op} failed for tap {name}")]
    Ioctl {
        op: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Creates a persistent tap owned by `uid`/`gid` in the calling thread's namespace.
pub fn create_persistent_tap(
    name: &str,
    multi_queue: bool,
    uid: u32,
    gid: u32,
) -> Result<(), TapError> {
    if !netbind_tun::valid_name(name) {
        return Err(TapError::Name {
            name: name.to_string(),
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(TapError::Open)?;
    let fd = file.as_fd();
    let flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | if multi_queue { IFF_MULTI_QUEUE } else { 0 };
    let failed = |op: &'static str| {
        let name = name.to_string();
        move |source| TapError::Ioctl { op, name, source }
    };
    netbind_tun::set_iff(fd, name, flags).map_err(failed("TUNSETIFF"))?;
    netbind_tun::set_owner(fd, uid).map_err(failed("TUNSETOWNER"))?;
    netbind_tun::set_group(fd, gid).map_err(failed("TUNSETGROUP"))?;
    netbind_tun::set_persist(fd, true).map_err(failed("TUNSETPERSIST"))?;
    drop(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_sixteen_bytes_are_refused_before_any_ioctl() {
        assert!(matches!(
            create_persistent_tap("tap-name-too-long", false, 0, 0),
            Err(TapError::Name { .. })
        ));
        assert!(matches!(
            create_persistent_tap("", false, 0, 0),
            Err(TapError::Name { .. })
        ));
    }
}

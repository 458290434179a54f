//! The crate's only `unsafe` code: the tun/tap ioctls that make a persistent tap.
//!
//! Linux cannot create a tap through rtnetlink (the `tun` link kind refuses `RTM_NEWLINK`),
//! so a tap is made the way `ip tuntap add` and KubeVirt's `create-tap` make it: open
//! `/dev/net/tun`, `TUNSETIFF` with the name and `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`
//! (plus `IFF_MULTI_QUEUE` for more than one queue), `TUNSETOWNER`/`TUNSETGROUP` so the
//! unprivileged hypervisor may attach, `TUNSETPERSIST` so the device outlives the file,
//! then close. Everything else about the tap (MTU, master, up) goes through netlink.
//!
//! What holds: every ioctl gets a live descriptor and, for `TUNSETIFF`, a pointer to a
//! properly sized, initialised `struct ifreq` that lives across the call; names are
//! checked (1–15 bytes) before they are copied in, so the kernel always sees a
//! NUL-terminated name.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_MULTI_QUEUE: i16 = 0x0100;
const IFF_VNET_HDR: i16 = 0x4000;
const IFNAMSIZ: usize = 16;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags (a `short`) at the
/// start of the 24-byte union; 40 bytes in all on Linux.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: i16,
    pad: [u8; 22],
}

nix::ioctl_write_ptr_bad!(
    tunsetiff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<std::os::raw::c_int>()),
    IfReq
);
nix::ioctl_write_int!(tunsetpersist, b'T', 203);
nix::ioctl_write_int!(tunsetowner, b'T', 204);
nix::ioctl_write_int!(tunsetgroup, b'T', 206);

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
        source: nix::Error,
    },
}

/// Creates a persistent tap owned by `uid`/`gid` in the calling thread's namespace.
pub fn create_persistent_tap(
    name: &str,
    multi_queue: bool,
    uid: u32,
    gid: u32,
) -> Result<(), TapError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return Err(TapError::Name {
            name: name.to_string(),
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(TapError::Open)?;
    let fd = file.as_raw_fd();
    let mut req = IfReq {
        name: [0; IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | if multi_queue { IFF_MULTI_QUEUE } else { 0 },
        pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    let failed = |op: &'static str| {
        let name = name.to_string();
        move |source| TapError::Ioctl { op, name, source }
    };
    // SAFETY: `fd` is open for the whole call (owned by `file`, dropped at the end of this
    // function); `req` is a live, initialised `struct ifreq` of the kernel's size whose
    // name is NUL-terminated (at most 15 bytes copied into 16 zeroed ones).
    unsafe { tunsetiff(fd, &req) }.map_err(failed("TUNSETIFF"))?;
    // SAFETY: the three calls below pass plain integers by value on the same live `fd`.
    unsafe { tunsetowner(fd, uid as nix::sys::ioctl::ioctl_param_type) }
        .map_err(failed("TUNSETOWNER"))?;
    // SAFETY: as above.
    unsafe { tunsetgroup(fd, gid as nix::sys::ioctl::ioctl_param_type) }
        .map_err(failed("TUNSETGROUP"))?;
    // SAFETY: as above.
    unsafe { tunsetpersist(fd, 1) }.map_err(failed("TUNSETPERSIST"))?;
    drop(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

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

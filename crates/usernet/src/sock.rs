//! Reads from the sockets of flows and listeners into the engine's own buffers.
//!
//! `socket2` reads into uninitialised memory; the engine's buffers are initialised once
//! and reused, so these read into `&mut [u8]` (no per-datagram allocation).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// `recv` into an initialised buffer.
pub fn recv_into(sock: &Socket, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut s: &Socket = sock;
    s.read(buf)
}

/// `recv_from` into an initialised buffer.
pub fn recv_from_into(
    sock: &Socket,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<SocketAddr>)> {
    let fd = std::os::fd::AsFd::as_fd(sock);
    match nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrStorage>(fd.as_raw_fd(), buf) {
        Ok((n, addr)) => {
            let addr = addr.and_then(|a| {
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(SocketAddr::V4((*v4).into()))
                } else {
                    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
                }
            });
            Ok((n, addr))
        }
        Err(e) => Err(std::io::Error::from(e)),
    }
}

//! A connection's kernel state read out and rebuilt in repair mode (privileged: the test
//! switches repair mode itself, as the helper would), on loopback in a namespace of its
//! own.
//!
//! The case a migration's target meets when its buffers are smaller than the source's
//! were: the rebuilt socket takes the send queue in part, and the rest, sent as ordinary
//! data once out of repair mode, still reaches the peer once, in order.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use netbind_testbed::{Netns, require_privileges};
use netbind_usernet::migrate::format::SockState;
use netbind_usernet::migrate::sock;
use netbind_usernet::sys::{self, tcp_repair as r};

fn repair(s: &socket2::Socket, on: bool) {
    sys::tcp_set(s.as_fd(), r::TCP_REPAIR, &[u32::from(on)]).expect("TCP_REPAIR");
}

/// The pattern byte at stream offset `i` (a prime period: a shifted or repeated
/// stretch does not match).
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}
const CHUNK: usize = 251 * 256;

#[test]
fn a_send_queue_larger_than_the_rebuilt_buffer_reaches_the_peer_whole() {
    require_privileges(&["ip"]).unwrap();
    let ns = Netns::new("mig-sock").expect("namespace");
    let path = ns.path();
    std::thread::spawn(move || {
        netbind_testbed::enter(&path).expect("enter the namespace");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let peer_addr = listener.local_addr().unwrap();
        // The peer reads nothing yet: what the source writes stays in its send queue.
        let source: socket2::Socket = TcpStream::connect(peer_addr).unwrap().into();
        let (mut peer, _) = listener.accept().unwrap();
        source.set_send_buffer_size(4 << 20).unwrap();
        source.set_nonblocking(true).unwrap();
        let mut written = 0;
        let chunk: Vec<u8> = (0..CHUNK).map(pattern).collect();
        loop {
            match source.send(&chunk[written % CHUNK..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("source send: {e}"),
            }
        }
        // The kernel may still be moving the first bytes into the peer's queue.
        std::thread::sleep(Duration::from_millis(200));
        repair(&source, true);
        let state = sock::dump(&source).expect("dump");
        drop(source); // in repair mode: nothing reaches the peer
        assert!(
            state.send_queue.len() > 1 << 20,
            "the source's send queue holds {} bytes",
            state.send_queue.len()
        );

        let target = sock::fresh(&state).expect("fresh socket");
        target.set_send_buffer_size(64 << 10).unwrap();
        repair(&target, true);
        let taken = sock::restore(&target, &state).expect("restore");
        assert!(
            taken < state.send_queue.len(),
            "a 64 KiB buffer took the whole {} bytes",
            state.send_queue.len()
        );
        repair(&target, false);
        // The rest as ordinary data, as the relay sends it.
        target.set_nonblocking(false).unwrap();
        let mut target: TcpStream = target.into();
        let rest = state.send_queue[taken..].to_vec();
        let writer = std::thread::spawn(move || target.write_all(&rest).map(|()| target));

        peer.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got = vec![0u8; written];
        peer.read_exact(&mut got)
            .expect("every byte reaches the peer");
        let first_wrong = (0..written).find(|&i| got[i] != pattern(i));
        assert_eq!(first_wrong, None, "{written} bytes, in order");
        let target = writer.join().unwrap().expect("the rest is written");
        drop(target);
        let mut more = [0u8; 1];
        assert_eq!(
            peer.read(&mut more).unwrap(),
            0,
            "nothing more than was written"
        );
    })
    .join()
    .unwrap();
}

/// The peer's data that reaches a source socket after it was made deaf and read out is
/// not acknowledged there: the peer sends it again, and the socket rebuilt from the
/// state gets every byte once, in order — with a socket filter, and with the padded
/// receive queue an engine falls back to where it may not attach one.
fn late_data_reaches_the_rebuilt_socket(may_filter: bool, want: sock::Deaf) {
    require_privileges(&["ip"]).unwrap();
    let ns = Netns::new("mig-deaf").expect("namespace");
    let path = ns.path();
    std::thread::spawn(move || {
        netbind_testbed::enter(&path).expect("enter the namespace");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let source: socket2::Socket = TcpStream::connect(listener.local_addr().unwrap())
            .unwrap()
            .into();
        let (mut peer, _) = listener.accept().unwrap();
        let stream: Vec<u8> = (0..150_000).map(pattern).collect();
        // Early data, unread in the source's receive queue; the late part follows the
        // read-out.
        peer.write_all(&stream[..100_000]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        repair(&source, true);
        let (state, deaf, _) = sock::read_out(&source, may_filter).expect("read out");
        assert_eq!(deaf, want);
        assert_eq!(
            state.recv_queue,
            stream[..100_000],
            "the early data, as queued"
        );
        peer.write_all(&stream[100_000..]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let unacked = sys::socket_ioctl_int(peer.as_fd(), nix::libc::TIOCOUTQ).unwrap();
        assert_eq!(
            unacked, 50_000,
            "the late data is not acknowledged by the source"
        );
        drop(source);

        let target = sock::fresh(&state).expect("fresh socket");
        repair(&target, true);
        sock::restore(&target, &state).expect("restore");
        repair(&target, false);
        target.set_nonblocking(false).unwrap();
        let mut target: TcpStream = target.into();
        target
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got = vec![0u8; stream.len()];
        target
            .read_exact(&mut got)
            .expect("every byte reaches the target");
        assert!(got == stream, "every byte once, in order");
    })
    .join()
    .unwrap();
}

#[test]
fn late_data_is_left_to_the_target_with_a_socket_filter() {
    late_data_reaches_the_rebuilt_socket(true, sock::Deaf::Filter);
}

#[test]
fn late_data_is_left_to_the_target_with_a_padded_receive_queue() {
    late_data_reaches_the_rebuilt_socket(false, sock::Deaf::Padded);
}

/// Whether `s` is in repair mode (choosing a repair queue is refused otherwise).
fn in_repair(s: &socket2::Socket) -> bool {
    sys::tcp_set(s.as_fd(), r::TCP_REPAIR_QUEUE, &[r::NO_QUEUE as u32]).is_ok()
}

/// Upstream passt-repair (2025_05_03, as KubeVirt's virt-handler runs it) switches every
/// socket of batches of any size in any order: it receives each message into the
/// control buffer the previous one left, so a bigger batch after a smaller one would
/// lose descriptors if the engine did not send every batch at one size.
#[test]
fn upstream_passt_repair_switches_every_socket_whatever_the_batch_sizes() {
    require_privileges(&[]).unwrap();
    let helper = std::path::Path::new("/opt/netbind-peers/passt-2025_05_03/passt-repair");
    assert!(
        helper.is_file(),
        "{} is missing: run scripts/install-deps.sh",
        helper.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.sock.repair");
    let mut repair = netbind_usernet::migrate::repair::Repair::new(
        netbind_usernet::run::listen_unix(&path).unwrap(),
        &path,
    );
    let mut child = std::process::Command::new(helper)
        .arg(&path)
        .spawn()
        .expect("passt-repair starts");
    std::thread::sleep(Duration::from_millis(300));
    let socks: Vec<socket2::Socket> = (0..300)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    use netbind_usernet::migrate::repair::Mode;
    for (count, mode) in [
        (3, Mode::On),
        (3, Mode::Off),
        (70, Mode::On),
        (300, Mode::On),
        (1, Mode::Off),
        (300, Mode::Off),
    ] {
        let fds: Vec<_> = socks[..count].iter().map(|s| s.as_fd()).collect();
        repair.set(&fds, mode).expect("the helper answers");
        let want = mode == Mode::On;
        let wrong = socks[..count]
            .iter()
            .filter(|s| in_repair(s) != want)
            .count();
        assert_eq!(wrong, 0, "{count} sockets set to {mode:?}");
    }
    drop(repair);
    let _ = child.wait();
}

/// A connection read out of `source` (in repair mode), closed there and rebuilt on a
/// fresh socket, out of repair mode again: the target.
fn moved(source: socket2::Socket) -> (SockState, TcpStream) {
    repair(&source, true);
    let state = sock::dump(&source).expect("dump");
    drop(source);
    let target = sock::fresh(&state).expect("fresh socket");
    repair(&target, true);
    let taken = sock::restore(&target, &state).expect("restore");
    assert_eq!(taken, state.send_queue.len(), "the send queue taken whole");
    repair(&target, false);
    target.set_nonblocking(false).unwrap();
    (state, target.into())
}

/// A connected pair on loopback in a namespace of the test's own: `(source, peer)`.
fn in_a_namespace(name: &str, test: impl FnOnce(socket2::Socket, TcpStream) + Send + 'static) {
    require_privileges(&["ip"]).unwrap();
    let ns = Netns::new(name).expect("namespace");
    let path = ns.path();
    std::thread::spawn(move || {
        netbind_testbed::enter(&path).expect("enter the namespace");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let source = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        test(source.into(), peer);
    })
    .join()
    .unwrap();
}

/// `TCP_INFO`'s state of `s`.
fn tcp_state(s: &impl AsFd) -> u8 {
    sys::tcp_info_head(s.as_fd()).unwrap().state
}

#[test]
fn a_connection_the_peer_closed_moves_with_its_unread_data_and_goes_on_the_other_way() {
    in_a_namespace("mig-cw", |source, mut peer| {
        peer.write_all(b"bye").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(tcp_state(&source), r::CLOSE_WAIT);
        let (state, mut target) = moved(source);
        assert!(state.peer_fin && !state.our_fin, "{state:?}");
        let mut got = [0u8; 3];
        target.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"bye");
        // The rebuilt socket never reports the end: the relay knows it from the state.
        target.set_nonblocking(true).unwrap();
        assert_eq!(
            target.read(&mut got).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock)
        );
        target.set_nonblocking(false).unwrap();
        target.write_all(b"the reply after the move").unwrap();
        target.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        peer.read_to_string(&mut reply)
            .expect("the reply, then the end, and no reset");
        assert_eq!(reply, "the reply after the move");
    });
}

#[test]
fn a_connection_the_source_closed_moves_and_still_takes_the_peers_data() {
    in_a_namespace("mig-fw2", |source, mut peer| {
        source.shutdown(std::net::Shutdown::Write).unwrap();
        let mut end = [0u8; 1];
        assert_eq!(peer.read(&mut end).unwrap(), 0, "the peer has the FIN");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(tcp_state(&source), r::FIN_WAIT2);
        let (state, mut target) = moved(source);
        assert!(state.our_fin && !state.peer_fin, "{state:?}");
        peer.write_all(b"the peer's late data").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        target
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        target
            .read_to_string(&mut got)
            .expect("the data, then the end");
        assert_eq!(got, "the peer's late data");
        assert_eq!(peer.read(&mut end).unwrap(), 0, "still the end, no reset");
    });
}

#[test]
fn a_closing_connection_moves_with_its_send_queue_then_its_fin() {
    in_a_namespace("mig-fw1", |source, mut peer| {
        // The peer reads nothing yet: the send queue fills and the FIN waits behind it.
        source.set_send_buffer_size(64 << 10).unwrap();
        source.set_nonblocking(true).unwrap();
        let chunk: Vec<u8> = (0..CHUNK).map(pattern).collect();
        let mut written = 0;
        loop {
            match source.send(&chunk[written % CHUNK..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("source send: {e}"),
            }
        }
        source.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(tcp_state(&source), r::FIN_WAIT1);
        let (state, _target) = moved(source);
        assert!(state.our_fin && !state.send_queue.is_empty(), "{state:?}");
        let mut got = Vec::new();
        peer.read_to_end(&mut got)
            .expect("everything, then the end");
        assert_eq!(got.len(), written);
        let first_wrong = (0..written).find(|&i| got[i] != pattern(i));
        assert_eq!(first_wrong, None, "{written} bytes, in order");
    });
}

/// An idle connection (empty queues) is rebuilt with the kernel's own buffers: sizing
/// them would fix them for good, and a bulk transfer after the move would be held to
/// the size set (128 KiB) instead of the kernel growing them.
#[test]
fn an_idle_connection_moves_with_buffers_the_kernel_still_grows() {
    in_a_namespace("mig-idle", |source, mut peer| {
        let (state, mut target) = moved(source);
        assert!(state.send_queue.is_empty() && state.recv_queue.is_empty());
        let reader = std::thread::spawn(move || {
            let mut sink = vec![0u8; 1 << 20];
            let mut n = 0;
            while n < 32 << 20 {
                n += peer.read(&mut sink).expect("the peer reads");
            }
        });
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..32 {
            target.write_all(&chunk).unwrap();
        }
        reader.join().unwrap();
        let sndbuf = socket2::SockRef::from(&target).send_buffer_size().unwrap();
        assert!(
            sndbuf > 128 << 10,
            "the send buffer stayed at {sndbuf} bytes"
        );
    });
}

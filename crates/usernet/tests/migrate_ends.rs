//! Half-closed connections carried by a migration between two engines in one namespace
//! (privileged: the repair helper runs in the test), the guest in memory, the peer on
//! the loopback: whichever side closed first, the rest of the connection goes on from
//! the target — the other side's data, the other FIN, and no reset either way.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::*;
use netbind_testbed::{Netns, require_privileges};
use netbind_usernet::frame::PROTO_TCP;
use netbind_usernet::migrate::format::State;
use netbind_usernet::migrate::repair::{self, Repair};

/// The repair channel of one engine, its helper connected (as virt-handler runs it).
fn repair_channel(dir: &std::path::Path, name: &str) -> Repair {
    let path = dir.join(format!("{name}.repair"));
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let helper_path = path.clone();
    std::thread::spawn(move || repair::helper(&helper_path, Duration::from_secs(10)));
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&listener),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)).unwrap();
    let mut r = Repair::new(listener, &path);
    r.accept();
    r
}

/// Runs `test` in a namespace of its own with a listening peer on the loopback.
fn in_a_namespace(name: &'static str, test: impl FnOnce(TcpListener, u16) + Send + 'static) {
    require_privileges(&["ip"]).unwrap();
    let ns = Netns::new(name).expect("namespace");
    let path = ns.path();
    std::thread::spawn(move || {
        netbind_testbed::enter(&path).expect("enter the namespace");
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        test(l, port);
    })
    .join()
    .unwrap();
}

/// The source's state, through the migration format, taken over by a fresh engine
/// whose guest then runs.
fn migrate(source: &mut Harness, dir: &std::path::Path) -> Harness {
    let mut from = repair_channel(dir, "source");
    let mut to = repair_channel(dir, "target");
    let state = source.engine.export_state(Some(&mut from));
    let state = State::decode(&state.encode()).expect("the state reads back");
    let mut target = Harness::new(config());
    let done = target.engine.import_state(state, Some(&mut to));
    assert_eq!((done.tcp_restored, done.tcp_failed), (1, 0), "{done:?}");
    target.engine.migration_resumed();
    target
}

fn no_reset(h: &mut Harness) {
    h.expect_none("a reset to the guest", Duration::from_millis(300), |g| {
        g.proto == PROTO_TCP && g.tcp().flags & RST != 0
    });
}

#[test]
fn a_peers_close_the_source_had_not_relayed_reaches_the_guest_from_the_target() {
    in_a_namespace("mig-end-a", |l, port| {
        let dir = tempfile::tempdir().unwrap();
        let mut source = Harness::new(config());
        let mut c = connect(&mut source, guest4(41000), gw4(port), 1460, Some(7));
        let (mut peer, _) = l.accept().unwrap();
        // The source's loop does not run again: its socket holds the data and the FIN.
        peer.write_all(b"bye").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut target = migrate(&mut source, dir.path());

        let data = target.expect("the peer's data", |g| {
            g.proto == PROTO_TCP && g.tcp().payload == b"bye"
        });
        assert_eq!(data.tcp().seq, c.rcv_nxt);
        c.rcv_nxt += 3;
        let fin = if data.tcp().flags & FIN != 0 {
            data
        } else {
            target.expect("the peer's FIN", |g| {
                g.proto == PROTO_TCP && g.tcp().flags & FIN != 0
            })
        };
        assert_eq!(
            fin.tcp().seq.wrapping_add(fin.tcp().payload.len() as u32),
            c.rcv_nxt
        );
        c.rcv_nxt += 1;
        let ack = c.seg(ACK, &[]);
        target.send(&ack);
        let reply = c.seg(ACK | PSH | FIN, b"reply from the target");
        target.send(&reply);
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        peer.read_to_string(&mut got)
            .expect("the reply, then the end");
        assert_eq!(got, "reply from the target");
        no_reset(&mut target);
    });
}

#[test]
fn a_connection_whose_fin_the_guest_acknowledged_takes_its_reply_on_the_target() {
    in_a_namespace("mig-end-b", |l, port| {
        let dir = tempfile::tempdir().unwrap();
        let mut source = Harness::new(config());
        let mut c = connect(&mut source, guest4(41001), gw4(port), 1460, Some(7));
        let (mut peer, _) = l.accept().unwrap();
        peer.write_all(b"bye").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        let fin = source.expect("the peer's FIN", |g| {
            g.proto == PROTO_TCP && g.tcp().flags & FIN != 0
        });
        c.rcv_nxt = fin
            .tcp()
            .seq
            .wrapping_add(fin.tcp().payload.len() as u32 + 1);
        let ack = c.seg(ACK, &[]);
        source.send(&ack);
        let mut target = migrate(&mut source, dir.path());

        let reply = c.seg(ACK | PSH | FIN, b"reply after the move");
        target.send(&reply);
        target.expect("the ACK of the guest's FIN", |g| {
            g.proto == PROTO_TCP && g.tcp().ack == c.snd_nxt
        });
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        peer.read_to_string(&mut got)
            .expect("the reply, then the end");
        assert_eq!(got, "reply after the move");
        no_reset(&mut target);
    });
}

#[test]
fn a_connection_the_guest_closed_gets_the_peers_last_data_and_end_from_the_target() {
    in_a_namespace("mig-end-c", |l, port| {
        let dir = tempfile::tempdir().unwrap();
        let mut source = Harness::new(config());
        let mut c = connect(&mut source, guest4(41002), gw4(port), 1460, Some(7));
        let (mut peer, _) = l.accept().unwrap();
        let fin = c.seg(ACK | FIN, &[]);
        source.send(&fin);
        source.expect("the ACK of the guest's FIN", |g| {
            g.proto == PROTO_TCP && g.tcp().ack == c.snd_nxt
        });
        let mut end = [0u8; 1];
        assert_eq!(
            peer.read(&mut end).unwrap(),
            0,
            "the peer has the guest's FIN"
        );
        let mut target = migrate(&mut source, dir.path());

        peer.write_all(b"the peer's last words").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        let data = target.expect("the peer's data", |g| {
            g.proto == PROTO_TCP && g.tcp().payload == b"the peer's last words"
        });
        assert_eq!(data.tcp().seq, c.rcv_nxt);
        target.expect("the peer's FIN", |g| {
            g.proto == PROTO_TCP && g.tcp().flags & FIN != 0
        });
        c.rcv_nxt += 21 + 1;
        let ack = c.seg(ACK, &[]);
        target.send(&ack);
        assert_eq!(
            target.engine.counters().flows_now,
            0,
            "closed both ways, the flow is gone"
        );
        no_reset(&mut target);
        peer.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(peer.read(&mut end).unwrap(), 0, "still the end, no reset");
    });
}

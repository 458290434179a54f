//! Half-closed connections carried by a migration between two engines in one namespace
//! (privileged: the repair helper runs in the test), the guest in memory, the peer on
//! the loopback: whichever side closed first, the rest of the connection goes on from
//! the target — the other side's data, the other FIN, and no reset either way.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
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

/// One connection from the in-memory guest through a source engine to a peer on the
/// loopback, in a namespace of the test's own.
struct Opened {
    dir: tempfile::TempDir,
    source: Harness,
    c: GuestConn,
    peer: TcpStream,
}

/// Runs `test` on an [`Opened`] connection from guest port `port`.
fn opened(name: &'static str, port: u16, test: impl FnOnce(Opened) + Send + 'static) {
    require_privileges(&["ip"]).unwrap();
    let ns = Netns::new(name).expect("namespace");
    let path = ns.path();
    std::thread::spawn(move || {
        netbind_testbed::enter(&path).expect("enter the namespace");
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = gw4(l.local_addr().unwrap().port());
        let mut source = Harness::new(config());
        let c = connect(&mut source, guest4(port), to, 1460, Some(7));
        let (peer, _) = l.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        test(Opened {
            dir,
            source,
            c,
            peer,
        });
    })
    .join()
    .unwrap();
}

impl Opened {
    /// The source's state, through the migration format, taken over by a fresh engine
    /// whose guest then runs.
    fn migrate(&mut self) -> Harness {
        let mut from = repair_channel(self.dir.path(), "source");
        let mut to = repair_channel(self.dir.path(), "target");
        let state = self.source.engine.export_state(Some(&mut from));
        let state = State::decode(&state.encode()).expect("the state reads back");
        let mut target = Harness::new(config());
        let done = target.engine.import_state(state, Some(&mut to));
        assert_eq!((done.tcp_restored, done.tcp_failed), (1, 0), "{done:?}");
        target.engine.migration_resumed(Some(&mut to));
        target
    }

    /// The peer closes its side (`bye` first).
    fn peer_says_bye(&mut self) {
        self.peer.write_all(b"bye").unwrap();
        self.peer.shutdown(Shutdown::Write).unwrap();
    }

    /// The guest's last `words` and its FIN, sent to `engine`: the peer reads them, then
    /// the end.
    fn guest_says_last(&mut self, engine: &mut Harness, words: &str) {
        let last = self.c.seg(ACK | PSH | FIN, words.as_bytes());
        engine.send(&last);
        let mut got = String::new();
        self.peer
            .read_to_string(&mut got)
            .expect("the guest's words, then the end");
        assert_eq!(got, words);
    }
}

/// The peer's FIN the guest gets from `h`, after data or alone; its sequence number
/// right after the data.
fn fin_from(h: &mut Harness, data: Got) -> Got {
    if data.tcp().flags & FIN != 0 {
        return data;
    }
    h.expect("the peer's FIN", |g| {
        g.proto == PROTO_TCP && g.tcp().flags & FIN != 0
    })
}

fn no_reset(h: &mut Harness) {
    h.expect_none("a reset to the guest", Duration::from_millis(300), |g| {
        g.proto == PROTO_TCP && g.tcp().flags & RST != 0
    });
}

#[test]
fn a_peers_close_the_source_had_not_relayed_reaches_the_guest_from_the_target() {
    opened("mig-end-a", 41000, |mut o| {
        // The source's loop does not run again: its socket holds the data and the FIN.
        o.peer_says_bye();
        std::thread::sleep(Duration::from_millis(100));
        let mut target = o.migrate();

        let data = target.expect("the peer's data", |g| {
            g.proto == PROTO_TCP && g.tcp().payload == b"bye"
        });
        assert_eq!(data.tcp().seq, o.c.rcv_nxt);
        o.c.rcv_nxt += 3;
        let fin = fin_from(&mut target, data);
        assert_eq!(
            fin.tcp().seq.wrapping_add(fin.tcp().payload.len() as u32),
            o.c.rcv_nxt
        );
        o.c.rcv_nxt += 1;
        let ack = o.c.seg(ACK, &[]);
        target.send(&ack);
        o.guest_says_last(&mut target, "reply from the target");
        no_reset(&mut target);
    });
}

#[test]
fn a_connection_whose_fin_the_guest_acknowledged_takes_its_reply_on_the_target() {
    opened("mig-end-b", 41001, |mut o| {
        o.peer_says_bye();
        let data = o.source.expect("the peer's data", |g| {
            g.proto == PROTO_TCP && g.tcp().payload == b"bye"
        });
        let fin = fin_from(&mut o.source, data);
        o.c.rcv_nxt = fin
            .tcp()
            .seq
            .wrapping_add(fin.tcp().payload.len() as u32 + 1);
        let ack = o.c.seg(ACK, &[]);
        o.source.send(&ack);
        let mut target = o.migrate();

        o.guest_says_last(&mut target, "reply after the move");
        let acked = o.c.snd_nxt;
        target.expect("the ACK of the guest's FIN", |g| {
            g.proto == PROTO_TCP && g.tcp().ack == acked
        });
        no_reset(&mut target);
    });
}

#[test]
fn a_connection_the_guest_closed_gets_the_peers_last_data_and_end_from_the_target() {
    opened("mig-end-c", 41002, |mut o| {
        let fin = o.c.seg(ACK | FIN, &[]);
        o.source.send(&fin);
        let acked = o.c.snd_nxt;
        o.source.expect("the ACK of the guest's FIN", |g| {
            g.proto == PROTO_TCP && g.tcp().ack == acked
        });
        let mut end = [0u8; 1];
        assert_eq!(
            o.peer.read(&mut end).unwrap(),
            0,
            "the peer has the guest's FIN"
        );
        let mut target = o.migrate();

        let words = b"the peer's last words";
        o.peer.write_all(words).unwrap();
        o.peer.shutdown(Shutdown::Write).unwrap();
        let data = target.expect("the peer's data", |g| {
            g.proto == PROTO_TCP && g.tcp().payload == words
        });
        assert_eq!(data.tcp().seq, o.c.rcv_nxt);
        fin_from(&mut target, data);
        o.c.rcv_nxt += words.len() as u32 + 1;
        let ack = o.c.seg(ACK, &[]);
        target.send(&ack);
        assert_eq!(
            target.engine.counters().flows_now,
            0,
            "closed both ways, the flow is gone"
        );
        no_reset(&mut target);
        o.peer
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(o.peer.read(&mut end).unwrap(), 0, "still the end, no reset");
    });
}

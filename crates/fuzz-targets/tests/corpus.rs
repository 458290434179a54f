//! Replays every file of `fuzz/corpus/<target>/` through the fuzz target's own body (the
//! functions of this crate, which `fuzz/fuzz_targets/*.rs` call): the seeds and every
//! crasher found by fuzzing run on stable in `cargo test --workspace`. A panic names the
//! file; a target without a corpus, or an empty one, fails.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use netbind_fuzz_targets::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn replay(target: &str) {
    let (_, body) = TARGETS.iter().find(|(n, _)| *n == target).unwrap();
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (every fuzz target has a seed corpus)",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: panicked on {failed:#?}");
    eprintln!("{target}: {} corpus files replayed", files.len());
}

#[test]
fn every_target_has_a_corpus_and_a_binary() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/Cargo.toml"),
    )
    .unwrap();
    for (name, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no binary {name}"
        );
        assert!(corpus_dir(name).is_dir(), "no fuzz/corpus/{name}");
    }
}

#[test]
fn manifest_corpus() {
    replay("manifest");
}

#[test]
fn dhcp4_corpus() {
    replay("dhcp4");
}

#[test]
fn dhcp6_corpus() {
    replay("dhcp6");
}

#[test]
fn guest_frame_corpus() {
    replay("guest_frame");
}

#[test]
fn journal_corpus() {
    replay("journal");
}

#[test]
fn migration_state_corpus() {
    replay("migration_state");
}

#[test]
fn vhost_user_queue_corpus() {
    replay("vhost_user_queue");
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir(target).join(name)).unwrap()
}

/// The packet seeds are what real clients send: the servers answer them and the engine
/// replies to them, so fuzzing starts deep in the parsers, not at their first check.
#[test]
fn the_packet_seeds_are_answered() {
    use netbind_fuzz_targets::{dhcp4_server, dhcp6_server, feed, guest_engine};
    for name in [
        "discover",
        "request-selecting",
        "request-init-reboot",
        "request-renewing",
        "inform",
    ] {
        let r = dhcp4_server().handle(&seed("dhcp4", name));
        assert!(r.is_ok(), "dhcp4/{name}: not answered: {r:?}");
    }
    for name in [
        "solicit",
        "solicit-rapid-commit",
        "request",
        "renew",
        "rebind",
        "information-request",
    ] {
        let r = dhcp6_server().handle(None, &seed("dhcp6", name));
        assert!(r.is_ok(), "dhcp6/{name}: not answered: {r:?}");
    }
    for (name, what) in [
        ("arp-request", "arp_replies"),
        ("ipv6-neighbour-solicitation", "ndp_replies"),
        ("ipv6-router-solicitation", "ndp_replies"),
        ("dhcp4-discover", "dhcp_replies"),
        ("dhcp6-solicit", "dhcp_replies"),
        ("ipv4-fragments", "rx_reassembled"),
        ("ipv6-fragments", "rx_reassembled"),
        ("tcp-syn-closed-port", "tcp_opened"),
        ("udp-dns-query", "udp_opened"),
    ] {
        let (_poll, mut engine) = guest_engine();
        feed(&mut engine, &seed("guest_frame", name));
        let c = engine.counters();
        let n = match what {
            "arp_replies" => c.arp_replies,
            "ndp_replies" => c.ndp_replies,
            "dhcp_replies" => c.dhcp_replies,
            "rx_reassembled" => c.rx_reassembled,
            "tcp_opened" => c.tcp_opened,
            _ => c.udp_opened,
        };
        // The input's empty tail is one more (empty, malformed) frame.
        assert!(
            n > 0 && c.rx_malformed <= 1,
            "guest_frame/{name}: {what} = {n}, malformed = {}",
            c.rx_malformed
        );
    }
}

/// The migration seeds follow the documented layout (they are encoded by
/// `fuzz/seeds/make-seeds.py` from the table in `migrate/format.rs`): read, all but the
/// damaged one.
#[test]
fn the_migration_seeds_are_read_and_the_damaged_one_refused() {
    use netbind_usernet::migrate::format::{FormatError, State};
    let two = State::decode(&seed("migration_state", "two-connections")).unwrap();
    assert_eq!(two.tcp.len(), 2);
    assert_eq!(two.tcp[0].sock.recv_queue, b"to the guest");
    assert!(State::decode(&seed("migration_state", "no-connections")).is_ok());
    assert_eq!(
        State::decode(&seed("migration_state", "damaged")),
        Err(FormatError::Checksum)
    );
}

/// The vhost-user seeds reach the data path: the well-formed ones move frames both ways,
/// each hostile one breaks the queues it means to.
#[test]
fn the_vhost_user_seeds_move_frames_or_stop_queues() {
    use netbind_fuzz_targets::vhost_user_run;
    // (seed, frames from the guest, frames to it, queues stopped)
    for (name, from, to, errors) in [
        ("well-formed", 3, 3, 0),
        ("well-formed-no-event-idx-no-protocol", 3, 3, 0),
        ("no-mergeable", 3, 2, 0),
        ("across-regions", 1, 1, 0),
        ("across-a-hole", 0, 0, 2),
        ("loop-and-bad-head", 0, 0, 2),
        ("indirect-in-indirect", 0, 3, 1),
        ("avail-jump", 0, 0, 2),
        ("4-gib-descriptors", 0, 0, 2),
        ("rings-outside", 0, 0, 1),
        ("sizes-refused", 3, 3, 0),
    ] {
        let c = vhost_user_run(&seed("vhost_user_queue", name));
        let got = (c.frames_from_guest, c.frames_to_guest, c.queue_errors);
        assert_eq!(got, (from, to, errors), "vhost_user_queue/{name}: {c:?}");
    }
}

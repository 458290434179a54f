//! Guest TCP through the engine over a lossy link (privileged: fails when not root).
//!
//! A kernel guest (a tap in a namespace, no offloads: frames of at most 1500 bytes) sends
//! and receives 32 MiB over IPv4 and IPv6 through the engine, while a user-space link
//! drops, reorders or duplicates frames in both directions (seeded: a failure repeats).
//! Every transfer must finish with equal SHA-256 on both ends and never go 20 s without
//! progress. The same link between two kernel stacks is the reference; a peer that stops
//! reading for a while fills the engine's socket and the guest must lose nothing.
//! Throughput is printed, not asserted (`benches/lossy.rs` compares it).

mod lab;

use std::time::Duration;

use lab::{Lab, MIB, PathKind, Way};
use netbind_testbed::lossy::Impairment;

const SIZE: u64 = 32 * MIB;

/// Both ways over both families through `path` with `imp` on both directions.
fn both_ways(path: PathKind, imp: Impairment, seed: u64) {
    let lab = Lab::new(path, imp, imp, seed);
    for v6 in [false, true] {
        for way in [Way::GuestToFar, Way::FarToGuest] {
            let family = if v6 { "IPv6" } else { "IPv4" };
            match lab.transfer(way, v6, SIZE, None) {
                Ok(mbs) => eprintln!("{path:?} {family} {way:?} with {imp}: {mbs:.1} MB/s"),
                Err(e) => panic!(
                    "{path:?} {family} {way:?} with {imp} (seed {seed}): {e}; link: {}",
                    lab.link_summary()
                ),
            }
        }
    }
}

#[test]
fn guest_tcp_recovers_from_one_percent_loss() {
    both_ways(PathKind::Engine, Impairment::drop(0.01), 11);
}

#[test]
fn guest_tcp_recovers_from_five_percent_loss() {
    both_ways(PathKind::Engine, Impairment::drop(0.05), 12);
}

#[test]
fn guest_tcp_recovers_from_three_percent_reordering() {
    both_ways(PathKind::Engine, Impairment::reorder(0.03), 13);
}

#[test]
fn guest_tcp_recovers_from_loss_reordering_and_duplicates_together() {
    let all = Impairment {
        drop: 0.01,
        reorder: 0.03,
        duplicate: 0.02,
    };
    both_ways(PathKind::Engine, all, 14);
}

/// The reference: the same link and impairment between two kernel stacks.
#[test]
fn the_kernel_path_through_the_same_link_delivers_at_one_percent_loss() {
    both_ways(PathKind::Kernel, Impairment::drop(0.01), 11);
}

/// A far peer that stops reading for 3 s after 1 MiB: the engine's socket fills, what
/// it refuses is held, and the transfer completes intact once the peer reads again.
#[test]
fn a_peer_that_stops_reading_for_a_while_loses_no_guest_data() {
    let lab = Lab::new(PathKind::Engine, Impairment::NONE, Impairment::NONE, 15);
    for v6 in [false, true] {
        let r = lab.transfer(
            Way::GuestToFar,
            v6,
            SIZE,
            Some((MIB, Duration::from_secs(3))),
        );
        if let Err(e) = r {
            panic!("v6={v6}: {e}; link: {}", lab.link_summary());
        }
    }
}

/// A guest whose stack does not do SACK (`net.ipv4.tcp_sack=0`) learns of a hole only
/// from duplicate ACKs: it must recover all the same, both ways.
#[test]
fn a_guest_without_sack_recovers_from_one_percent_loss() {
    let imp = Impairment::drop(0.01);
    let lab = Lab::new(PathKind::Engine, imp, imp, 16);
    lab.guest_without_sack();
    for way in [Way::GuestToFar, Way::FarToGuest] {
        match lab.transfer(way, false, SIZE, None) {
            Ok(mbs) => eprintln!("Engine IPv4 {way:?} without SACK with {imp}: {mbs:.1} MB/s"),
            Err(e) => panic!("{way:?} without SACK: {e}; link: {}", lab.link_summary()),
        }
    }
}

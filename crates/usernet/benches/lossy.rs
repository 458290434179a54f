//! Throughput of guest TCP over a lossy link: the engine against the kernel path
//! through the same link (`tests/lab`), one 32 MiB transfer per cell and round, median of
//! `LOSSY_ROUNDS` rounds (default 3). Root only (namespaces, taps).
//!
//! `cargo bench -p netbind-usernet --bench lossy` prints a table in MB/s (10^6 bytes/s):
//! per impairment (on both directions of the link) and way (guest → far, far → guest),
//! the engine, the kernel path, and the engine's share of the kernel's.

#[path = "../tests/lab/mod.rs"]
mod lab;

use lab::{Lab, MIB, PathKind, Way};
use netbind_testbed::lossy::Impairment;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("LOSSY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cases = [
        Impairment::NONE,
        Impairment::drop(0.01),
        Impairment::drop(0.05),
        Impairment::reorder(0.03),
        Impairment {
            drop: 0.01,
            reorder: 0.03,
            duplicate: 0.02,
        },
    ];
    println!("| link (both directions) | way | engine MB/s | kernel path MB/s | engine / kernel |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (i, imp) in cases.iter().enumerate() {
        for (way, name) in [
            (Way::GuestToFar, "guest → far"),
            (Way::FarToGuest, "far → guest"),
        ] {
            let mut got = [Vec::new(), Vec::new()];
            for round in 0..rounds {
                for (k, path) in [PathKind::Engine, PathKind::Kernel].into_iter().enumerate() {
                    let seed = 100 + (i * 10 + round) as u64;
                    let lab = Lab::new(path, *imp, *imp, seed);
                    match lab.transfer(way, false, 32 * MIB, None) {
                        Ok(mbs) => got[k].push(mbs),
                        Err(e) => panic!("{path:?} {name} with {imp}: {e}"),
                    }
                }
            }
            let (e, k) = (median(got[0].clone()), median(got[1].clone()));
            println!(
                "| {imp} | {name} | {e:.1} | {k:.1} | {:.0}% |",
                100.0 * e / k
            );
        }
    }
}

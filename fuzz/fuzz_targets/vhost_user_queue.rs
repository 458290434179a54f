//! Any bytes as a hostile guest's virtqueues and memory (the queues' parameters, then the
//! memory; layout in `crates/fuzz-targets/src/vhost_user.rs`), against the vhost-user
//! device set up as QEMU does it: no panic, nothing written outside the guest's regions.
//! The body is `netbind_fuzz_targets::vhost_user_queue`, which
//! `crates/fuzz-targets/tests/corpus.rs` also feeds every file of
//! `fuzz/corpus/vhost_user_queue/` on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netbind_fuzz_targets::vhost_user_queue(data));

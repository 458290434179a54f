//! Any bytes as a migration's state stream on the target: refused with an error, or read,
//! written back unchanged and taken over by an engine — never a panic.
//! The body is `netbind_fuzz_targets::migration_state`, which
//! `crates/fuzz-targets/tests/corpus.rs` also feeds every file of
//! `fuzz/corpus/migration_state/` on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netbind_fuzz_targets::migration_state(data));

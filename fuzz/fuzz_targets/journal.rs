//! Any bytes as a state dir's journal: read, carried over to a plan (`replan`) and used to
//! extend a pod view — an error or a result, never a panic.
//! The body is `netbind_fuzz_targets::journal`, which `crates/fuzz-targets/tests/corpus.rs`
//! also feeds every file of `fuzz/corpus/journal/` on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netbind_fuzz_targets::journal(data));

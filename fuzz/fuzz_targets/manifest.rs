//! Any bytes as a manifest: read, default, validate, plan and render (table, DOT, SVG)
//! must not panic.
//! The body is `netbind_fuzz_targets::manifest`, which `crates/fuzz-targets/tests/corpus.rs`
//! also feeds every file of `fuzz/corpus/manifest/` on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netbind_fuzz_targets::manifest(data));

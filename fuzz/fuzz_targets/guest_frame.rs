//! Any bytes as Ethernet frames from a hostile guest (2-byte big-endian length before
//! each frame): the engine answers, relays or drops them, and never panics.
//! The body is `netbind_fuzz_targets::guest_frame`, which `crates/fuzz-targets/tests/corpus.rs`
//! also feeds every file of `fuzz/corpus/guest_frame/` on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netbind_fuzz_targets::guest_frame(data));

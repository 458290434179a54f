//! Any bytes as a DHCPv4 request from the guest: answered or dropped, never a panic.
//! The body is `netbind_fuzz_targets::dhcp4`, which `crates/fuzz-targets/tests/corpus.rs`
//! also feeds every file of `fuzz/corpus/dhcp4/` on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netbind_fuzz_targets::dhcp4(data));

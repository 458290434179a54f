//! Any bytes as a DHCPv6 client message: answered or dropped, never a panic.
//! The body is `netbind_fuzz_targets::dhcp6`, which `crates/fuzz-targets/tests/corpus.rs`
//! also feeds every file of `fuzz/corpus/dhcp6/` on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netbind_fuzz_targets::dhcp6(data));

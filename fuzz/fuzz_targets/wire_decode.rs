//! Fuzz target `wire_decode`: see `coi_fuzz::wire::check_decode` (fuzz/src) for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coi_fuzz::wire::check_decode(data));

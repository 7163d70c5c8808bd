//! Fuzz target `wire_roundtrip`: see `coi_fuzz::wire::check_roundtrip` (fuzz/src) for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coi_fuzz::wire::check_roundtrip(data));

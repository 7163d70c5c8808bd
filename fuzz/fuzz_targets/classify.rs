//! Fuzz target `classify`: see `coi_fuzz::classify::check` (fuzz/src) for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coi_fuzz::classify::check(data));

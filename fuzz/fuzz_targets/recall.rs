//! Fuzz target `recall`: see `coi_fuzz::recall::check` (fuzz/src) for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coi_fuzz::recall::check(data));

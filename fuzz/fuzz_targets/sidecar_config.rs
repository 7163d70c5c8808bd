//! Fuzz target `sidecar_config`: see `coi_fuzz::config::check` (fuzz/src) for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coi_fuzz::config::check(data));

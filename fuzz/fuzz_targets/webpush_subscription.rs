//! Fuzz target `webpush_subscription`: see `coi_fuzz::webpush::check` (fuzz/src) for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coi_fuzz::webpush::check(data));

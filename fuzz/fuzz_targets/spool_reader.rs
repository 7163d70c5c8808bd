//! Fuzz target `spool_reader`: see `coi_fuzz::spool::check` (fuzz/src) for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coi_fuzz::spool::check(data));

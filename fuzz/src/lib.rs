//! Property checks behind coi's fuzz targets (issue 6, docs/hardening.md).
//!
//! Each module holds one target's `check` function: it takes the fuzzer's
//! input, runs one parser of coi on it and asserts the properties listed in
//! the module docs; a failed assertion or a panic is a crash for libFuzzer.
//! The binaries in `fuzz_targets/` are one-line wrappers, so the same checks
//! also replay the committed corpora and regression inputs in this crate's
//! tests (`cargo test` here; `scripts/fuzz smoke` replays them through the
//! fuzz binaries too).
//!
//! Nothing here is used by the plugin or the sidecar.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
pub mod config;
pub mod recall;
pub mod spool;
pub mod webpush;
pub mod wire;

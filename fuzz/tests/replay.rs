//! Replays the committed inputs of every target without libFuzzer:
//! `fuzz/corpus/<target>/*` (seeds) and `fuzz/regressions/<target>/*` (every
//! crash found so far, kept so it stays fixed). `scripts/fuzz smoke` replays
//! the same files through the instrumented binaries; this test is for a
//! plain `cargo test` in `fuzz/`.

use std::fs;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("read corpus dir").path();
            let data = fs::read(&path).expect("read corpus file");
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(result.is_ok(), "{target}: {} fails", path.display());
            n += 1;
        }
    }
    assert!(n > 0, "{target}: no corpus files");
}

#[test]
fn classify_corpus() {
    replay("classify", coi_fuzz::classify::check);
}

#[test]
fn wire_decode_corpus() {
    replay("wire_decode", coi_fuzz::wire::check_decode);
}

#[test]
fn wire_roundtrip_corpus() {
    replay("wire_roundtrip", coi_fuzz::wire::check_roundtrip);
}

#[test]
fn spool_reader_corpus() {
    replay("spool_reader", coi_fuzz::spool::check);
    coi_fuzz::spool::cleanup();
}

#[test]
fn sidecar_config_corpus() {
    replay("sidecar_config", coi_fuzz::config::check);
}

#[test]
fn webpush_subscription_corpus() {
    replay("webpush_subscription", coi_fuzz::webpush::check);
}

#[test]
fn recall_corpus() {
    replay("recall", coi_fuzz::recall::check);
}

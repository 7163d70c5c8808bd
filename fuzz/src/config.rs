//! Target `sidecar_config`: `coi_sidecar::config::Config::parse` on
//! arbitrary text (as if read from `/etc/coi/sidecar.toml`).
//!
//! No DNS from a fuzzer: the validator resolves the host name of a webhook
//! or Delta Chat proxy URL (the private-address guard) unless
//! `allow_private_addresses` is set. Inputs in which any string value is a
//! URL with a host name are therefore skipped (found by parsing the TOML
//! first with the same `toml` and `url` crates); IP literals and everything
//! else go through. Nor reads of devices: the validator reads key files it
//! is given, so inputs naming an existing path that is not a regular file
//! of at most 64 KiB (`/dev/zero`, a FIFO, a directory) are skipped too.
//!
//! Properties:
//! - `Config::parse` never panics;
//! - an accepted config obeys what the validator promises (docs/sidecar.md):
//!   absolute paths, bounded intervals, unique label-safe endpoint names,
//!   http(s) URLs without credentials, 16..128-byte secrets, known kinds,
//!   bounded timeouts, concurrency and retry schedules;
//! - every rejection has one of the three bounded error types.

use std::path::Path;
use std::time::Duration;

use coi_sidecar::config::{Config, KNOWN_KINDS};

const CONFIG_PATH: &str = "/etc/coi/sidecar.toml";

/// Parses `data` as a sidecar config and checks the properties above.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if must_skip(text) {
        return;
    }
    match Config::parse(Path::new(CONFIG_PATH), text) {
        Ok(config) => check_valid(&config),
        Err(e) => {
            assert!(matches!(e.error_type(), "config_parse" | "config_invalid"), "{e}");
            assert!(!e.is_retriable());
        }
    }
}

/// True if some string in the (valid) TOML is a URL with a DNS host name or
/// names something other than a small regular file.
fn must_skip(text: &str) -> bool {
    fn walk(v: &toml::Value) -> bool {
        match v {
            toml::Value::String(s) => {
                let domain_url = url::Url::parse(s)
                    .map(|u| matches!(u.host(), Some(url::Host::Domain(_))))
                    .unwrap_or(false);
                let odd_file = !s.is_empty()
                    && std::fs::metadata(s).is_ok_and(|m| !m.is_file() || m.len() > 64 * 1024);
                domain_url || odd_file
            }
            toml::Value::Array(a) => a.iter().any(walk),
            toml::Value::Table(t) => t.values().any(walk),
            _ => false,
        }
    }
    match text.parse::<toml::Table>() {
        Ok(table) => table.values().any(walk),
        // Not TOML: Config::parse stops at the same parser.
        Err(_) => false,
    }
}

fn check_valid(c: &Config) {
    assert!(c.spool.dir.is_absolute());
    assert!(c.spool.rotate_bytes >= 64 * 1024);
    assert!((Duration::from_millis(10)..=Duration::from_secs(60)).contains(&c.spool.scan_interval));
    assert!(c.socket.path.is_absolute());
    assert!(c.socket.mode <= 0o777);
    assert!(c.state_dir.is_absolute());
    assert!(c.delivery.shutdown_grace <= Duration::from_secs(300));
    let _ = c.queue_db_path();
    let mut names = std::collections::HashSet::new();
    for e in &c.webhooks {
        assert!(names.insert(e.name.clone()), "duplicate endpoint name {:?}", e.name);
        assert!((1..=64).contains(&e.name.len()));
        assert!(e.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        assert!(matches!(e.url.scheme(), "http" | "https"));
        assert!(e.url.username().is_empty() && e.url.password().is_none());
        assert!(e.url.host().is_some());
        assert!(!e.secrets.is_empty());
        assert!(e.secrets.iter().all(|s| (16..=128).contains(&s.len())));
        assert!(e.kinds.iter().all(|k| KNOWN_KINDS.contains(&k.as_str())));
        assert!((Duration::from_secs(1)..=Duration::from_secs(300)).contains(&e.timeout));
        assert!((1..=256).contains(&e.concurrency));
        assert!((1..=100).contains(&e.retry_schedule.len()));
        assert!(e
            .retry_schedule
            .iter()
            .all(|d| (Duration::from_secs(1)..=Duration::from_secs(7 * 86_400)).contains(d)));
        assert!((Duration::from_secs(1)..=Duration::from_secs(30 * 86_400)).contains(&e.deadline));
        assert_eq!(e.allow_private_addresses, c.delivery.allow_private_addresses);
        // The endpoint filter is total.
        let _ = e.wants("chat", "INBOX");
    }
}

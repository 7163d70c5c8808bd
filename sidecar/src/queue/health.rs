//! Per-endpoint health: what the last attempts of each queue endpoint (a
//! webhook name or `push:<channel>`) came to, kept in the queue database so
//! `coi-sidecar status` can show it with the daemon stopped or restarted.
//!
//! What this module owns: the `endpoint_health` table (schema version 3),
//! one row per endpoint that ever had an outcome:
//! ```text
//! endpoint_health (endpoint PRIMARY KEY, last_success_ms, last_failure_ms,
//!                  consecutive_failures, last_error)
//! ```
//! - [`record_success`]: a delivery was answered (2xx, or a push service's
//!   404/410 for a gone target: the service is reachable and decided);
//!   `consecutive_failures` goes back to 0;
//! - [`record_failure`]: an attempt failed and was rescheduled, or a
//!   delivery was given up (dead letter); `consecutive_failures` + 1 and
//!   the error kept;
//! - [`endpoint_figures`]: read-only, what `status` shows per endpoint:
//!   the health row plus pending, due, retrying and dead-letter counts from
//!   `deliveries` and `dead_letters`.
//!
//! Invariant: the writers run inside the transaction that records the
//! outcome itself (`deliveries::complete_many`, `reschedule`, `bury`,
//! `targets::retire`), so the health row never disagrees with the queue
//! and costs no extra commit. "Consecutive" is per endpoint across all its
//! rows: with several attempts in flight, failures and successes of
//! different events interleave, and one success resets the count.
//!
//! Callers: `queue::deliveries`, `queue::targets` (writes); the `status`
//! command (reads).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::QueueError;

/// Longest `last_error` kept (bytes, cut at a character boundary).
pub const MAX_ERROR_BYTES: usize = 500;

/// Records an answered delivery of `endpoint` at `now_ms`.
pub fn record_success(conn: &Connection, endpoint: &str, now_ms: u64) -> Result<(), QueueError> {
    conn.prepare_cached(
        "INSERT INTO endpoint_health (endpoint, last_success_ms, consecutive_failures)
         VALUES (?1, ?2, 0)
         ON CONFLICT (endpoint) DO UPDATE
            SET last_success_ms = excluded.last_success_ms, consecutive_failures = 0",
    )?
    .execute(params![endpoint, now_ms as i64])?;
    Ok(())
}

/// Records a failed attempt (or a delivery given up) of `endpoint`.
pub fn record_failure(conn: &Connection, endpoint: &str, error: &str, now_ms: u64) -> Result<(), QueueError> {
    conn.prepare_cached(
        "INSERT INTO endpoint_health (endpoint, last_failure_ms, consecutive_failures, last_error)
         VALUES (?1, ?2, 1, ?3)
         ON CONFLICT (endpoint) DO UPDATE
            SET last_failure_ms = excluded.last_failure_ms,
                consecutive_failures = consecutive_failures + 1,
                last_error = excluded.last_error",
    )?
    .execute(params![endpoint, now_ms as i64, cut(error)])?;
    Ok(())
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_ERROR_BYTES {
        return s;
    }
    let mut end = MAX_ERROR_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What the queue knows about one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointFigures {
    /// Deliveries waiting (fresh and retrying).
    pub pending: u64,
    /// Of those, due now (`next_attempt_ms` reached).
    pub due: u64,
    /// Of those, already failed at least once.
    pub retrying: u64,
    /// Most failed attempts of one pending delivery.
    pub max_attempts: u64,
    /// Earliest next attempt of a retrying delivery, unix ms.
    pub next_retry_ms: Option<u64>,
    /// Commit time of the oldest pending delivery's event (unix ms).
    pub oldest_enqueued_ms: Option<u64>,
    /// Dead letters of this endpoint.
    pub dead_letters: u64,
    /// When the newest of them died, unix ms.
    pub last_dead_ms: Option<u64>,
    /// Last answered delivery, unix ms (recorded since schema version 3).
    pub last_success_ms: Option<u64>,
    /// Last failed attempt, unix ms.
    pub last_failure_ms: Option<u64>,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// The last failure's error.
    pub last_error: Option<String>,
}

fn unsigned(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

/// Every endpoint name found in the queue database, with its figures.
/// Works on a read-only connection; a database older than schema version 3
/// simply has no health rows.
pub fn endpoint_figures(conn: &Connection, now_ms: u64) -> Result<BTreeMap<String, EndpointFigures>, QueueError> {
    let mut out: BTreeMap<String, EndpointFigures> = BTreeMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT endpoint, COUNT(*),
                    SUM(next_attempt_ms <= ?1), SUM(attempts > 0), MAX(attempts),
                    MIN(CASE WHEN attempts > 0 THEN next_attempt_ms END), MIN(enqueued_ms)
               FROM deliveries GROUP BY endpoint",
        )?;
        let mut rows = stmt.query(params![now_ms as i64])?;
        while let Some(r) = rows.next()? {
            let f = out.entry(r.get(0)?).or_default();
            f.pending = r.get::<_, i64>(1)?.max(0) as u64;
            f.due = r.get::<_, i64>(2)?.max(0) as u64;
            f.retrying = r.get::<_, i64>(3)?.max(0) as u64;
            f.max_attempts = r.get::<_, i64>(4)?.max(0) as u64;
            f.next_retry_ms = unsigned(r.get(5)?);
            f.oldest_enqueued_ms = unsigned(r.get(6)?);
        }
    }
    {
        let mut stmt = conn.prepare("SELECT endpoint, COUNT(*), MAX(died_ms) FROM dead_letters GROUP BY endpoint")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let f = out.entry(r.get(0)?).or_default();
            f.dead_letters = r.get::<_, i64>(1)?.max(0) as u64;
            f.last_dead_ms = unsigned(r.get(2)?);
        }
    }
    let has_health: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'endpoint_health'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if has_health.is_some() {
        let mut stmt = conn.prepare(
            "SELECT endpoint, last_success_ms, last_failure_ms, consecutive_failures, last_error
               FROM endpoint_health",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let f = out.entry(r.get(0)?).or_default();
            f.last_success_ms = unsigned(r.get(1)?);
            f.last_failure_ms = unsigned(r.get(2)?);
            f.consecutive_failures = r.get::<_, i64>(3)?.max(0) as u64;
            f.last_error = r.get(4)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::queue::deliveries::{bury, complete_many, due, reschedule};
    use crate::queue::ingest::{commit_batch, FileProgress, NewEvent};
    use crate::queue::schema::testing::temp_db;

    fn seed(c: &mut Connection, ids: &[&str], endpoints: &[&str]) -> Vec<i64> {
        let evs: Vec<NewEvent> = ids
            .iter()
            .map(|id| NewEvent {
                event_id: id.to_string(),
                ts_ms: 1,
                payload: "{}".into(),
                endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
                skip_if_dead: None,
            })
            .collect();
        let p = FileProgress { dev: 1, ino: 1, offset: 1, fingerprint: vec![] };
        commit_batch(c, &evs, &p, 1000).unwrap();
        due(c, endpoints[0], u64::MAX / 2, 100, &HashSet::new())
            .unwrap()
            .iter()
            .map(|d| d.event_seq)
            .collect()
    }

    #[test]
    fn failures_count_up_until_a_success_resets_them() {
        let (_d, mut c) = temp_db();
        let seqs = seed(&mut c, &["a", "b", "c"], &["hook"]);
        reschedule(&mut c, "hook", seqs[0], 1, 5000, "HTTP 503").unwrap();
        reschedule(&mut c, "hook", seqs[1], 1, 7000, "timeout").unwrap();
        let f = &endpoint_figures(&c, 2000).unwrap()["hook"];
        assert_eq!(f.consecutive_failures, 2);
        assert_eq!(f.last_error.as_deref(), Some("timeout"));
        assert!(f.last_failure_ms.is_some() && f.last_success_ms.is_none());
        assert_eq!((f.pending, f.retrying, f.due, f.max_attempts), (3, 2, 1, 1));
        assert_eq!(f.next_retry_ms, Some(5000));
        assert_eq!(f.oldest_enqueued_ms, Some(1000));

        complete_many(&mut c, "hook", &[seqs[2]]).unwrap();
        let f = &endpoint_figures(&c, 2000).unwrap()["hook"];
        assert_eq!(f.consecutive_failures, 0, "a success resets the count");
        assert!(f.last_success_ms.is_some());
        assert_eq!(f.last_error.as_deref(), Some("timeout"), "the last error stays for the operator");

        bury(&mut c, "hook", seqs[0], 2, "HTTP 404 (permanent)", 9000).unwrap();
        let f = &endpoint_figures(&c, 2000).unwrap()["hook"];
        assert_eq!(f.consecutive_failures, 1, "a dead letter is a failure");
        assert_eq!((f.dead_letters, f.last_dead_ms, f.last_failure_ms), (1, Some(9000), Some(9000)));
        assert_eq!(f.pending, 1);
    }

    #[test]
    fn endpoints_are_kept_apart_and_long_errors_cut_on_a_char_boundary() {
        let (_d, mut c) = temp_db();
        let seqs = seed(&mut c, &["a"], &["one", "two"]);
        let long = "é".repeat(400);
        reschedule(&mut c, "one", seqs[0], 1, 5000, &long).unwrap();
        complete_many(&mut c, "two", &seqs).unwrap();
        let all = endpoint_figures(&c, 0).unwrap();
        let one = &all["one"];
        let two = &all["two"];
        assert_eq!((one.consecutive_failures, one.pending), (1, 1));
        let kept = one.last_error.as_deref().unwrap();
        assert!(kept.len() <= MAX_ERROR_BYTES && kept.len() >= MAX_ERROR_BYTES - 1 && kept.chars().all(|ch| ch == 'é'));
        assert_eq!((two.consecutive_failures, two.pending), (0, 0));
        assert!(two.last_success_ms.is_some() && two.last_failure_ms.is_none());
    }

    #[test]
    fn a_gone_push_target_counts_as_an_answer_for_its_channel() {
        use crate::queue::ingest::DeadTargetKey;
        use crate::queue::targets::retire;
        let (_d, mut c) = temp_db();
        let seqs = seed(&mut c, &["p1", "p2"], &["push:webpush"]);
        reschedule(&mut c, "push:webpush", seqs[0], 1, 5000, "HTTP 503").unwrap();
        let key = DeadTargetKey {
            target: "webpush",
            user: "alice".into(),
            target_key: "subscription-1".into(),
            fingerprint: "fp".into(),
        };
        retire(&mut c, "push:webpush", seqs[1], &key, &[], 7000).unwrap();
        let f = &endpoint_figures(&c, 8000).unwrap()["push:webpush"];
        assert_eq!((f.last_success_ms, f.consecutive_failures, f.pending), (Some(7000), 0, 1));
    }

    #[test]
    fn a_database_without_the_health_table_still_has_figures() {
        let (_d, mut c) = temp_db();
        let seqs = seed(&mut c, &["a"], &["hook"]);
        reschedule(&mut c, "hook", seqs[0], 1, 5000, "x").unwrap();
        c.execute_batch("DROP TABLE endpoint_health").unwrap();
        let f = &endpoint_figures(&c, 0).unwrap()["hook"];
        assert_eq!((f.pending, f.retrying, f.consecutive_failures), (1, 1, 0));
        assert_eq!(f.last_failure_ms, None);
    }
}

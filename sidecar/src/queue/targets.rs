//! Dead push targets: Web Push subscriptions and Delta Chat tokens that a
//! push service answered 404/410 for.
//!
//! What this module owns: the `dead_targets` table (schema version 2).
//! - [`retire`]: one transaction that ends a push job whose target is gone:
//!   its delivery row is deleted (it is done, not a dead letter), the
//!   target is recorded, and, the first time only, the METADATA clean-up
//!   jobs are queued (when doveadm is configured; otherwise the record is
//!   the only memory of the death).
//! - [`touch_if_dead`]: intake's check before queueing a push job; a known
//!   dead target is skipped and its `last_seen_ms` moved, so rows of targets
//!   the plugin still sends (no doveadm, or the clean-up not done yet) stay.
//! - [`prune`]: rows not seen for a while are dropped (the user removed the
//!   target, or the clean-up worked); if the target is still sent after
//!   all, the next 404/410 records it again, at the cost of one push.
//!
//! Invariant: a target is identified by (kind, user, key, fingerprint of
//! endpoint or token), so a subscription id reused with a new endpoint is
//! a different, live target.
//!
//! Callers: `queue::ingest` (touch), the push sinks through
//! `queue::store` (retire), `intake::pump` at start (prune).

use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::ingest::{DeadTargetKey, NewEvent};
use super::QueueError;

/// Rows unseen this long are pruned.
pub const KEEP_UNSEEN_MS: u64 = 30 * 86_400 * 1000;

/// Whether the target is recorded as dead; if so its `last_seen_ms` is set
/// to `now_ms` (inside the intake's transaction).
pub fn touch_if_dead(tx: &Transaction<'_>, key: &DeadTargetKey, now_ms: u64) -> Result<bool, QueueError> {
    let n = tx
        .prepare_cached(
            "UPDATE dead_targets SET last_seen_ms = ?5
              WHERE target = ?1 AND user = ?2 AND target_key = ?3 AND fingerprint = ?4",
        )?
        .execute(params![key.target, key.user, key.target_key, key.fingerprint, now_ms as i64])?;
    Ok(n > 0)
}

/// What [`retire`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retired {
    /// The target was not recorded before (first 404/410 for it).
    pub newly_dead: bool,
    /// Clean-up jobs queued (0 when already dead or doveadm is not set up).
    pub unset_jobs: usize,
}

/// Ends the job `(endpoint, seq)` whose target is gone, records the target
/// and, if it was not known dead yet, queues `unset` (see the module docs).
pub fn retire(
    conn: &mut Connection,
    endpoint: &str,
    seq: i64,
    key: &DeadTargetKey,
    unset: &[NewEvent],
    now_ms: u64,
) -> Result<Retired, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached("DELETE FROM deliveries WHERE endpoint = ?1 AND event_seq = ?2")?
        .execute(params![endpoint, seq])?;
    tx.prepare_cached(
        "DELETE FROM events WHERE seq = ?1
            AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1)
            AND NOT EXISTS (SELECT 1 FROM dead_letters WHERE event_seq = ?1)",
    )?
    .execute(params![seq])?;
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO dead_targets (target, user, target_key, fingerprint, died_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )?
        .execute(params![key.target, key.user, key.target_key, key.fingerprint, now_ms as i64])?;
    let mut done = Retired {
        newly_dead: inserted > 0,
        unset_jobs: 0,
    };
    if done.newly_dead {
        for ev in unset {
            let added = tx
                .prepare_cached("INSERT OR IGNORE INTO events (event_id, ts_ms, payload) VALUES (?1, ?2, ?3)")?
                .execute(params![ev.event_id, ev.ts_ms as i64, ev.payload])?;
            if added == 0 {
                continue;
            }
            let event_seq = tx.last_insert_rowid();
            for endpoint in &ev.endpoints {
                done.unset_jobs += tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO deliveries (endpoint, event_seq, attempts, next_attempt_ms, enqueued_ms)
                         VALUES (?1, ?2, 0, ?3, ?3)",
                    )?
                    .execute(params![endpoint, event_seq, now_ms as i64])?;
            }
        }
    }
    // The push service answered and decided: the channel itself is healthy.
    super::health::record_success(&tx, endpoint, now_ms)?;
    tx.commit()?;
    Ok(done)
}

/// Drops rows not seen since `now_ms - KEEP_UNSEEN_MS`; returns how many.
pub fn prune(conn: &Connection, now_ms: u64) -> Result<usize, QueueError> {
    let cutoff = now_ms.saturating_sub(KEEP_UNSEEN_MS) as i64;
    Ok(conn.execute("DELETE FROM dead_targets WHERE last_seen_ms < ?1", params![cutoff])?)
}

/// Rows in the table (for tests and the operator's curiosity).
pub fn count(conn: &Connection) -> Result<u64, QueueError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM dead_targets", [], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::deliveries::due;
    use crate::queue::ingest::{commit_batch, FileProgress};
    use crate::queue::schema::testing::temp_db;

    fn key(fp: &str) -> DeadTargetKey {
        DeadTargetKey {
            target: "webpush",
            user: "alice".into(),
            target_key: "subscription-1".into(),
            fingerprint: fp.into(),
        }
    }

    fn job(id: &str, endpoint: &str, dead: Option<DeadTargetKey>) -> NewEvent {
        NewEvent {
            event_id: id.into(),
            ts_ms: 1,
            payload: "{}".into(),
            endpoints: vec![endpoint.into()],
            skip_if_dead: dead,
        }
    }

    fn progress() -> FileProgress {
        FileProgress { dev: 1, ino: 1, offset: 0, fingerprint: vec![] }
    }

    fn rows(c: &Connection, table: &str) -> i64 {
        c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn retire_deletes_the_job_records_the_target_and_queues_cleanup_once() {
        let (_d, mut c) = temp_db();
        let jobs = [job("p1/wp/s", "push:webpush", Some(key("fp"))), job("p2/wp/s", "push:webpush", Some(key("fp")))];
        commit_batch(&mut c, &jobs, &progress(), 10).unwrap();
        let due_rows = due(&c, "push:webpush", 10, 10, &Default::default()).unwrap();
        let unset = [job("p1/wp/s/unset/0", "push:metadata-unset", None)];
        let r = retire(&mut c, "push:webpush", due_rows[0].event_seq, &key("fp"), &unset, 20).unwrap();
        assert_eq!(r, Retired { newly_dead: true, unset_jobs: 1 });
        assert_eq!(rows(&c, "dead_letters"), 0, "gone is done, not dead-lettered");
        assert_eq!(due(&c, "push:metadata-unset", 20, 10, &Default::default()).unwrap().len(), 1);
        // The second queued push to the same target also gets 410: no second clean-up.
        let unset2 = [job("p2/wp/s/unset/0", "push:metadata-unset", None)];
        let r = retire(&mut c, "push:webpush", due_rows[1].event_seq, &key("fp"), &unset2, 30).unwrap();
        assert_eq!(r, Retired { newly_dead: false, unset_jobs: 0 });
        assert_eq!(rows(&c, "deliveries"), 1, "only the clean-up is pending");
        assert_eq!(rows(&c, "events"), 1);
    }

    #[test]
    fn intake_skips_known_dead_targets_but_not_a_new_endpoint_under_the_same_id() {
        let (_d, mut c) = temp_db();
        commit_batch(&mut c, &[job("p1", "push:webpush", Some(key("fp")))], &progress(), 10).unwrap();
        let seq = due(&c, "push:webpush", 10, 1, &Default::default()).unwrap()[0].event_seq;
        retire(&mut c, "push:webpush", seq, &key("fp"), &[], 11).unwrap();
        let done = commit_batch(
            &mut c,
            &[job("p2", "push:webpush", Some(key("fp"))), job("p3", "push:webpush", Some(key("other-endpoint")))],
            &progress(),
            50,
        )
        .unwrap();
        assert_eq!(done.skipped_dead, vec![("push:webpush".to_string(), "webpush")]);
        assert_eq!(done.deliveries, 1);
        let seen: i64 = c.query_row("SELECT last_seen_ms FROM dead_targets", [], |r| r.get(0)).unwrap();
        assert_eq!(seen, 50);
        assert_eq!(prune(&c, 50 + KEEP_UNSEEN_MS).unwrap(), 0);
        assert_eq!(prune(&c, 51 + KEEP_UNSEEN_MS).unwrap(), 1);
        assert_eq!(count(&c).unwrap(), 0);
    }
}

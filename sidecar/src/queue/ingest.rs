//! Ingest: committing spool records to the queue together with the offset
//! that acknowledges them, and the offset bookkeeping itself.
//!
//! Invariant: [`commit_batch`] is one transaction: events, their deliveries
//! and the new offset of the file become durable together or not at all
//! (see the acknowledge rules in the `queue` module docs). Event ids are
//! unique: a record seen twice (a re-read after a crash between unlinking a
//! rotated file and forgetting its offset, or a plugin bug) does not enqueue
//! a second delivery.
//!
//! Callers: `intake::pump` (on the intake thread's own connection).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::QueueError;

/// An event to enqueue (a message event for webhooks, or one push job),
/// with the endpoints that want it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event id (webhook-id; for push jobs see `push::jobs`).
    pub event_id: String,
    /// Delivery commit time, unix ms.
    pub ts_ms: u64,
    /// The `MessageEventV1` JSON, or a `push::jobs::Job`.
    pub payload: String,
    /// Names of the endpoints (or push channels) that get a delivery.
    pub endpoints: Vec<String>,
    /// A push job whose target a push service already declared gone is
    /// not queued (see `queue::targets`).
    pub skip_if_dead: Option<DeadTargetKey>,
}

/// Identifies one push target in the `dead_targets` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadTargetKey {
    /// What kind of target (a bounded label the caller chooses, e.g.
    /// `webpush`, `deltachat`): the queue stores it, never interprets it.
    pub target: &'static str,
    /// Dovecot user.
    pub user: String,
    /// Subscription id or token key.
    pub target_key: String,
    /// Hex SHA-256 of the endpoint or token.
    pub fingerprint: String,
}

/// Identity of a spool file and how far it has been consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProgress {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Bytes consumed from the start.
    pub offset: u64,
    /// The first bytes of the file (see the module docs of `queue`).
    pub fingerprint: Vec<u8>,
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Events newly inserted.
    pub events: usize,
    /// Deliveries newly inserted.
    pub deliveries: usize,
    /// Events skipped as duplicates of an id already queued.
    pub duplicates: usize,
    /// Push jobs not queued because their target is known dead: the
    /// endpoint each was for and its target kind.
    pub skipped_dead: Vec<(String, &'static str)>,
}

// SQLite integers are signed 64-bit; device and inode numbers are stored
// bit-for-bit.
fn i(v: u64) -> i64 {
    v as i64
}

/// Inserts `events` (with their deliveries, due at `now_ms`) and records
/// `progress`, in one transaction.
pub fn commit_batch(
    conn: &mut Connection,
    events: &[NewEvent],
    progress: &FileProgress,
    now_ms: u64,
) -> Result<Committed, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut done = Committed::default();
    {
        let mut insert_event = tx.prepare_cached(
            "INSERT OR IGNORE INTO events (event_id, ts_ms, payload) VALUES (?1, ?2, ?3)",
        )?;
        let mut insert_delivery = tx.prepare_cached(
            "INSERT OR IGNORE INTO deliveries (endpoint, event_seq, attempts, next_attempt_ms, enqueued_ms)
             VALUES (?1, ?2, 0, ?3, ?3)",
        )?;
        for ev in events {
            if let Some(dead) = &ev.skip_if_dead {
                if super::targets::touch_if_dead(&tx, dead, now_ms)? {
                    let endpoint = ev.endpoints.first().cloned().unwrap_or_default();
                    done.skipped_dead.push((endpoint, dead.target));
                    continue;
                }
            }
            if insert_event.execute(params![ev.event_id, i(ev.ts_ms), ev.payload])? == 0 {
                done.duplicates += 1;
                continue;
            }
            done.events += 1;
            let seq = tx.last_insert_rowid();
            for endpoint in &ev.endpoints {
                done.deliveries += insert_delivery.execute(params![endpoint, seq, i(now_ms)])?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO spool_offsets (dev, ino, offset, fingerprint) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (dev, ino) DO UPDATE SET offset = excluded.offset, fingerprint = excluded.fingerprint",
        )?
        .execute(params![
            i(progress.dev),
            i(progress.ino),
            i(progress.offset),
            progress.fingerprint
        ])?;
    }
    tx.commit()?;
    Ok(done)
}

/// The stored offset and fingerprint of a file, if any.
pub fn load_offset(
    conn: &Connection,
    dev: u64,
    ino: u64,
) -> Result<Option<(u64, Vec<u8>)>, QueueError> {
    Ok(conn
        .prepare_cached("SELECT offset, fingerprint FROM spool_offsets WHERE dev = ?1 AND ino = ?2")?
        .query_row(params![i(dev), i(ino)], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
        })
        .optional()?)
}

/// Forgets the offset of a file that was drained and deleted.
pub fn forget_offset(conn: &Connection, dev: u64, ino: u64) -> Result<(), QueueError> {
    conn.execute(
        "DELETE FROM spool_offsets WHERE dev = ?1 AND ino = ?2",
        params![i(dev), i(ino)],
    )?;
    Ok(())
}

/// Deletes offset rows of files that no longer exist (`live` = the
/// (dev, ino) of every spool file present now). Returns how many.
pub fn prune_offsets(conn: &mut Connection, live: &[(u64, u64)]) -> Result<usize, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stale: Vec<(i64, i64)> = {
        let mut stmt = tx.prepare("SELECT dev, ino FROM spool_offsets")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut stale = Vec::new();
        for row in rows {
            let (dev, ino): (i64, i64) = row?;
            if !live.contains(&(dev as u64, ino as u64)) {
                stale.push((dev, ino));
            }
        }
        stale
    };
    for (dev, ino) in &stale {
        tx.execute(
            "DELETE FROM spool_offsets WHERE dev = ?1 AND ino = ?2",
            params![dev, ino],
        )?;
    }
    tx.commit()?;
    Ok(stale.len())
}

/// `PRAGMA data_version`: changes when another connection (the delivery
/// store, or the `dead-letters replay` CLI) committed.
pub fn data_version(conn: &Connection) -> Result<i64, QueueError> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

/// Test events for the queue's and its engines' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::NewEvent;

    /// An event with an empty payload for `endpoints`.
    pub fn event(id: &str, endpoints: &[&str]) -> NewEvent {
        NewEvent {
            event_id: id.into(),
            ts_ms: 1,
            payload: "{}".into(),
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            skip_if_dead: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::schema::testing::temp_db;

    use super::testing::event as ev;

    fn progress(offset: u64) -> FileProgress {
        FileProgress {
            dev: u64::MAX - 1,
            ino: 42,
            offset,
            fingerprint: b"fp".to_vec(),
        }
    }

    #[test]
    fn batch_commits_events_deliveries_and_offset_together() {
        let (_d, mut c) = temp_db();
        let done = commit_batch(&mut c, &[ev("a", &["x", "y"]), ev("b", &["x"])], &progress(100), 5).unwrap();
        assert_eq!(done, Committed { events: 2, deliveries: 3, duplicates: 0, skipped_dead: vec![] });
        assert_eq!(load_offset(&c, u64::MAX - 1, 42).unwrap(), Some((100, b"fp".to_vec())));
        let again = commit_batch(&mut c, &[ev("a", &["x"])], &progress(200), 6).unwrap();
        assert_eq!(again.duplicates, 1);
        assert_eq!(load_offset(&c, u64::MAX - 1, 42).unwrap().unwrap().0, 200);
    }

    #[test]
    fn failed_batch_leaves_offset_untouched() {
        let (_d, mut c) = temp_db();
        commit_batch(&mut c, &[], &progress(10), 1).unwrap();
        c.execute_batch("DROP TABLE deliveries").unwrap();
        assert!(commit_batch(&mut c, &[ev("z", &["x"])], &progress(99), 1).is_err());
        assert_eq!(load_offset(&c, u64::MAX - 1, 42).unwrap().unwrap().0, 10);
        let n: i64 = c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "the event insert rolled back with the failure");
    }

    #[test]
    fn prune_keeps_live_files_only() {
        let (_d, mut c) = temp_db();
        commit_batch(&mut c, &[], &progress(10), 1).unwrap();
        assert_eq!(prune_offsets(&mut c, &[(u64::MAX - 1, 42)]).unwrap(), 0);
        assert_eq!(prune_offsets(&mut c, &[]).unwrap(), 1);
        assert_eq!(load_offset(&c, u64::MAX - 1, 42).unwrap(), None);
    }
}

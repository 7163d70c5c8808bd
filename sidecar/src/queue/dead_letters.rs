//! Dead letters: listing them and moving them back to pending (replay).
//!
//! Invariant: [`replay`] moves rows in one transaction (a dead letter is
//! either still dead or pending again, never both or neither); a replayed
//! delivery starts over: attempts 0, due now, a fresh deadline. It works on
//! a database the daemon is using (SQLite serialises the writers; the daemon
//! notices the change through `PRAGMA data_version` on its next scan tick).
//!
//! Callers: the `dead-letters` CLI in `main.rs` via `admin.rs`, and tests.

use rusqlite::{params, Connection, TransactionBehavior};

use super::QueueError;

/// One dead letter as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Dead-letter id (for `replay ID`).
    pub id: i64,
    /// Endpoint name.
    pub endpoint: String,
    /// The event id (webhook-id).
    pub event_id: String,
    /// Attempts made.
    pub attempts: u32,
    /// Why it died.
    pub last_error: String,
    /// When the sidecar accepted the event, unix ms.
    pub enqueued_ms: u64,
    /// When it died, unix ms.
    pub died_ms: u64,
}

/// Which dead letters to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every dead letter.
    All,
    /// Dead-letter ids or event ids (an event id selects all its dead letters).
    Ids(Vec<String>),
}

/// Every dead letter, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<DeadLetter>, QueueError> {
    let mut stmt = conn.prepare(
        "SELECT d.id, d.endpoint, e.event_id, d.attempts, d.last_error, d.enqueued_ms, d.died_ms
           FROM dead_letters d JOIN events e ON e.seq = d.event_seq
          ORDER BY d.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DeadLetter {
            id: r.get(0)?,
            endpoint: r.get(1)?,
            event_id: r.get(2)?,
            attempts: r.get::<_, i64>(3)?.max(0) as u32,
            last_error: r.get(4)?,
            enqueued_ms: r.get::<_, i64>(5)?.max(0) as u64,
            died_ms: r.get::<_, i64>(6)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Moves the selected dead letters back to pending, due at `now_ms`.
/// Returns how many were moved.
pub fn replay(conn: &mut Connection, which: &Selection, now_ms: u64) -> Result<usize, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ids: Vec<i64> = match which {
        Selection::All => {
            let mut stmt = tx.prepare("SELECT id FROM dead_letters")?;
            let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            ids
        }
        Selection::Ids(wanted) => {
            let mut ids = Vec::new();
            let mut by_event = tx.prepare(
                "SELECT d.id FROM dead_letters d JOIN events e ON e.seq = d.event_seq WHERE e.event_id = ?1",
            )?;
            for w in wanted {
                match w.parse::<i64>() {
                    Ok(id) => ids.push(id),
                    Err(_) => {
                        for id in by_event.query_map(params![w], |r| r.get(0))? {
                            ids.push(id?);
                        }
                    }
                }
            }
            ids
        }
    };
    let mut moved = 0;
    for id in ids {
        let n = tx.execute(
            "INSERT OR IGNORE INTO deliveries (endpoint, event_seq, attempts, next_attempt_ms, enqueued_ms, last_error)
             SELECT endpoint, event_seq, 0, ?2, ?2, 'replayed: ' || last_error FROM dead_letters WHERE id = ?1",
            params![id, now_ms as i64],
        )?;
        let gone = tx.execute("DELETE FROM dead_letters WHERE id = ?1", params![id])?;
        moved += n.min(gone);
    }
    tx.commit()?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::deliveries::{bury, due};
    use crate::queue::ingest::{commit_batch, FileProgress, NewEvent};
    use crate::queue::schema::testing::temp_db;

    #[test]
    fn bury_list_replay_by_id_and_event_id() {
        let (_d, mut c) = temp_db();
        let evs: Vec<NewEvent> = ["e1", "e2", "e3"]
            .iter()
            .map(|id| NewEvent {
                event_id: id.to_string(),
                ts_ms: 1,
                payload: "{}".into(),
                endpoints: vec!["h".into()],
                skip_if_dead: None,
            })
            .collect();
        commit_batch(&mut c, &evs, &FileProgress { dev: 1, ino: 1, offset: 0, fingerprint: vec![] }, 10).unwrap();
        for d in due(&c, "h", 10, 10, &Default::default()).unwrap() {
            bury(&mut c, "h", d.event_seq, 3, "HTTP 404", 20).unwrap();
        }
        let dead = list(&c).unwrap();
        assert_eq!(dead.len(), 3);
        assert_eq!(dead[0].event_id, "e1");
        assert_eq!(dead[0].last_error, "HTTP 404");
        let n = replay(&mut c, &Selection::Ids(vec![dead[0].id.to_string(), "e3".into(), "nope".into()]), 50).unwrap();
        assert_eq!(n, 2);
        assert_eq!(list(&c).unwrap().len(), 1);
        let back = due(&c, "h", 50, 10, &Default::default()).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back.iter().all(|d| d.attempts == 0 && d.enqueued_ms == 50));
        assert_eq!(replay(&mut c, &Selection::All, 60).unwrap(), 1);
        assert!(list(&c).unwrap().is_empty());
    }
}

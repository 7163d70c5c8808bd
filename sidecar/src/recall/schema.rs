//! The recall tables in the queue database.
//!
//! They are created with `CREATE ... IF NOT EXISTS` when the sidecar opens
//! its intake connection, without touching the queue's `user_version`:
//! an older sidecar ignores them, and the queue's own migrations stay the
//! queue's. Layout:
//! ```text
//! coi_copies          (user, folder, uidvalidity, uid) PRIMARY KEY,
//!                     msgid_hash (16 bytes of SHA-256 of the Message-ID),
//!                     sender, ts_ms, read_ms
//!                     one row per stored copy of a message an authenticated
//!                     local user sent; indexed by (msgid_hash, sender) for
//!                     recalls and (user, msgid_hash) for reads.
//! coi_recalls         request (the request record id) PRIMARY KEY, sender,
//!                     request_id, message_id, requested_ms, state
//! coi_recall_results  (request, user) PRIMARY KEY, copies, outcome
//!                     outcome NULL until that recipient's account answered.
//! ```
//! Rows older than the retention (`[recall] index_retention_days`) are
//! pruned by [`super::index::prune`].

use rusqlite::Connection;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS coi_copies (
    user        TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    msgid_hash  BLOB    NOT NULL,
    sender      TEXT    NOT NULL,
    ts_ms       INTEGER NOT NULL,
    read_ms     INTEGER,
    PRIMARY KEY (user, folder, uidvalidity, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS coi_copies_message ON coi_copies (msgid_hash, sender);
CREATE INDEX IF NOT EXISTS coi_copies_reader  ON coi_copies (user, msgid_hash);
CREATE INDEX IF NOT EXISTS coi_copies_age     ON coi_copies (ts_ms);
CREATE TABLE IF NOT EXISTS coi_recalls (
    request      TEXT    NOT NULL PRIMARY KEY,
    sender       TEXT    NOT NULL,
    request_id   TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    requested_ms INTEGER NOT NULL,
    state        TEXT    NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS coi_recall_results (
    request TEXT    NOT NULL,
    user    TEXT    NOT NULL,
    copies  INTEGER NOT NULL,
    outcome TEXT,
    PRIMARY KEY (request, user)
) WITHOUT ROWID;
";

/// Creates the tables if they are missing (idempotent).
pub fn ensure(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(DDL)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ensure_is_idempotent_next_to_the_queue_schema() {
        let (_d, c) = crate::queue::schema::testing::temp_db();
        super::ensure(&c).unwrap();
        super::ensure(&c).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, crate::queue::schema::SCHEMA_VERSION, "the queue's version is untouched");
    }
}

//! Opening the queue database: pragmas and the schema migration.
//!
//! Invariants: every connection is in WAL mode with a busy handler (see
//! [`busy_wait`]: short fixed sleeps, about 30 s in all); the
//! schema is created (or checked) inside one IMMEDIATE transaction so two
//! processes opening a fresh database at once (daemon and CLI) cannot race.
//! A database from a newer version (`user_version` greater than ours) is
//! refused rather than guessed at.
//!
//! Versions: 1 = events, deliveries, dead letters, spool offsets; 2 adds
//! `dead_targets` (push targets a push service declared gone); 3 adds
//! `endpoint_health` (`queue::health`). Each step
//! is additive (new tables only, no rewrite of existing rows), and a
//! older database is upgraded in place, in the same transaction that
//! checks the version, the first time a newer sidecar (or its CLI)
//! opens it. [`open_read_only`] (the `status` command) never migrates.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::QueueError;

/// Schema version this code reads and writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Sleep between two tries for a lock another connection holds.
pub const BUSY_SLEEP: Duration = Duration::from_millis(1);

/// Tries before giving up with `SQLITE_BUSY`: at least 30 s of sleeping.
pub const BUSY_RETRIES: i32 = 30_000;

/// Busy handler for every queue connection: retry every [`BUSY_SLEEP`].
///
/// SQLite's own busy timeout backs off up to 100 ms between tries. The
/// intake connection (`synchronous=FULL`) holds the write lock for an fsync
/// on every commit and commits again right away under load, so a delivery
/// commit backing off that way kept missing the short gaps and waited tens
/// to hundreds of ms, stalling its driver (measured: p99 commit->2xx up to
/// ~800 ms). Short fixed sleeps take the next gap instead.
fn busy_wait(retries: i32) -> bool {
    if retries >= BUSY_RETRIES {
        return false;
    }
    std::thread::sleep(BUSY_SLEEP);
    true
}

/// Counts every transaction `conn` commits (explicit or autocommit) in
/// `counter`; the hook never turns a commit into a rollback.
pub fn count_commits(conn: &Connection, counter: prometheus::IntCounter) {
    conn.commit_hook(Some(move || {
        counter.inc();
        false
    }));
}

/// How a connection syncs its commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: COMMIT returns after the WAL is fsync'd. Used for
    /// ingest, where the commit acknowledges spool records.
    Full,
    /// `synchronous=NORMAL`: consistent, survives a process crash, may lose
    /// the last commits on power loss. Used for delivery bookkeeping, where a
    /// lost update only means an extra (at-least-once) delivery.
    Normal,
}

const DDL: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq      INTEGER PRIMARY KEY,
    event_id TEXT    NOT NULL UNIQUE,
    ts_ms    INTEGER NOT NULL,
    payload  TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    endpoint        TEXT    NOT NULL,
    event_seq       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    enqueued_ms     INTEGER NOT NULL,
    last_error      TEXT,
    PRIMARY KEY (endpoint, event_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due   ON deliveries (endpoint, next_attempt_ms);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY,
    endpoint    TEXT    NOT NULL,
    event_seq   INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT    NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    died_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_event ON dead_letters (event_seq);
CREATE TABLE IF NOT EXISTS spool_offsets (
    dev         INTEGER NOT NULL,
    ino         INTEGER NOT NULL,
    offset      INTEGER NOT NULL,
    fingerprint BLOB    NOT NULL,
    PRIMARY KEY (dev, ino)
);
";

/// Added by version 2. One row per push target (a Web Push subscription or
/// a Delta Chat token) that answered 404/410: intake skips jobs for it
/// (`last_seen_ms` moves on each skip), and rows unseen for a while are
/// pruned (`queue::targets`).
const DDL_V2: &str = "
CREATE TABLE IF NOT EXISTS dead_targets (
    target       TEXT    NOT NULL,
    user         TEXT    NOT NULL,
    target_key   TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    died_ms      INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (target, user, target_key, fingerprint)
) WITHOUT ROWID;
";

/// Added by version 3: what each endpoint's last outcomes were
/// (`queue::health`).
const DDL_V3: &str = "
CREATE TABLE IF NOT EXISTS endpoint_health (
    endpoint             TEXT    NOT NULL PRIMARY KEY,
    last_success_ms      INTEGER,
    last_failure_ms      INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT
) WITHOUT ROWID;
";

/// Opens an existing queue database for reading only: no schema change, no
/// write. The connection still takes part in WAL locking, so it sees the
/// last commit of a running daemon. When run as root, SQLite gives any
/// `-wal`/`-shm` file it has to create to the database file's owner, so the
/// daemon can still open them.
pub fn open_read_only(path: &Path) -> Result<Connection, QueueError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_handler(Some(busy_wait))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(QueueError::Schema(format!(
            "database schema version {version} is newer than this sidecar's {SCHEMA_VERSION}"
        )));
    }
    Ok(conn)
}

/// Opens (creating if needed) the queue database at `path`.
pub fn open(path: &Path, durability: Durability) -> Result<Connection, QueueError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_handler(Some(busy_wait))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(QueueError::Schema(format!("journal_mode is {mode}, not wal")));
    }
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    match version {
        0 => {
            tx.execute_batch(DDL)?;
            tx.execute_batch(DDL_V2)?;
            tx.execute_batch(DDL_V3)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        1 => {
            tx.execute_batch(DDL_V2)?;
            tx.execute_batch(DDL_V3)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        2 => {
            tx.execute_batch(DDL_V3)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        SCHEMA_VERSION => {}
        newer => {
            return Err(QueueError::Schema(format!(
                "database schema version {newer} is newer than this sidecar's {SCHEMA_VERSION}"
            )))
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing {
    /// A fresh database in a temp dir (kept alive by the returned guard).
    pub fn temp_db() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::open(&dir.path().join("q.sqlite3"), super::Durability::Full).unwrap();
        (dir, conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_is_idempotent_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/q.sqlite3");
        drop(open(&p, Durability::Full).unwrap());
        let c = open(&p, Durability::Normal).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 1, "NORMAL");
    }

    #[test]
    fn version_1_database_is_upgraded_in_place_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.sqlite3");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(DDL).unwrap();
            c.execute_batch(
                "INSERT INTO events (seq, event_id, ts_ms, payload) VALUES (1, 'e1', 5, '{}');
                 INSERT INTO deliveries (endpoint, event_seq, next_attempt_ms, enqueued_ms) VALUES ('ops', 1, 5, 5);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let c = open(&p, Durability::Full).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let kept: i64 = c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 1);
        let dead: i64 = c.query_row("SELECT COUNT(*) FROM dead_targets", [], |r| r.get(0)).unwrap();
        assert_eq!(dead, 0);
        drop(c);
        open(&p, Durability::Normal).unwrap();
    }

    #[test]
    fn version_2_database_gains_endpoint_health_and_read_only_opens_do_not_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.sqlite3");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(DDL).unwrap();
            c.execute_batch(DDL_V2).unwrap();
            c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA user_version = 2;").unwrap();
        }
        let ro = open_read_only(&p).unwrap();
        let v: i64 = ro.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 2, "a read-only open leaves the version alone");
        assert!(ro.execute_batch("CREATE TABLE x (y)").is_err(), "and cannot write");
        drop(ro);
        let c = open(&p, Durability::Full).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 3);
        let n: i64 = c.query_row("SELECT COUNT(*) FROM endpoint_health", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn read_only_open_of_a_missing_database_fails_without_creating_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.sqlite3");
        assert!(open_read_only(&p).is_err());
        assert!(!p.exists());
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.sqlite3");
        let c = open(&p, Durability::Full).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(open(&p, Durability::Full), Err(QueueError::Schema(_))));
        assert!(matches!(open_read_only(&p), Err(QueueError::Schema(_))));
    }
}

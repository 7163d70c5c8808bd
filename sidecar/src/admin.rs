//! The operator commands that work on the queue database directly:
//! `dead-letters list` and `dead-letters replay`.
//!
//! Invariant: they open the database like the daemon does (WAL, busy
//! timeout), so they are safe while the daemon runs; a replay is picked up
//! by a running daemon within one spool scan interval (it watches
//! `PRAGMA data_version`), or on the next start.
//!
//! Callers: `main.rs`.

use std::fmt::Write as _;

use crate::config::Config;
use crate::queue::dead_letters::{self, Selection};
use crate::queue::schema::{self, Durability};
use crate::queue::QueueError;
use crate::time::{now_ms, rfc3339_from_ms};

fn open(config: &Config) -> Result<rusqlite::Connection, QueueError> {
    let path = config.queue_db_path();
    if !path.exists() {
        return Err(QueueError::Schema(format!(
            "no queue database at {} (has the sidecar run with this config?)",
            path.display()
        )));
    }
    schema::open(&path, Durability::Full)
}

/// The `dead-letters list` table.
pub fn list(config: &Config) -> Result<String, QueueError> {
    let conn = open(config)?;
    let rows = dead_letters::list(&conn)?;
    let mut out = String::new();
    let _ = writeln!(out, "ID\tENDPOINT\tEVENT_ID\tATTEMPTS\tDIED_AT\tLAST_ERROR");
    for r in &rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            r.id,
            r.endpoint,
            r.event_id,
            r.attempts,
            rfc3339_from_ms(r.died_ms),
            r.last_error.replace(['\t', '\n'], " ")
        );
    }
    let _ = writeln!(out, "{} dead letter(s)", rows.len());
    Ok(out)
}

/// `dead-letters replay`: returns how many went back to pending.
pub fn replay(config: &Config, which: &Selection) -> Result<usize, QueueError> {
    let mut conn = open(config)?;
    dead_letters::replay(&mut conn, which, now_ms())
}

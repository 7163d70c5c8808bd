//! Target `spool_reader`: the sidecar's spool reader
//! (`coi_sidecar::intake::reader::drain_file`) on arbitrary spool contents.
//!
//! Setup, once per process: a queue database (`queue::schema::open`, WAL,
//! `synchronous=NORMAL`) and a spool file in a private directory under
//! `$TMPDIR` (scripts/fuzz points it at a scratch directory it removes), one
//! webhook endpoint that wants every event. Per input the queue tables are
//! emptied before each drain, so every input runs on the same state.
//!
//! Each input is drained three times: whole with push routing off, whole
//! with push routing on (Web Push and Delta Chat enabled, private push
//! endpoints allowed or not depending on the input's length), and with
//! routing on while being written (a first part drained as the active file,
//! the rest appended, then drained as sealed).
//!
//! Properties:
//! - `drain_file` never panics and never fails on a readable file;
//! - a sealed file (`DrainMode::Final`) is consumed to its last byte: the
//!   committed offset equals the file size;
//! - with push routing off, exactly the valid message records with a
//!   non-empty id are queued, in file order, the first of each event id
//!   only (what `scan` finds);
//! - reading the file while it is being written queues the same events
//!   (ids and payloads, push jobs included) as reading it whole.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coi_core::wire::{scan, Record, ScanItem};
use coi_sidecar::config::{Endpoint, PayloadFormat};
use coi_sidecar::intake::reader::{drain_file, DrainMode};
use coi_sidecar::metrics::Metrics;
use coi_sidecar::push::jobs::Routing;
use coi_sidecar::queue::ingest::load_offset;
use coi_sidecar::queue::schema::{open, Durability};
use rusqlite::Connection;

struct State {
    dir: PathBuf,
    conn: Connection,
    metrics: Metrics,
    endpoints: Vec<Arc<Endpoint>>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn setup() -> State {
    let dir = std::env::temp_dir().join(format!("coi-fuzz-spool-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the fuzz spool directory");
    let conn = open(&dir.join("queue.sqlite3"), Durability::Normal).expect("open the queue");
    let endpoint = Endpoint {
        name: "all".into(),
        url: "http://127.0.0.1:9/".parse().expect("literal URL"),
        secrets: vec![vec![7; 16]],
        kinds: Vec::new(),
        folders: Vec::new(),
        format: PayloadFormat::Standard,
        timeout: Duration::from_secs(1),
        concurrency: 1,
        retry_schedule: vec![Duration::from_secs(1)],
        deadline: Duration::from_secs(60),
        allow_private_addresses: true,
    };
    State {
        dir,
        conn,
        metrics: Metrics::new().expect("metrics registry"),
        endpoints: vec![Arc::new(endpoint)],
    }
}

/// Removes this thread's spool directory (the replay test calls it; a fuzz
/// process leaves it to the scratch `$TMPDIR` that scripts/fuzz removes).
pub fn cleanup() {
    STATE.with(|cell| {
        if let Some(st) = cell.borrow_mut().take() {
            drop(st.conn);
            let _ = fs::remove_dir_all(&st.dir);
        }
    });
}

/// Drains `data` as a spool file and checks the properties above.
pub fn check(data: &[u8]) {
    STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let st = slot.get_or_insert_with(setup);
        let path = st.dir.join("events.log");

        let off = Routing::default();
        let on = Routing { webpush: true, webpush_allow_private: data.len() % 2 == 0, deltachat: true, ..Routing::default() };

        // Whole file, sealed, no push routing: only message events.
        let whole = run(st, &path, data, None, &off);

        // With push routing, whole and written in two parts (the split
        // point comes from the data).
        let whole_push = run(st, &path, data, None, &on);
        let split = match data.first() {
            Some(&b) => (usize::from(b) * 257 + data.len() / 3) % (data.len() + 1),
            None => 0,
        };
        let parts = run(st, &path, data, Some(split), &on);
        assert_eq!(parts, whole_push, "reading while written (split at {split}) queued other events");

        // What the reader must have queued: scan's valid message records.
        let mut seen = HashSet::new();
        let mut expected = Vec::new();
        for item in scan(data).0 {
            if let ScanItem::Record(Record::Message(m)) = item {
                if !m.id.is_empty() && seen.insert(m.id.clone()) {
                    expected.push(m.id);
                }
            }
        }
        let queued: Vec<String> = whole.iter().map(|(id, _)| id.clone()).collect();
        // `scan` leaves an unterminated tail; the sealed drain consumes it as
        // torn, which can never add an event.
        assert_eq!(queued, expected, "queued events differ from the valid records");
    });
}

/// Resets the queue, writes `data` (all at once, or `split` bytes first and
/// drained as the active file), drains it sealed, returns the queued
/// (event id, payload) pairs in order.
fn run(
    st: &mut State,
    path: &Path,
    data: &[u8],
    split: Option<usize>,
    routing: &Routing,
) -> Vec<(String, String)> {
    st.conn
        .execute_batch(
            "DELETE FROM deliveries; DELETE FROM dead_letters; DELETE FROM events; \
             DELETE FROM spool_offsets; DELETE FROM dead_targets;",
        )
        .expect("reset the queue");
    let _ = fs::remove_file(path);
    let noop = |_: Option<&[&str]>| {};
    let mut queue = coi_sidecar::queue::engine::SqliteQueue;
    if let Some(k) = split {
        fs::write(path, &data[..k]).expect("write the spool file");
        drain_file(&mut st.conn, &mut queue, path, DrainMode::Active, &st.endpoints, routing, &st.metrics, &noop)
            .expect("drain of the active file failed")
            .expect("spool file vanished");
        let mut f = OpenOptions::new().append(true).open(path).expect("reopen the spool file");
        f.write_all(&data[k..]).expect("append to the spool file");
    } else {
        fs::write(path, data).expect("write the spool file");
    }
    let drained = drain_file(&mut st.conn, &mut queue, path, DrainMode::Final, &st.endpoints, routing, &st.metrics, &noop)
        .expect("drain of the sealed file failed")
        .expect("spool file vanished");

    let meta = fs::metadata(path).expect("stat the spool file");
    assert_eq!(drained.size, meta.len());
    if !data.is_empty() {
        let (offset, _) = load_offset(&st.conn, meta.dev(), meta.ino())
            .expect("read the offset")
            .expect("a drained non-empty file has an offset");
        assert_eq!(offset, meta.len(), "sealed file not consumed to the end");
    }

    let mut stmt = st
        .conn
        .prepare("SELECT event_id, payload FROM events ORDER BY seq")
        .expect("query events");
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .expect("query events");
    rows.map(|r| r.expect("read an event row")).collect()
}

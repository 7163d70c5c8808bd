//! Reading one spool file into the queue, from its committed offset.
//!
//! What this module owns: [`drain_file`], which reads a spool file in chunks
//! from the offset stored for its (dev, inode), splits the chunk into
//! records (`coi_core::wire::scan`), keeps the message events some endpoint
//! wants and turns push and validation records into one push job per
//! target (`push::jobs::route_push`), and commits each chunk's events
//! together with the new offset
//! through the queue engine (`queue::engine::EventQueue`). Counters for what was read (kinds,
//! plugin counters, rejections) are applied only after the commit, so a
//! crash before it counts nothing twice... and loses nothing.
//!
//! Invariants:
//! - the offset only moves past bytes whose records are committed;
//! - on the active file an unterminated last record is left alone (a write
//!   may be in flight); on a sealed rotated file ([`DrainMode::Final`]) it
//!   can never complete, so it is consumed and counted as `torn`;
//! - a stored offset is trusted only if the file still starts with the
//!   stored fingerprint and is at least that long; otherwise the file is a
//!   different one (inode reuse) and is read from the start;
//! - only regular files are read ([`open_spool_file`]): the spool
//!   directory is writable by every mail process, so `events.log` may be a
//!   symlink (to `/dev/zero`, which never ends: the intake would spin) or a
//!   FIFO (whose open and reads block: the intake would hang). Such an
//!   entry is opened with `O_NOFOLLOW | O_NONBLOCK` (never followed, never
//!   waited on) and refused as [`IntakeError::NotRegular`].
//!
//! Callers: `intake::pump`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use coi_core::wire::{scan, Record, ScanItem};
use rusqlite::Connection;

use crate::config::Endpoint;
use crate::metrics::{kind_label, Metrics, PUSH_RECORD_KINDS, TARGET_KNOWN_DEAD};
use crate::push::jobs::{route_push, route_validation, Channel, Routed, Routing};
use crate::queue::engine::EventQueue;
use crate::queue::ingest::{self, FileProgress, NewEvent};
use crate::queue::QueueError;
use crate::time::now_ms;

/// Bytes read (and committed) per chunk: a few thousand records.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Length of the file fingerprint.
pub const FINGERPRINT_BYTES: usize = 64;

/// Why a drain stopped early.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Reading or inspecting a spool file failed.
    #[error("spool I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Committing to the queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Spool entries that are not regular files (path, what they are):
    /// never followed or read.
    #[error("spool entries that are not regular files are refused (not followed, not read; remove them): {}", describe_refused(.0))]
    NotRegular(Vec<(String, &'static str)>),
}

fn describe_refused(files: &[(String, &'static str)]) -> String {
    files.iter().map(|(path, kind)| format!("{path} is a {kind}")).collect::<Vec<_>>().join(", ")
}

impl IntakeError {
    /// Bounded label.
    pub fn error_type(&self) -> &'static str {
        match self {
            IntakeError::Io { .. } => "spool_io",
            IntakeError::Queue(e) => e.error_type(),
            IntakeError::NotRegular(_) => "spool_not_regular",
        }
    }

    /// Whether the next scan may succeed (the pump retries on its timer).
    pub fn is_retriable(&self) -> bool {
        match self {
            IntakeError::Io { .. } => true,
            IntakeError::Queue(e) => e.is_retriable(),
            // Until someone removes the entry.
            IntakeError::NotRegular(_) => false,
        }
    }
}

pub(crate) fn io_at(path: &Path) -> impl Fn(std::io::Error) -> IntakeError + '_ {
    move |source| IntakeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Opens a spool file for reading without following a symlink or waiting
/// on a FIFO, and only if it is a regular file. `Ok(None)`: it does not
/// exist.
pub fn open_spool_file(path: &Path) -> Result<Option<File>, IntakeError> {
    let refused = |kind: &'static str| IntakeError::NotRegular(vec![(path.display().to_string(), kind)]);
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let file = match OpenOptions::new().read(true).custom_flags(flags.bits()).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW on a symlink.
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Err(refused("symbolic link")),
        Err(e) => return Err(io_at(path)(e)),
    };
    let kind = file.metadata().map_err(io_at(path))?.file_type();
    if kind.is_file() {
        return Ok(Some(file));
    }
    Err(refused(coi_core::spool::entry_kind(kind)))
}

/// How far a file may be consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainMode {
    /// The active file: writers may still be appending.
    Active,
    /// A sealed rotated file: nothing will be appended again.
    Final,
}

/// What one drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Identity of the file drained.
    pub dev: u64,
    /// Inode of the file drained.
    pub ino: u64,
    /// Records read (valid or not).
    pub records: u64,
    /// Deliveries enqueued.
    pub deliveries: usize,
    /// File size seen at the start.
    pub size: u64,
}

/// Counters gathered from one chunk, applied after its commit.
#[derive(Default)]
struct Tally {
    kinds: Vec<(&'static str, u64)>,
    routed: u64,
    tagged: u64,
    dropped: u64,
    push_targets_dropped: u64,
    fallbacks: Vec<(&'static str, u64)>,
    rejected: Vec<(&'static str, u64)>,
    /// (channel, result) of push targets.
    push_targets: Vec<((&'static str, &'static str), u64)>,
}

fn bump_pair(list: &mut Vec<((&'static str, &'static str), u64)>, label: (&'static str, &'static str)) {
    match list.iter_mut().find(|(l, _)| *l == label) {
        Some((_, n)) => *n += 1,
        None => list.push((label, 1)),
    }
}

fn bump(list: &mut Vec<(&'static str, u64)>, label: &'static str) {
    match list.iter_mut().find(|(l, _)| *l == label) {
        Some((_, n)) => *n += 1,
        None => list.push((label, 1)),
    }
}

impl Tally {
    fn apply(&self, m: &Metrics) {
        for (k, n) in &self.kinds {
            m.intake_events.with_label_values(&[k]).inc_by(*n);
            if *k != "fallback" && !PUSH_RECORD_KINDS.contains(k) {
                m.plugin_classified.with_label_values(&[k]).inc_by(*n);
            }
        }
        m.plugin_routed.inc_by(self.routed);
        m.plugin_tagged.inc_by(self.tagged);
        m.plugin_dropped.inc_by(self.dropped);
        m.plugin_push_targets_dropped.inc_by(self.push_targets_dropped);
        for (r, n) in &self.fallbacks {
            m.plugin_fallbacks.with_label_values(&[r]).inc_by(*n);
        }
        for (e, n) in &self.rejected {
            m.spool_rejected.with_label_values(&[e]).inc_by(*n);
        }
        for ((channel, result), n) in &self.push_targets {
            m.push_targets.with_label_values(&[channel, result]).inc_by(*n);
        }
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The offset to resume from, checked against the file's fingerprint.
fn resume_offset(
    conn: &Connection,
    file: &File,
    dev: u64,
    ino: u64,
    size: u64,
) -> Result<(u64, Vec<u8>), IntakeError> {
    let Some((offset, fingerprint)) = ingest::load_offset(conn, dev, ino)? else {
        return Ok((0, Vec::new()));
    };
    if offset == 0 {
        return Ok((0, Vec::new()));
    }
    let mut head = vec![0u8; fingerprint.len()];
    let n = read_full_at(file, &mut head, 0).map_err(|source| IntakeError::Io {
        path: format!("inode {ino}"),
        source,
    })?;
    if offset > size || n != head.len() || head != fingerprint {
        tracing::warn!(dev, ino, offset, size, "stored spool offset does not match the file (replaced?); reading it from the start");
        return Ok((0, Vec::new()));
    }
    Ok((offset, fingerprint))
}

/// Wakes delivery drivers: those of the queue endpoints named (webhook
/// names or `push:<channel>`), or every driver (`None`).
pub type WakeFn<'a> = &'a dyn Fn(Option<&[&str]>);

/// Drains `path` into the queue (see the module docs). `wake` is called
/// after each commit that enqueued deliveries, with the endpoints that got
/// them. Returns `None` if the file does not exist.
#[allow(clippy::too_many_arguments)]
pub fn drain_file(
    conn: &mut Connection,
    queue: &mut dyn EventQueue,
    path: &Path,
    mode: DrainMode,
    endpoints: &[Arc<Endpoint>],
    routing: &Routing,
    metrics: &Metrics,
    wake: WakeFn<'_>,
) -> Result<Option<Drained>, IntakeError> {
    let Some(file) = open_spool_file(path)? else {
        return Ok(None);
    };
    let meta = file.metadata().map_err(io_at(path))?;
    let (dev, ino, size) = (meta.dev(), meta.ino(), meta.len());
    let (mut offset, mut fingerprint) = resume_offset(conn, &file, dev, ino, size)?;
    let mut drained = Drained {
        dev,
        ino,
        size,
        ..Drained::default()
    };
    // Sized to what is there (at most a chunk): under a steady stream a
    // cycle finds a few records, and zeroing a whole chunk for them on
    // every cycle was a measurable share of the intake's CPU.
    let mut buf = Vec::new();
    loop {
        // Bytes appended after the fstat are left for the next cycle (their
        // doorbell or the scan timer brings it).
        let want = size.saturating_sub(offset).min(CHUNK_BYTES as u64) as usize;
        if want == 0 {
            break;
        }
        buf.resize(want, 0);
        let n = read_full_at(&file, &mut buf, offset).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        let at_eof = offset + n as u64 >= size;
        let (items, mut used) = scan(&buf[..n]);
        let mut tally = Tally::default();
        if at_eof && mode == DrainMode::Final && used < n {
            // A sealed file's unterminated tail: a writer died mid-record.
            used = n;
            bump(&mut tally.rejected, "torn");
        }
        if used == 0 {
            break;
        }
        if fingerprint.is_empty() && offset == 0 {
            fingerprint = buf[..used.min(FINGERPRINT_BYTES)].to_vec();
        }
        drained.records += items.len() as u64;
        let (recall_records, items): (Vec<ScanItem>, Vec<ScanItem>) = items
            .into_iter()
            .partition(|i| matches!(i, ScanItem::Record(r) if crate::recall::ingest::is_recall_record(r)));
        let recall_records: Vec<Record> = recall_records
            .into_iter()
            .filter_map(|i| match i {
                ScanItem::Record(r) => Some(r),
                ScanItem::Rejected(_) => None,
            })
            .collect();
        for r in &recall_records {
            tally.dropped = tally.dropped.saturating_add(r.dropped_before());
        }
        // Applied before the chunk's offset is committed: a crash re-applies
        // them (idempotent), never loses them (recall::ingest).
        let recall_ctx = crate::recall::ingest::Context {
            doveadm: routing.recall_doveadm,
            endpoints,
            settings: routing.recall,
        };
        let applied = crate::recall::ingest::apply(conn, &recall_records, &recall_ctx, now_ms())?;
        metrics.recall.count(&applied);
        if applied.deliveries > 0 {
            // Rare; the notices may go to any endpoint and the doveadm
            // calls to the recall driver: wake them all.
            wake(None);
        }
        let events = collect(items, endpoints, routing, &mut tally);
        let progress = FileProgress {
            dev,
            ino,
            offset: offset + used as u64,
            fingerprint: fingerprint.clone(),
        };
        let done = queue.commit(conn, &events, &progress, now_ms())?;
        for (endpoint, target) in &done.skipped_dead {
            let channel = Channel::from_queue_name(endpoint).map_or(*target, Channel::label);
            bump_pair(&mut tally.push_targets, (channel, TARGET_KNOWN_DEAD));
            // It was counted as queued when routed; it was not.
            if let Some((_, n)) = tally.push_targets.iter_mut().find(|(l, _)| *l == (channel, "queued")) {
                *n = n.saturating_sub(1);
            }
        }
        tally.apply(metrics);
        if done.duplicates > 0 {
            tracing::info!(duplicates = done.duplicates, "spool records with an event id already queued were skipped");
        }
        drained.deliveries += done.deliveries;
        if done.deliveries > 0 && queue.delivers_locally() {
            let mut woken: Vec<&str> = events.iter().flat_map(|e| e.endpoints.iter().map(String::as_str)).collect();
            woken.sort_unstable();
            woken.dedup();
            wake(Some(&woken));
        }
        offset += used as u64;
        if at_eof {
            break;
        }
    }
    Ok(Some(drained))
}

/// Turns scanned items into queue events, counting everything in `tally`.
fn collect(items: Vec<ScanItem>, endpoints: &[Arc<Endpoint>], routing: &Routing, tally: &mut Tally) -> Vec<NewEvent> {
    let take = |routed: Routed, events: &mut Vec<NewEvent>, tally: &mut Tally| {
        for (channel, result) in routed.results {
            bump_pair(&mut tally.push_targets, (channel, result.label()));
        }
        events.extend(routed.events);
    };
    let mut events = Vec::new();
    for item in items {
        match item {
            ScanItem::Record(Record::Message(m)) => {
                if m.id.is_empty() {
                    bump(&mut tally.rejected, "json");
                    continue;
                }
                bump(&mut tally.kinds, kind_label(&m.kind));
                tally.routed += u64::from(m.routed);
                tally.tagged += u64::from(m.chat_keyword);
                tally.dropped = tally.dropped.saturating_add(m.dropped_before);
                let wanted: Vec<String> = endpoints
                    .iter()
                    .filter(|e| e.wants(&m.kind, &m.folder))
                    .map(|e| e.name.clone())
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                match serde_json::to_string(&m) {
                    Ok(payload) => events.push(NewEvent {
                        event_id: m.id,
                        ts_ms: m.ts_ms,
                        payload,
                        endpoints: wanted,
                        skip_if_dead: None,
                    }),
                    // Cannot happen for a struct of strings and numbers; if
                    // it did, the record is counted, not silently lost.
                    Err(_) => bump(&mut tally.rejected, "json"),
                }
            }
            ScanItem::Record(Record::Fallback(f)) => {
                bump(&mut tally.kinds, "fallback");
                bump(&mut tally.fallbacks, f.reason.name());
                tally.dropped = tally.dropped.saturating_add(f.dropped_before);
            }
            ScanItem::Record(Record::Push(p)) => {
                bump(&mut tally.kinds, "push");
                tally.dropped = tally.dropped.saturating_add(p.dropped_before);
                tally.push_targets_dropped += u64::from(p.targets_dropped);
                if p.id.is_empty() {
                    bump(&mut tally.rejected, "json");
                    continue;
                }
                take(route_push(&p, routing), &mut events, tally);
            }
            ScanItem::Record(Record::WebPushValidation(w)) => {
                bump(&mut tally.kinds, "webpush_validation");
                tally.dropped = tally.dropped.saturating_add(w.dropped_before);
                if w.id.is_empty() {
                    bump(&mut tally.rejected, "json");
                    continue;
                }
                take(route_validation(&w, routing), &mut events, tally);
            }
            ScanItem::Rejected(e) => bump(&mut tally.rejected, e.error_type()),
            // taken apart by drain_file (recall::ingest)
            ScanItem::Record(_) => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::schema::{open, Durability};
    use coi_core::spool::SpoolWriter;
    use coi_core::wire::{encode_record, MessageEventV1};

    fn msg(id: &str, kind: &str) -> Vec<u8> {
        encode_record(&Record::Message(MessageEventV1 {
            id: id.into(),
            ts_ms: 1,
            user: "u".into(),
            folder: "INBOX".into(),
            uid: 1,
            uidvalidity: 1,
            kind: kind.into(),
            group_id: None,
            chat_keyword: kind != "not-chat",
            routed: false,
            from: None,
            message_id: None,
            subject: None,
            pid: 1,
            dropped_before: 2,
        origin: Default::default(),
        headers_protected: false,
        }))
    }

    fn endpoint(kinds: &[&str]) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            name: "h".into(),
            url: "http://127.0.0.1:1/".parse().unwrap(),
            secrets: vec![vec![1; 16]],
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            folders: vec![],
            format: crate::config::PayloadFormat::Standard,
            timeout: std::time::Duration::from_secs(1),
            concurrency: 1,
            retry_schedule: vec![std::time::Duration::from_secs(1)],
            deadline: std::time::Duration::from_secs(60),
            allow_private_addresses: true,
        })
    }

    fn pending(c: &Connection) -> i64 {
        c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn drains_incrementally_and_waits_for_unterminated_tail() {
        let d = tempfile::tempdir().unwrap();
        let mut c = open(&d.path().join("q"), Durability::Full).unwrap();
        let m = Metrics::new().unwrap();
        let w = SpoolWriter::new(d.path(), 1 << 30);
        w.append(&msg("a", "chat")).unwrap();
        w.append(&msg("b", "not-chat")).unwrap();
        let partial = msg("c", "chat");
        std::fs::OpenOptions::new()
            .append(true)
            .open(w.path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, &partial[..10]))
            .unwrap();
        let eps = [endpoint(&["chat"])];
        let r = drain_file(&mut c, &mut crate::queue::engine::SqliteQueue, w.path(), DrainMode::Active, &eps, &Routing::default(), &m, &|_| {}).unwrap().unwrap();
        assert_eq!(r.records, 2);
        assert_eq!(pending(&c), 1, "only the chat matched the endpoint");
        assert_eq!(m.plugin_dropped.get(), 4);
        assert_eq!(m.plugin_classified.with_label_values(&["not-chat"]).get(), 1);
        // Nothing new: a second drain reads nothing again.
        let r = drain_file(&mut c, &mut crate::queue::engine::SqliteQueue, w.path(), DrainMode::Active, &eps, &Routing::default(), &m, &|_| {}).unwrap().unwrap();
        assert_eq!(r.records, 0);
        // Final mode consumes the torn tail.
        let r = drain_file(&mut c, &mut crate::queue::engine::SqliteQueue, w.path(), DrainMode::Final, &eps, &Routing::default(), &m, &|_| {}).unwrap().unwrap();
        assert_eq!(r.records, 0);
        assert_eq!(m.spool_rejected.with_label_values(&["torn"]).get(), 1);
        assert_eq!(m.intake_events.with_label_values(&["chat"]).get(), 1);
    }

    /// `drain_file` on `path` in a thread: it must answer within 5 s.
    fn drain_in_time(path: &Path) -> Result<Option<Drained>, IntakeError> {
        let path = path.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let d = tempfile::tempdir().unwrap();
            let mut c = open(&d.path().join("q"), Durability::Full).unwrap();
            let m = Metrics::new().unwrap();
            let eps = [endpoint(&[])];
            let _ = tx.send(drain_file(&mut c, &mut crate::queue::engine::SqliteQueue, &path, DrainMode::Active, &eps, &Routing::default(), &m, &|_| {}));
        });
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("drain_file hung or spun on a non-regular file")
    }

    #[test]
    fn symlinks_fifos_and_directories_are_refused_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let zero = d.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let regular = d.path().join("regular");
        std::fs::write(&regular, msg("a", "chat")).unwrap();
        let to_regular = d.path().join("to-regular");
        std::os::unix::fs::symlink(&regular, &to_regular).unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let dir = d.path().join("dir");
        std::fs::create_dir(&dir).unwrap();
        for (path, kind) in [
            (&zero, "symbolic link"),
            (&to_regular, "symbolic link"),
            (&fifo, "FIFO"),
            (&dir, "directory"),
            (&std::path::PathBuf::from("/dev/null"), "device"),
        ] {
            match drain_in_time(path) {
                Err(e @ IntakeError::NotRegular(_)) => {
                    assert_eq!(e.error_type(), "spool_not_regular");
                    let text = e.to_string();
                    assert!(text.contains(&format!("{} is a {kind}", path.display())), "{text}");
                }
                other => panic!("{}: expected a refusal, got {other:?}", path.display()),
            }
        }
        assert_eq!(drain_in_time(&regular).unwrap().unwrap().records, 1);
        assert!(drain_in_time(&d.path().join("missing")).unwrap().is_none());
    }

    #[test]
    fn replaced_file_with_same_inode_is_read_from_start() {
        let d = tempfile::tempdir().unwrap();
        let mut c = open(&d.path().join("q"), Durability::Full).unwrap();
        let m = Metrics::new().unwrap();
        let path = d.path().join("events.log");
        std::fs::write(&path, [msg("a", "chat"), msg("b", "chat")].concat()).unwrap();
        let eps = [endpoint(&[])];
        drain_file(&mut c, &mut crate::queue::engine::SqliteQueue, &path, DrainMode::Active, &eps, &Routing::default(), &m, &|_| {}).unwrap();
        assert_eq!(pending(&c), 2);
        // Same inode, new content (truncate + rewrite): the fingerprint differs.
        std::fs::write(&path, [msg("x", "chat"), msg("y", "chat"), msg("z", "chat")].concat()).unwrap();
        drain_file(&mut c, &mut crate::queue::engine::SqliteQueue, &path, DrainMode::Active, &eps, &Routing::default(), &m, &|_| {}).unwrap();
        assert_eq!(pending(&c), 5);
    }
}

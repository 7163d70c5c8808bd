//! The writer side of the event spool (docs/events.md, "Spool directory").
//!
//! What this module owns: appending one encoded record to `<dir>/events.log`
//! so that it is never interleaved with another writer's record and never
//! lands in a file the sidecar has already drained.
//!
//! Protocol, per append (the sidecar's rotator is the other half):
//! 1. `open(events.log, O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC|O_NOFOLLOW|
//!    O_NONBLOCK|O_NOCTTY, 0660)` and `fstat`: only a regular file is
//!    written ([`SpoolError::NotRegular`] otherwise, below);
//! 2. a **shared** `flock`, without waiting (`LOCK_NB`): many writers
//!    append at once, while the rotator's exclusive lock waits for every
//!    writer that locked before it. The rotator renames *before* it locks,
//!    so a writer that finds the lock taken holds the old file: it starts
//!    again, like step 3;
//! 3. the inode of the fd must still be the inode at the path (`lstat`);
//!    otherwise the file was rotated between open and lock, so start again
//!    (at most [`MAX_ATTEMPTS`] times, then [`SpoolError::RotationRace`]);
//! 4. if size + record would exceed `max_bytes`: [`SpoolError::Full`];
//! 5. exactly one `write(2)` of the whole record (`O_APPEND` makes the
//!    offset+write atomic between writers); a short write is an error, never
//!    completed by a second write, because a second write could land after
//!    another writer's record. The reader then sees a torn record and
//!    resynchronises at the next RS.
//! 6. close, which releases the lock.
//!
//! Invariants: no fsync (the page cache survives a process crash; the
//! delivery path must not wait on the disk), no retries of a failed write,
//! and nothing that can block: the spool directory is writable by every
//! mail process, so `events.log` may be anything. A symlink is never
//! followed (`O_NOFOLLOW`: the process would append to whatever it points
//! to); a FIFO is never waited on (`O_NONBLOCK`: opening one without a
//! reader used to block the delivering process, and so the delivery, until
//! something opened it for reading; with a reader, `fstat` refuses it);
//! a device or a directory is refused too, and so is a lock someone holds
//! exclusively for longer than a rotation takes. Each refusal drops the
//! event, which the caller counts and reports like any other drop.
//!
//! Why a file opened per append and not kept open: measured on the 2-core
//! test machine (issue 18), an append costs about 8 us this way and 6 us
//! with the descriptor kept (lock, fstat, lstat, write, unlock), against
//! milliseconds per delivery; keeping it would pin every rotated file in
//! every idle Dovecot process until its next append.
//!
//! Callers: the plugin's `message_stored` op, once per stored message, and
//! tests/benchmarks that play the plugin.

use std::fs::{File, Metadata, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// Name of the active spool file inside the spool directory.
pub const ACTIVE_FILE: &str = "events.log";
/// How often [`SpoolWriter::append`] reopens after losing a rotation race.
pub const MAX_ATTEMPTS: usize = 3;
/// Permissions of a newly created spool file (before the umask): the sidecar
/// reads it through its group.
pub const FILE_MODE: u32 = 0o660;

/// Why a record was not appended. Every variant means the event was dropped
/// (the caller counts it in the next record's `dropped_before`).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The active file would exceed its configured maximum size.
    #[error("spool file full")]
    Full,
    /// Opening, locking, inspecting or writing failed (a short write too).
    #[error("spool I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The file was rotated under us (or locked) on every attempt.
    #[error("spool file rotated or locked {MAX_ATTEMPTS} times during one append")]
    RotationRace,
    /// `events.log` is not a regular file (what it is): refused, never
    /// followed, written or waited on.
    #[error("spool file is a {0}, not a regular file; refused (remove it)")]
    NotRegular(&'static str),
}

impl SpoolError {
    /// Bounded label for logs and counters.
    pub fn error_type(&self) -> &'static str {
        match self {
            SpoolError::Full => "full",
            SpoolError::Io(_) => "io",
            SpoolError::RotationRace => "rotation_race",
            SpoolError::NotRegular(_) => "not_regular",
        }
    }

    /// Whether the same append could succeed later. The plugin never retries
    /// on the delivery path; this tells the log line which kind it was.
    pub fn is_retriable(&self) -> bool {
        match self {
            SpoolError::Full | SpoolError::RotationRace => true,
            // Until someone removes it.
            SpoolError::NotRegular(_) => false,
            SpoolError::Io(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
            ),
        }
    }
}

/// Appends records to `<dir>/events.log`. Holds no file open between calls,
/// so it is cheap to keep for a process's lifetime and never pins a rotated
/// file.
#[derive(Debug, Clone)]
pub struct SpoolWriter {
    path: PathBuf,
    max_bytes: u64,
}

impl SpoolWriter {
    /// A writer for `<dir>/events.log` that refuses to grow it beyond
    /// `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> SpoolWriter {
        SpoolWriter {
            path: dir.into().join(ACTIVE_FILE),
            max_bytes,
        }
    }

    /// The active file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one encoded record (from [`crate::wire::encode_record`]) with
    /// a single write, following the module's protocol.
    pub fn append(&self, record: &[u8]) -> Result<(), SpoolError> {
        for _ in 0..MAX_ATTEMPTS {
            let file = self.open()?;
            match file.try_lock_shared() {
                Ok(()) => {}
                // The rotator holds it: it was renamed away already.
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => return Err(e.into()),
            }
            let meta = file.metadata()?;
            if !self.still_current(&meta)? {
                // Rotated between our open and our lock: this file is being
                // (or has been) drained; appending to it could lose the record.
                continue;
            }
            let size = meta.len();
            // Dovecot's mail processes run with umask 0077, which turns the
            // 0660 of a file we just created into 0600: every other mail
            // uid would then be refused. The creator (the only one allowed
            // to, while the file is still empty) puts the group bits back.
            if size == 0 && meta.permissions().mode() & 0o777 != FILE_MODE {
                let _ = file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE));
            }
            if size.saturating_add(record.len() as u64) > self.max_bytes {
                return Err(SpoolError::Full);
            }
            return write_once(file, record);
        }
        Err(SpoolError::RotationRace)
    }

    /// Opens `events.log` for appending, creating it, only if it is (or
    /// becomes) a regular file; never follows, blocks or waits (module docs).
    fn open(&self) -> Result<File, SpoolError> {
        let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
        let file = match OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .custom_flags(flags)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) => {
                return Err(match e.raw_os_error() {
                    Some(libc::ELOOP) => SpoolError::NotRegular("symbolic link"),
                    // A FIFO without a reader, or a socket.
                    Some(libc::ENXIO) => SpoolError::NotRegular("FIFO or socket"),
                    Some(libc::EISDIR) => SpoolError::NotRegular("directory"),
                    _ => SpoolError::Io(e),
                })
            }
        };
        let kind = file.metadata()?.file_type();
        if kind.is_file() {
            return Ok(file);
        }
        Err(SpoolError::NotRegular(entry_kind(kind)))
    }

    fn still_current(&self, ours: &Metadata) -> Result<bool, SpoolError> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(now) => Ok(now.dev() == ours.dev() && now.ino() == ours.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(SpoolError::Io(e)),
        }
    }
}

/// What a spool entry that is not a regular file is (callers checked
/// `is_file` first), for the refusal: the writer here and the sidecar's
/// reader name it the same way.
pub fn entry_kind(kind: std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "FIFO"
    } else if kind.is_dir() {
        "directory"
    } else if kind.is_char_device() || kind.is_block_device() {
        "device"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

fn write_once(mut file: File, record: &[u8]) -> Result<(), SpoolError> {
    loop {
        match file.write(record) {
            Ok(n) if n == record.len() => return Ok(()),
            Ok(n) => {
                return Err(SpoolError::Io(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {n} of {} bytes", record.len()),
                )))
            }
            // EINTR before any byte was written: nothing reached the file, so
            // trying again still makes exactly one record.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SpoolError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_record, scan, MessageEventV1, Record, ScanItem};
    use std::collections::HashMap;
    use std::fs;
    use std::io::Read;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn record(writer: &str, seq: u64, pad: usize) -> Vec<u8> {
        encode_record(&Record::Message(MessageEventV1 {
            id: format!("{writer}:{seq}"),
            ts_ms: seq,
            user: "u".repeat(pad),
            folder: "INBOX".into(),
            uid: seq as u32,
            uidvalidity: 1,
            kind: "chat".into(),
            group_id: None,
            chat_keyword: true,
            routed: false,
            from: None,
            message_id: None,
            subject: Some("x".repeat(pad % 200)),
            pid: std::process::id(),
            dropped_before: 0,
        origin: Default::default(),
        headers_protected: false,
        }))
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "coi-spool-{tag}-{}-{}",
            std::process::id(),
            crate::wire::new_event_id()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The sidecar's rotation, as docs/events.md prescribes it.
    fn rotate(dir: &Path, n: u32) -> Vec<u8> {
        let active = dir.join(ACTIVE_FILE);
        let rotated = dir.join(format!("{ACTIVE_FILE}.{n}"));
        if fs::rename(&active, &rotated).is_err() {
            return Vec::new();
        }
        let mut f = File::open(&rotated).unwrap();
        f.lock().unwrap();
        f.unlock().unwrap();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        fs::remove_file(&rotated).unwrap();
        buf
    }

    fn collect(buf: &[u8], seen: &mut HashMap<String, u32>) {
        let (items, used) = scan(buf);
        assert_eq!(used, buf.len(), "a drained file ends on a record boundary");
        for item in items {
            match item {
                ScanItem::Record(r) => *seen.entry(r.id().to_string()).or_default() += 1,
                ScanItem::Rejected(e) => panic!("interleaved or torn record: {e}"),
            }
        }
    }

    const CHILD_ENV: &str = "COI_SPOOL_TEST_CHILD_DIR";
    const PER_WRITER: u64 = 2000;

    /// Child-process half of `concurrent_appends_survive_rotation`: runs only
    /// when re-executed with [`CHILD_ENV`] set.
    #[test]
    fn spool_child_writer() {
        let Ok(dir) = std::env::var(CHILD_ENV) else {
            return;
        };
        let w = SpoolWriter::new(dir, u64::MAX);
        let me = format!("p{}", std::process::id());
        for seq in 0..PER_WRITER {
            append_retrying(&w, &record(&me, seq, (seq as usize * 37) % 3000));
        }
    }

    /// Appends like the plugin, except that a lost rotation race (which the
    /// plugin would count as a drop) is retried, so every record must arrive.
    fn append_retrying(w: &SpoolWriter, rec: &[u8]) {
        loop {
            match w.append(rec) {
                Ok(()) => return,
                Err(SpoolError::RotationRace) => continue,
                Err(e) => panic!("append failed: {e}"),
            }
        }
    }

    #[test]
    fn concurrent_appends_survive_rotation() {
        const MIN_ROTATIONS: usize = 5;
        let dir = tempdir("race");
        let stop = Arc::new(AtomicBool::new(false));
        let rotations = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut threads = Vec::new();
        for t in 0..4 {
            let dir = dir.clone();
            let rotations = rotations.clone();
            threads.push(std::thread::spawn(move || {
                let w = SpoolWriter::new(dir, u64::MAX);
                // Keep writing until the rotator has rotated under us a few
                // times, however the scheduler interleaves the threads.
                let mut seq = 0u64;
                while seq < PER_WRITER || rotations.load(Ordering::Relaxed) < MIN_ROTATIONS {
                    append_retrying(&w, &record(&format!("t{t}"), seq, (seq as usize * 53) % 5000));
                    seq += 1;
                    assert!(seq < 1_000_000, "rotator never ran");
                }
                (format!("t{t}"), seq)
            }));
        }
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["--exact", "spool::tests::spool_child_writer", "--test-threads=1"])
                    .env(CHILD_ENV, &dir)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let rotator = {
            let dir = dir.clone();
            let stop = stop.clone();
            let rotations = rotations.clone();
            std::thread::spawn(move || {
                let mut seen = HashMap::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let drained = rotate(&dir, n);
                    if !drained.is_empty() {
                        rotations.fetch_add(1, Ordering::Relaxed);
                    }
                    collect(&drained, &mut seen);
                    std::thread::yield_now();
                }
                n += 1;
                collect(&rotate(&dir, n), &mut seen);
                seen
            })
        };
        let mut expected: Vec<(String, u64)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for mut c in children {
            let pid = c.id();
            assert!(c.wait().unwrap().success());
            expected.push((format!("p{pid}"), PER_WRITER));
        }
        stop.store(true, Ordering::Relaxed);
        let seen = rotator.join().unwrap();
        assert!(rotations.load(Ordering::Relaxed) >= MIN_ROTATIONS);
        let mut total = 0;
        for (w, count) in &expected {
            for seq in 0..*count {
                let id = format!("{w}:{seq}");
                assert_eq!(seen.get(&id), Some(&1), "record {id} lost or duplicated");
            }
            total += *count as usize;
        }
        assert_eq!(seen.len(), total);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_spool_refuses_and_keeps_file_intact() {
        let dir = tempdir("full");
        let rec = record("w", 1, 10);
        let w = SpoolWriter::new(&dir, rec.len() as u64 * 2);
        w.append(&rec).unwrap();
        w.append(&rec).unwrap();
        let err = w.append(&rec).unwrap_err();
        assert_eq!(err.error_type(), "full");
        assert!(err.is_retriable());
        assert_eq!(fs::metadata(w.path()).unwrap().len(), rec.len() as u64 * 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let w = SpoolWriter::new("/nonexistent/coi/spool", 1024);
        let err = w.append(b"\x1e{}\n").unwrap_err();
        assert_eq!(err.error_type(), "io");
        assert!(!err.is_retriable());
    }

    /// `append` in a thread: it must answer within 5 s (a FIFO used to
    /// block the caller until something opened it for reading).
    fn append_in_time(dir: &Path) -> Result<(), SpoolError> {
        let w = SpoolWriter::new(dir, 1 << 20);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(w.append(&record("w", 1, 1)));
        });
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("append blocked")
    }

    #[test]
    fn symlinks_fifos_sockets_and_directories_are_refused_without_blocking() {
        let dir = tempdir("hostile");
        let active = dir.join(ACTIVE_FILE);
        let victim = dir.join("victim");
        fs::write(&victim, b"keep").unwrap();
        type Plant<'a> = Box<dyn Fn() + 'a>;
        let cases: Vec<(&str, Plant<'_>)> = vec![
            ("symbolic link", Box::new(|| std::os::unix::fs::symlink(&victim, &active).unwrap())),
            ("symbolic link", Box::new(|| std::os::unix::fs::symlink("/dev/zero", &active).unwrap())),
            ("FIFO or socket", Box::new(|| mkfifo(&active))),
            ("directory", Box::new(|| fs::create_dir(&active).unwrap())),
        ];
        for (kind, plant) in cases {
            plant();
            match append_in_time(&dir) {
                Err(e @ SpoolError::NotRegular(_)) => {
                    assert_eq!(e.to_string(), format!("spool file is a {kind}, not a regular file; refused (remove it)"));
                    assert_eq!(e.error_type(), "not_regular");
                    assert!(!e.is_retriable());
                }
                other => panic!("{kind}: expected a refusal, got {other:?}"),
            }
            if active.is_dir() {
                fs::remove_dir(&active).unwrap();
            } else {
                fs::remove_file(&active).unwrap();
            }
        }
        assert_eq!(fs::read(&victim).unwrap(), b"keep", "never written through the link");
        // A socket at the path (bound, so opening it gives ENXIO).
        let _listener = std::os::unix::net::UnixListener::bind(&active).unwrap();
        assert!(matches!(append_in_time(&dir), Err(SpoolError::NotRegular("FIFO or socket"))));
        fs::remove_file(&active).unwrap();
        // A FIFO with a reader: the open succeeds, fstat refuses it, and
        // nothing is written into it.
        mkfifo(&active);
        let reader = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&active).unwrap();
        assert!(matches!(append_in_time(&dir), Err(SpoolError::NotRegular("FIFO"))));
        let mut buf = [0u8; 16];
        let got = (&reader).read(&mut buf);
        let empty = match &got {
            Ok(n) => *n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        };
        assert!(empty, "something was written into the FIFO: {got:?}");
        fs::remove_file(&active).unwrap();
        // And a regular file again is written.
        append_in_time(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    fn mkfifo(path: &Path) {
        assert!(std::process::Command::new("mkfifo").arg(path).status().unwrap().success());
    }

    #[test]
    fn an_exclusive_lock_held_by_someone_else_drops_instead_of_waiting() {
        let dir = tempdir("locked");
        let w = SpoolWriter::new(&dir, 1 << 20);
        w.append(&record("w", 1, 1)).unwrap();
        let holder = File::open(w.path()).unwrap();
        holder.lock().unwrap();
        assert!(matches!(append_in_time(&dir), Err(SpoolError::RotationRace)));
        holder.unlock().unwrap();
        append_in_time(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_file_mode_is_0660_whatever_the_umask() {
        let dir = tempdir("mode");
        let w = SpoolWriter::new(&dir, 1 << 20);
        w.append(&record("w", 1, 1)).unwrap();
        let mode = fs::metadata(w.path()).unwrap().permissions().mode() & 0o777;
        // the creator restores the group bits a umask (0077 in Dovecot's
        // mail processes) takes away
        assert_eq!(mode, 0o660, "mode {mode:o}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! How far the sidecar's intake lags behind the plugin: each spool file's
//! size against the offset committed for it in the queue database.
//!
//! The files are the active `events.log` and rotated `events.log.<n>` that
//! intake has not deleted yet. An offset counts only if the file still
//! starts with the fingerprint stored beside it, the same rule the intake
//! applies (`intake::reader`); otherwise the file will be read from its
//! start, so all of it is lag. Symlinks and other non-regular files are
//! listed as such, never opened.
//!
//! Callers: `status::report`.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use coi_core::spool::ACTIVE_FILE;
use rusqlite::Connection;
use serde::Serialize;

use crate::intake::rotate::rotated_files;
use crate::queue::ingest::load_offset;
use crate::queue::QueueError;

/// One spool file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpoolFile {
    /// File name inside the spool directory.
    pub name: String,
    /// Size in bytes (0 when not a regular file).
    pub size: u64,
    /// Bytes the sidecar has committed to its queue.
    pub offset: u64,
    /// `size - offset`: appended by the plugin, not yet taken in.
    pub lag_bytes: u64,
    /// Set when the file is not something intake reads (e.g. a symlink).
    pub problem: Option<String>,
}

/// The spool directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpoolState {
    /// Its path.
    pub dir: String,
    /// Its files, active first, then rotated oldest first.
    pub files: Vec<SpoolFile>,
    /// Sum of `lag_bytes`.
    pub lag_bytes: u64,
    /// Why the directory could not be read, if it could not.
    pub error: Option<String>,
}

fn fingerprint_matches(path: &Path, fingerprint: &[u8]) -> bool {
    let Ok(f) = File::open(path) else { return false };
    let mut head = vec![0u8; fingerprint.len()];
    let mut filled = 0;
    while filled < head.len() {
        match f.read_at(&mut head[filled..], filled as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled == head.len() && head == fingerprint
}

fn inspect(conn: Option<&Connection>, dir: &Path, name: &str) -> Result<Option<SpoolFile>, QueueError> {
    let path = dir.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Ok(Some(SpoolFile { name: name.into(), size: 0, offset: 0, lag_bytes: 0, problem: Some(e.to_string()) }))
        }
    };
    if !meta.file_type().is_file() {
        return Ok(Some(SpoolFile {
            name: name.into(),
            size: 0,
            offset: 0,
            lag_bytes: 0,
            problem: Some("not a regular file; intake does not read it".into()),
        }));
    }
    let size = meta.len();
    let offset = match conn {
        Some(conn) => match load_offset(conn, meta.dev(), meta.ino())? {
            Some((offset, fp)) if offset > 0 && offset <= size && fingerprint_matches(&path, &fp) => offset,
            _ => 0,
        },
        None => 0,
    };
    Ok(Some(SpoolFile { name: name.into(), size, offset, lag_bytes: size - offset, problem: None }))
}

/// Reads the spool directory `dir`; offsets come from `conn` (none: all is lag).
pub fn read(conn: Option<&Connection>, dir: &Path) -> Result<SpoolState, QueueError> {
    let mut state = SpoolState { dir: dir.display().to_string(), files: Vec::new(), lag_bytes: 0, error: None };
    let rotated = match rotated_files(dir) {
        Ok(r) => r,
        Err(e) => {
            state.error = Some(e.to_string());
            return Ok(state);
        }
    };
    let names = std::iter::once(ACTIVE_FILE.to_string()).chain(
        rotated
            .iter()
            .filter_map(|(_, p)| p.file_name().and_then(|n| n.to_str()).map(str::to_string)),
    );
    for name in names {
        if let Some(f) = inspect(conn, dir, &name)? {
            state.lag_bytes += f.lag_bytes;
            state.files.push(f);
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::ingest::{commit_batch, FileProgress};
    use crate::queue::schema::testing::temp_db;

    fn progress(path: &Path, offset: u64, fingerprint: &[u8]) -> FileProgress {
        let m = std::fs::metadata(path).unwrap();
        FileProgress { dev: m.dev(), ino: m.ino(), offset, fingerprint: fingerprint.to_vec() }
    }

    #[test]
    fn lag_is_size_minus_the_committed_offset_when_the_fingerprint_matches() {
        let (_d, mut c) = temp_db();
        let spool = tempfile::tempdir().unwrap();
        let active = spool.path().join(ACTIVE_FILE);
        std::fs::write(&active, b"0123456789abcdef").unwrap();
        std::fs::write(spool.path().join("events.log.1"), b"rotated-and-unread").unwrap();
        commit_batch(&mut c, &[], &progress(&active, 10, b"0123"), 1).unwrap();

        let s = read(Some(&c), spool.path()).unwrap();
        let names: Vec<&str> = s.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["events.log", "events.log.1"]);
        assert_eq!((s.files[0].size, s.files[0].offset, s.files[0].lag_bytes), (16, 10, 6));
        assert_eq!((s.files[1].offset, s.files[1].lag_bytes), (0, 18));
        assert_eq!(s.lag_bytes, 24);

        // Same inode, other content: intake would start over, so all is lag.
        commit_batch(&mut c, &[], &progress(&active, 10, b"XXXX"), 1).unwrap();
        let s = read(Some(&c), spool.path()).unwrap();
        assert_eq!(s.files[0].lag_bytes, 16);

        let s = read(None, spool.path()).unwrap();
        assert_eq!(s.lag_bytes, 34, "without a queue nothing was taken in");
    }

    #[test]
    fn symlinks_are_reported_not_followed_and_a_missing_dir_is_an_error_entry() {
        let spool = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/zero", spool.path().join(ACTIVE_FILE)).unwrap();
        let s = read(None, spool.path()).unwrap();
        assert_eq!(s.files.len(), 1);
        assert!(s.files[0].problem.as_deref().unwrap().contains("not a regular file"));
        assert_eq!(s.lag_bytes, 0);

        let s = read(None, &spool.path().join("missing")).unwrap();
        assert!(s.error.is_some() && s.files.is_empty());
    }
}

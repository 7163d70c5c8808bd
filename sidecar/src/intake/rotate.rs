//! The sidecar's half of the spool rotation protocol (docs/events.md).
//!
//! What this module owns: naming rotated files (`events.log.<n>`, `n`
//! increasing), renaming the active file, and "sealing" a rotated file:
//! taking and releasing an exclusive `flock`, which waits for every writer
//! that locked the file before the rename. Writers that opened it but lock
//! later see the inode mismatch and move to the new `events.log`
//! (`coi_core::spool`). After [`seal`] returns nobody appends to the file
//! again, so it can be drained to its end and deleted.
//!
//! Callers: `intake::pump` on its own thread (the lock blocks, briefly).
//! Rotation renames whatever `events.log` is (a rename never follows a
//! symlink); the pump drains only regular files.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use coi_core::spool::ACTIVE_FILE;

/// Rotated files present in `dir`, oldest (smallest `n`) first.
pub fn rotated_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let prefix = format!("{ACTIVE_FILE}.");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(n) = name.strip_prefix(&prefix).and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        found.push((n, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// Renames `events.log` to `events.log.<n>` with `n` one more than any
/// rotated file present. `None` if there was no active file.
pub fn rotate_active(dir: &Path) -> io::Result<Option<PathBuf>> {
    let next = rotated_files(dir)?.last().map_or(1, |(n, _)| n + 1);
    let target = dir.join(format!("{ACTIVE_FILE}.{next}"));
    match std::fs::rename(dir.join(ACTIVE_FILE), &target) {
        Ok(()) => Ok(Some(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until no writer holds (or will take) a lock on the rotated file,
/// opened by the caller (`intake::reader::open_spool_file`: a regular file,
/// never a symlink or a FIFO).
pub fn seal(file: &File) -> io::Result<()> {
    file.lock()?;
    file.unlock()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_names_increase_and_sort_numerically() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(rotate_active(d.path()).unwrap(), None);
        for _ in 0..11 {
            std::fs::write(d.path().join(ACTIVE_FILE), b"x").unwrap();
            rotate_active(d.path()).unwrap().unwrap();
        }
        std::fs::write(d.path().join("events.log.junk"), b"").unwrap();
        let names: Vec<u64> = rotated_files(d.path()).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, (1..=11).collect::<Vec<_>>());
        seal(&File::open(d.path().join("events.log.3")).unwrap()).unwrap();
    }
}

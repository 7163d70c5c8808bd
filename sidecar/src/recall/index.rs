//! The index of stored copies (table `coi_copies`, see `schema`).
//!
//! What this module owns: the Message-ID hash that keys the index, adding
//! a copy, finding the copies of a recall, finding and marking the
//! reader's copy, and pruning by age.
//!
//! Invariants: only `local_copy` records fill the index, and the plugin
//! writes those only for copies whose sender passed the trust check, so
//! every row is a copy of a message its `sender` really submitted. Lookups
//! are by key (hash + sender, user + hash): never a scan of mailboxes.

use rusqlite::{params, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

use coi_core::recall::exec::CopyRef;
use coi_core::wire::LocalCopyV1;

/// First 16 bytes of SHA-256 of the normalized Message-ID.
pub fn msgid_hash(message_id: &str) -> Vec<u8> {
    Sha256::digest(message_id.as_bytes())[..16].to_vec()
}

/// Adds a copy (a copy recorded twice is kept once). Returns whether it
/// was new.
pub fn insert_copy(tx: &Transaction<'_>, c: &LocalCopyV1) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO coi_copies (user, folder, uidvalidity, uid, msgid_hash, sender, ts_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![c.user, c.folder, c.uidvalidity, c.uid, msgid_hash(&c.message_id), c.sender, c.ts_ms as i64])?;
    Ok(n > 0)
}

/// Every recipient's copies of `message_id` sent by `sender`, the
/// sender's own copies left out, grouped by user (in user order).
pub fn copies_of(tx: &Transaction<'_>, message_id: &str, sender: &str) -> rusqlite::Result<Vec<(String, Vec<CopyRef>)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT user, folder, uidvalidity, uid FROM coi_copies
          WHERE msgid_hash = ?1 AND sender = ?2 ORDER BY user, folder, uid",
    )?;
    let rows = stmt.query_map(params![msgid_hash(message_id), sender], |r| {
        Ok((r.get::<_, String>(0)?, CopyRef { folder: r.get(1)?, uidvalidity: r.get(2)?, uid: r.get(3)? }))
    })?;
    let mut out: Vec<(String, Vec<CopyRef>)> = Vec::new();
    for row in rows {
        let (user, copy) = row?;
        if user.eq_ignore_ascii_case(sender) {
            continue;
        }
        match out.last_mut() {
            Some((u, copies)) if *u == user => copies.push(copy),
            _ => out.push((user, vec![copy])),
        }
    }
    Ok(out)
}

/// The sender of `user`'s copies of `message_id` if they are in the index
/// and not yet reported read; marks them read at `now_ms`.
pub fn mark_read(tx: &Transaction<'_>, user: &str, message_id: &str, now_ms: u64) -> rusqlite::Result<Option<String>> {
    let hash = msgid_hash(message_id);
    let sender: Option<String> = tx
        .prepare_cached("SELECT sender FROM coi_copies WHERE user = ?1 AND msgid_hash = ?2 AND read_ms IS NULL LIMIT 1")?
        .query_row(params![user, hash], |r| r.get(0))
        .optional()?;
    if sender.is_some() {
        tx.prepare_cached("UPDATE coi_copies SET read_ms = ?3 WHERE user = ?1 AND msgid_hash = ?2")?
            .execute(params![user, hash, now_ms as i64])?;
    }
    Ok(sender)
}

/// Forgets copies a recall removed or did not find.
pub fn forget(tx: &Transaction<'_>, user: &str, copy: &CopyRef) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM coi_copies WHERE user = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4")?
        .execute(params![user, copy.folder, copy.uidvalidity, copy.uid])?;
    Ok(())
}

/// Drops copies and finished recalls older than `retention_ms`. Returns
/// the copies dropped.
pub fn prune(tx: &Transaction<'_>, now_ms: u64, retention_ms: u64) -> rusqlite::Result<usize> {
    let cutoff = now_ms.saturating_sub(retention_ms) as i64;
    let n = tx.execute("DELETE FROM coi_copies WHERE ts_ms < ?1", params![cutoff])?;
    tx.execute(
        "DELETE FROM coi_recall_results WHERE request IN
           (SELECT request FROM coi_recalls WHERE requested_ms < ?1)",
        params![cutoff],
    )?;
    tx.execute("DELETE FROM coi_recalls WHERE requested_ms < ?1", params![cutoff])?;
    Ok(n)
}

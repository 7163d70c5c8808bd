//! The recipient's side of a recall: what the sidecar asks a recipient's
//! account to do (through doveadm, docs/recall.md "Carrying it out") and
//! the outcome of each copy.
//!
//! The sidecar sets `/private/vendor/vendor.dovecot/coi/recall-execute` in
//! the recipient's server metadata to the JSON of an [`ExecRequest`]: the
//! copies delivery recorded for that recipient. The plugin, running inside
//! doveadm as that user, removes each copy that is still unseen and
//! reports every copy's [`CopyOutcome`] in a `recall_outcome` record.
//!
//! Invariants: pure; [`ExecRequest::parse`] accepts only well-formed,
//! bounded requests.
//!
//! Callers: the plugin's recall ops, the sidecar's recall jobs.

use serde::{Deserialize, Serialize};

use super::request::normalize_message_id;

/// The METADATA key (server) doveadm sets to carry out a recall.
pub const EXECUTE_KEY: &str = "/private/vendor/vendor.dovecot/coi/recall-execute";
/// Copies of one recipient handled by one request, at most (keeps an
/// outcome record far below the 16 KiB record limit: names are never cut).
pub const MAX_COPIES: usize = 16;
/// Longest folder name or user accepted.
pub const NAME_MAX: usize = 512;

/// One stored copy, as delivery recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRef {
    /// Folder it was stored in.
    pub folder: String,
    /// UIDVALIDITY of the folder then.
    pub uidvalidity: u32,
    /// Its UID.
    pub uid: u32,
}

/// What a recipient's account is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The id of the sender's request record (ties the outcome to it).
    pub request: String,
    /// The sender (every copy must carry this From address).
    pub sender: String,
    /// The Message-ID (every copy must carry it).
    pub message_id: String,
    /// The copies to recall.
    pub copies: Vec<CopyRef>,
}

impl ExecRequest {
    /// Parses and checks a request; `None` when malformed.
    pub fn parse(json: &[u8]) -> Option<ExecRequest> {
        let r: ExecRequest = serde_json::from_slice(json).ok()?;
        let ok = !r.request.is_empty()
            && r.request.len() <= NAME_MAX
            && r.sender.contains('@')
            && r.sender.len() <= NAME_MAX
            && normalize_message_id(r.message_id.as_bytes()).as_deref() == Some(r.message_id.as_str())
            && !r.copies.is_empty()
            && r.copies.len() <= MAX_COPIES
            && r.copies.iter().all(|c| !c.folder.is_empty() && c.folder.len() <= NAME_MAX && c.uid > 0);
        ok.then_some(r)
    }
}

/// What happened to one copy (and, aggregated, to one recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyOutcome {
    /// It was unseen and is now expunged.
    Recalled,
    /// It carries `\Seen`: left alone.
    AlreadyRead,
    /// It is not there any more (expunged, moved, or not this message).
    NotFound,
    /// It could not be checked or removed (an error, logged); left alone.
    Failed,
}

impl CopyOutcome {
    /// Every outcome, for metric labels.
    pub const ALL: [CopyOutcome; 4] =
        [CopyOutcome::Recalled, CopyOutcome::AlreadyRead, CopyOutcome::NotFound, CopyOutcome::Failed];

    /// The wire name; a bounded metric label.
    pub fn name(self) -> &'static str {
        match self {
            CopyOutcome::Recalled => "recalled",
            CopyOutcome::AlreadyRead => "already-read",
            CopyOutcome::NotFound => "not-found",
            CopyOutcome::Failed => "failed",
        }
    }

    /// From the C enum code (`enum coi_recall_outcome`).
    pub fn from_code(code: i32) -> CopyOutcome {
        match code {
            0 => CopyOutcome::Recalled,
            1 => CopyOutcome::AlreadyRead,
            2 => CopyOutcome::NotFound,
            _ => CopyOutcome::Failed,
        }
    }
}

/// One recipient's outcome from its copies': a read copy means the
/// recipient has read the message (`already-read`, even if another,
/// unread copy was removed); else any removed copy means `recalled`; else
/// a failure, else `not-found`.
pub fn aggregate(copies: &[CopyOutcome]) -> CopyOutcome {
    [CopyOutcome::AlreadyRead, CopyOutcome::Recalled, CopyOutcome::Failed]
        .into_iter()
        .find(|o| copies.contains(o))
        .unwrap_or(CopyOutcome::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let ok = br#"{"request":"r1","sender":"a@b","message_id":"<m@x>","copies":[{"folder":"INBOX","uidvalidity":1,"uid":3}]}"#;
        assert_eq!(ExecRequest::parse(ok).unwrap().copies[0].uid, 3);
        let bad_uid = br#"{"request":"r1","sender":"a@b","message_id":"<m@x>","copies":[{"folder":"INBOX","uidvalidity":1,"uid":0}]}"#;
        assert!(ExecRequest::parse(bad_uid).is_none());
        let no_copies = br#"{"request":"r1","sender":"a@b","message_id":"<m@x>","copies":[]}"#;
        assert!(ExecRequest::parse(no_copies).is_none());
        let bad_id = br#"{"request":"r1","sender":"a@b","message_id":"m","copies":[{"folder":"INBOX","uidvalidity":1,"uid":1}]}"#;
        assert!(ExecRequest::parse(bad_id).is_none());
    }

    #[test]
    fn aggregation_never_claims_a_read_recipient_was_recalled() {
        use CopyOutcome::*;
        assert_eq!(aggregate(&[Recalled, AlreadyRead]), AlreadyRead);
        assert_eq!(aggregate(&[Recalled, NotFound]), Recalled);
        assert_eq!(aggregate(&[NotFound, Failed]), Failed);
        assert_eq!(aggregate(&[NotFound]), NotFound);
        assert_eq!(aggregate(&[]), NotFound);
        assert_eq!(serde_json::to_string(&AlreadyRead).unwrap(), "\"already-read\"");
    }
}

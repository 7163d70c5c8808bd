//! Read status (docs/recall.md, "Read status"): the recipient's consent and
//! the request that marks the sender's own copy read.
//!
//! - Consent: `/private/vendor/vendor.dovecot/coi/config/read-status`,
//!   `yes`, `no` or NIL (the site default, `coi_default_read_status`).
//! - When a consenting recipient first sets `\Seen` on a copy (or an MDN
//!   arrives, [`super::mdn`]), the sidecar sets
//!   `/private/vendor/vendor.dovecot/coi/read-mark` in the sender's server
//!   metadata (through doveadm) to a [`ReadMark`]; the plugin, running as
//!   the sender, adds [`READ_KEYWORD`] to the sender's own copies of that
//!   Message-ID (Sent, the chats folder, INBOX).
//!
//! Invariants: pure; malformed marks are refused.
//!
//! Callers: the plugin's recall ops, the sidecar's read jobs.

use serde::{Deserialize, Serialize};

use super::request::normalize_message_id;
use crate::settings::parse_bool;

/// The keyword the sender's own copy gets once a recipient has read it.
pub const READ_KEYWORD: &str = "$CoiRead";
/// The METADATA key (server) doveadm sets to mark the sender's copies.
pub const READ_MARK_KEY: &str = "/private/vendor/vendor.dovecot/coi/read-mark";
/// Longest reader name kept.
pub const READER_MAX: usize = 512;

/// How the read became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadVia {
    /// A local recipient set `\Seen`.
    Seen,
    /// An MDN (RFC 8098) with disposition `displayed` arrived.
    Mdn,
}

impl ReadVia {
    /// The wire name; a bounded metric label.
    pub fn name(self) -> &'static str {
        match self {
            ReadVia::Seen => "seen",
            ReadVia::Mdn => "mdn",
        }
    }
}

/// What the sender's account is asked to mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMark {
    /// The Message-ID of the sender's message.
    pub message_id: String,
    /// Who read it: a local user name, or the MDN's From address.
    pub reader: String,
    /// How it became known.
    pub via: ReadVia,
}

impl ReadMark {
    /// Parses and checks a mark; `None` when malformed.
    pub fn parse(json: &[u8]) -> Option<ReadMark> {
        let m: ReadMark = serde_json::from_slice(json).ok()?;
        let ok = normalize_message_id(m.message_id.as_bytes()).as_deref() == Some(m.message_id.as_str())
            && m.reader.len() <= READER_MAX;
        ok.then_some(m)
    }
}

/// Whether a recipient consents: the stored `read-status` value if any,
/// else the site default.
pub fn consents(stored: Option<&[u8]>, site_default: bool) -> bool {
    stored.and_then(|v| parse_bool(v.trim_ascii())).unwrap_or(site_default)
}

/// Checks a SETMETADATA value for `read-status` (`None` = NIL).
pub fn check_consent_value(value: Option<&[u8]>) -> Result<(), &'static str> {
    match value {
        None => Ok(()),
        Some(v) if v.eq_ignore_ascii_case(b"yes") || v.eq_ignore_ascii_case(b"no") => Ok(()),
        Some(_) => Err("COI read-status must be yes, no or NIL (the site default)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_defaults_and_values() {
        assert!(!consents(None, false));
        assert!(consents(None, true));
        assert!(!consents(Some(b"no"), true));
        assert!(consents(Some(b"yes"), false));
        assert!(check_consent_value(Some(b"YES")).is_ok());
        assert!(check_consent_value(None).is_ok());
        assert!(check_consent_value(Some(b"maybe")).is_err());
    }

    #[test]
    fn marks_are_checked() {
        let m = ReadMark { message_id: "<a@b>".into(), reader: "bob".into(), via: ReadVia::Mdn };
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(ReadMark::parse(&json), Some(m));
        assert!(ReadMark::parse(br#"{"message_id":"x","reader":"b","via":"seen"}"#).is_none());
    }
}

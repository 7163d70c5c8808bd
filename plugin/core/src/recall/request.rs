//! The sender's side of a recall: the IMAP request and the state
//! GETMETADATA shows for it (docs/imap.md, "Recall").
//!
//! A request is `SETMETADATA "" (/private/vendor/vendor.dovecot/coi/recall/<id>
//! "<message-id>")`: the client picks `<id>` ([`check_request_id`]) and
//! names the Message-ID of a message it sent ([`normalize_message_id`]).
//! The entry then reads as the JSON of [`RecallState`]: `pending` until
//! every local recipient's account has answered, then `done` with one
//! outcome per recipient. Setting it to NIL forgets it.
//!
//! Invariants: pure; ids and Message-IDs are checked before anything is
//! stored or sent to the sidecar; state JSON written by the sidecar is
//! parsed back into [`RecallState`] before it is stored (so a client only
//! ever reads well-formed state).
//!
//! Callers: the plugin's recall ops and the sidecar's recall bookkeeping.

use serde::{Deserialize, Serialize};

use super::exec::CopyOutcome;

/// The METADATA key prefix of recall entries (server metadata).
pub const RECALL_KEY_PREFIX: &str = "/private/vendor/vendor.dovecot/coi/recall/";
/// Longest request id.
pub const REQUEST_ID_MAX: usize = 64;
/// Recall entries a user may keep at once (pending or done).
pub const MAX_ENTRIES: u32 = 100;
/// Longest Message-ID, bytes (RFC 5322 line limit).
pub const MESSAGE_ID_MAX: usize = 998;
/// Local recipients listed in one outcome, at most.
pub const MAX_RECIPIENTS: usize = 1000;

/// What the entry says about recipients the server cannot reach.
pub const REMOTE_NOTE: &str = "out-of-reach: recipients on other servers keep their copy";

/// `<id>` of a request key: 1 to 64 of `A-Z a-z 0-9 - _`, returned
/// lowercased (IMAP and doveadm lowercase METADATA keys).
pub fn check_request_id(id: &[u8]) -> Option<String> {
    let ok = (1..=REQUEST_ID_MAX).contains(&id.len())
        && id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    ok.then(|| String::from_utf8_lossy(id).to_ascii_lowercase())
}

/// The Message-ID in the form delivery recorded it: surrounding space
/// removed, angle brackets added when missing. `None` for anything that is
/// not one printable-ASCII `left@right` id of at most [`MESSAGE_ID_MAX`]
/// bytes.
pub fn normalize_message_id(value: &[u8]) -> Option<String> {
    let v = std::str::from_utf8(value.trim_ascii()).ok()?;
    let inner = match (v.strip_prefix('<'), v.ends_with('>')) {
        (Some(rest), true) => &rest[..rest.len() - 1],
        (None, false) => v,
        _ => return None,
    };
    let ok = inner.len() + 2 <= MESSAGE_ID_MAX
        && inner.contains('@')
        && inner.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    ok.then(|| format!("<{inner}>"))
}

/// The first `<...>` id of a header value (delivery's Message-ID may carry
/// comments or folding), normalized; or the whole value if it has none.
pub fn message_id_from_header(value: &[u8]) -> Option<String> {
    let v = &value[..value.len().min(MESSAGE_ID_MAX * 2)];
    if let (Some(open), Some(close)) = (v.iter().position(|b| *b == b'<'), v.iter().position(|b| *b == b'>')) {
        if open < close {
            return normalize_message_id(&v[open..=close]);
        }
    }
    normalize_message_id(v)
}

/// Where a recall stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Progress {
    /// Sent to the recipients' accounts; not all have answered yet.
    Pending,
    /// Every local recipient's account answered.
    Done,
    /// The server cannot carry recalls out (no doveadm access configured
    /// for the sidecar); nothing was touched.
    Unavailable,
}

/// One local recipient's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientOutcome {
    /// The recipient's Dovecot user name.
    pub user: String,
    /// `recalled`, `already-read`, `not-found` or `failed` (exec::aggregate).
    pub outcome: CopyOutcome,
    /// Copies the server had recorded for this recipient.
    pub copies: u32,
}

/// The JSON value of a recall entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallState {
    /// The Message-ID recalled.
    #[serde(rename = "message-id")]
    pub message_id: String,
    /// Where it stands.
    pub state: Progress,
    /// When the request was made, unix ms.
    pub requested: u64,
    /// Local recipients and their outcome (empty while pending, and when no
    /// copy on this server was recorded as sent by the requester).
    #[serde(default)]
    pub recipients: Vec<RecipientOutcome>,
    /// Always [`REMOTE_NOTE`]: remote recipients cannot be reached.
    pub remote: String,
}

impl RecallState {
    /// The state right after the request.
    pub fn pending(message_id: String, requested: u64) -> RecallState {
        RecallState {
            message_id,
            state: Progress::Pending,
            requested,
            recipients: Vec::new(),
            remote: REMOTE_NOTE.to_string(),
        }
    }

    /// JSON text (never fails for this shape).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses state the sidecar sends back; `None` when malformed.
    pub fn parse(json: &[u8]) -> Option<RecallState> {
        let state: RecallState = serde_json::from_slice(json).ok()?;
        let ok = normalize_message_id(state.message_id.as_bytes()).as_deref() == Some(state.message_id.as_str())
            && state.recipients.len() <= MAX_RECIPIENTS;
        ok.then_some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(check_request_id(b"Msg-1_a").as_deref(), Some("msg-1_a"));
        assert_eq!(check_request_id(&[b'a'; 64]).map(|s| s.len()), Some(64));
        for bad in [&b""[..], &[b'a'; 65], b"a/b", b"a b", b"\xff"] {
            assert_eq!(check_request_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn message_ids() {
        assert_eq!(normalize_message_id(b" <a.b@c> ").as_deref(), Some("<a.b@c>"));
        assert_eq!(normalize_message_id(b"a.b@c").as_deref(), Some("<a.b@c>"));
        for bad in [&b"<a b@c>"[..], b"<abc>", b"<a@b", b"", b"<<a@b>>", b"a@\nb"] {
            assert_eq!(normalize_message_id(bad), None, "{bad:?}");
        }
        assert_eq!(message_id_from_header(b" <x@y> (comment)").as_deref(), Some("<x@y>"));
        assert_eq!(message_id_from_header(b"\r\n\t<x@y>").as_deref(), Some("<x@y>"));
    }

    #[test]
    fn state_round_trips_and_malformed_state_is_refused() {
        let mut s = RecallState::pending("<a@b>".into(), 5);
        assert_eq!(RecallState::parse(s.to_json().as_bytes()), Some(s.clone()));
        s.state = Progress::Done;
        s.recipients.push(RecipientOutcome { user: "bob".into(), outcome: CopyOutcome::AlreadyRead, copies: 2 });
        let json = s.to_json();
        assert!(json.contains("\"message-id\":\"<a@b>\""), "{json}");
        assert!(json.contains("\"outcome\":\"already-read\""), "{json}");
        assert_eq!(RecallState::parse(json.as_bytes()), Some(s));
        assert_eq!(RecallState::parse(br#"{"message-id":"nope","state":"done","requested":1,"remote":""}"#), None);
        assert_eq!(RecallState::parse(b"garbage"), None);
    }
}

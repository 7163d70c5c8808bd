//! Target `recall`: the parsers of recall and read status
//! (`coi_core::recall`): the sender trust check over Received headers, the
//! MDN reader, and the JSON the sidecar hands the plugin (recall requests
//! for a recipient's account, the sender's state, read marks).
//!
//! Input: 1 byte selecting the parser, then the bytes. For the trust check
//! the rest is split at NUL bytes into Received headers, From and envelope
//! sender; for the MDN reader at the first NUL into Content-Type and body.
//!
//! Properties:
//! - nothing panics, whatever the bytes;
//! - a trusted sender is always a lowercased address that equals the From
//!   and the envelope sender given (ASCII case-insensitive), and never comes
//!   out when trust is off;
//! - an MDN's Original-Message-ID is normalized (`<left@right>`, printable
//!   ASCII);
//! - accepted JSON is within the limits and serialises back to JSON that is
//!   accepted again.

use coi_core::recall::exec::{ExecRequest, MAX_COPIES};
use coi_core::recall::mdn;
use coi_core::recall::read::ReadMark;
use coi_core::recall::request::{normalize_message_id, RecallState};
use coi_core::recall::settings::SenderTrust;
use coi_core::recall::trust;

/// Runs one recall parser on `data`.
pub fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => check_trust(rest),
        1 => check_mdn(rest),
        2 => check_exec(rest),
        _ => check_state_and_mark(rest),
    }
}

fn check_trust(rest: &[u8]) {
    let mut parts: Vec<&[u8]> = rest.split(|b| *b == 0).collect();
    let envelope = parts.pop().unwrap_or_default();
    let from = parts.pop().unwrap_or_default();
    assert!(trust::check(SenderTrust::None, &parts, Some(from), Some(envelope)).sender().is_none());
    if let Some(sender) = trust::check(SenderTrust::Received, &parts, Some(from), Some(envelope)).sender() {
        assert_eq!(sender, sender.to_ascii_lowercase());
        assert!(sender.contains('@'));
        let plain = |b: &[u8]| {
            let s = String::from_utf8_lossy(b.trim_ascii()).to_ascii_lowercase();
            s.trim_start_matches('<').trim_end_matches('>').to_string()
        };
        assert_eq!(plain(from), sender);
        assert_eq!(plain(envelope), sender);
    }
}

fn check_mdn(rest: &[u8]) {
    let (ct, body) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &b""[..]),
    };
    if let Some(m) = mdn::parse(ct, body) {
        assert_eq!(normalize_message_id(m.original_message_id.as_bytes()).as_deref(), Some(m.original_message_id.as_str()));
    }
}

fn check_exec(rest: &[u8]) {
    if let Some(r) = ExecRequest::parse(rest) {
        assert!(!r.copies.is_empty() && r.copies.len() <= MAX_COPIES);
        let again = serde_json::to_vec(&r).expect("serialisable");
        assert_eq!(ExecRequest::parse(&again), Some(r));
    }
}

fn check_state_and_mark(rest: &[u8]) {
    if let Some(s) = RecallState::parse(rest) {
        assert_eq!(RecallState::parse(s.to_json().as_bytes()), Some(s));
    }
    if let Some(m) = ReadMark::parse(rest) {
        let again = serde_json::to_vec(&m).expect("serialisable");
        assert_eq!(ReadMark::parse(&again), Some(m));
    }
}

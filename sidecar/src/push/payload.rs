//! The JSON a Web Push subscriber decrypts (DESIGN §3, the COI IMAP WebPush
//! spec's "Payload Data Format"), and the validation message.
//!
//! What this module owns: pure functions from a queued [`PushMessageV1`] to
//! the plaintext bytes, under these rules:
//! - `from-email` (lowercased), `from-name`, `subject`, `msg-id`: cut to
//!   [`TEXT_MAX_BYTES`] on a UTF-8 boundary with `…` (U+2026) appended when
//!   cut; cutting happens before JSON escaping, so an escape sequence is
//!   never split. Absent or empty values are left out.
//! - `msg-id` without the angle brackets of the header (`<a@b>` -> `a@b`).
//! - `date`: RFC 3339 (UTC, seconds) of the Date header; left out when the
//!   message had none (or an absurd one).
//! - `uid`, `uidvalidity`: numbers. `folder`: left out when longer than
//!   [`FOLDER_MAX_BYTES`]. `group-id`: only for group chats, left out when
//!   longer than [`GROUP_ID_MAX_BYTES`] (a cut id is useless).
//! - `content`: only when the whole encrypted request body, 86 header
//!   bytes + plaintext + 1 padding delimiter + 16 tag, stays within
//!   [`MAX_BODY_BYTES`]; otherwise the payload goes without it.
//!
//! Invariant: the result always fits [`MAX_BODY_BYTES`] once encrypted, or
//! is an error (it cannot happen with the limits above, but a payload that
//! cannot be sent must not be sent half).
//!
//! Callers: `push::webpush`.

use coi_core::wire::{truncate_utf8, PushMessageV1};
use serde::Serialize;

use super::ece::encrypted_len;
use crate::time::rfc3339_from_unix_secs;

/// A push service must accept 4096 bytes of body (RFC 8030 §7.2); more is
/// not portable.
pub const MAX_BODY_BYTES: usize = 4096;
/// Where text fields are cut (the spec: "at least the first 100 bytes").
pub const TEXT_MAX_BYTES: usize = 100;
/// Longest `folder` sent (the spec: omit it when longer than 200 bytes).
pub const FOLDER_MAX_BYTES: usize = 200;
/// Longest `group-id` sent (the spec: max 128 octets).
pub const GROUP_ID_MAX_BYTES: usize = 128;
/// Longest validation secret (the spec: at most 1 kB).
pub const VALIDATION_MAX_BYTES: usize = 1024;

const ELLIPSIS: char = '\u{2026}';

/// Why no payload could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Even without `content` the encrypted body would exceed the budget.
    #[error("payload of {0} bytes does not fit a push message")]
    TooLarge(usize),
}

/// `s` cut to `max` bytes on a character boundary, with `…` when cut.
pub fn cut_with_ellipsis(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut out = truncate_utf8(s, max).to_string();
    out.push(ELLIPSIS);
    out
}

fn text(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| cut_with_ellipsis(s, TEXT_MAX_BYTES))
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "from-email", skip_serializing_if = "Option::is_none")]
    from_email: Option<String>,
    #[serde(rename = "from-name", skip_serializing_if = "Option::is_none")]
    from_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<String>,
    #[serde(rename = "msg-id", skip_serializing_if = "Option::is_none")]
    msg_id: Option<String>,
    uid: u32,
    uidvalidity: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    folder: Option<&'a str>,
    #[serde(rename = "group-id", skip_serializing_if = "Option::is_none")]
    group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// What [`message`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plaintext {
    /// The JSON bytes to encrypt.
    pub bytes: Vec<u8>,
    /// Whether `content` is included.
    pub with_content: bool,
}

/// The payload for a new message (see the module docs).
pub fn message(m: &PushMessageV1) -> Result<Plaintext, PayloadError> {
    let msg_id = m.message_id.as_deref().map(|id| {
        let id = id.trim();
        id.strip_prefix('<').and_then(|i| i.strip_suffix('>')).unwrap_or(id).to_string()
    });
    let mut body = Body {
        from_email: text(&m.from_email.as_ref().map(|e| e.to_lowercase())),
        from_name: text(&m.from_name),
        subject: text(&m.subject),
        date: m.date_unix.and_then(rfc3339_from_unix_secs),
        msg_id: text(&msg_id),
        uid: m.uid,
        uidvalidity: m.uidvalidity,
        folder: Some(m.folder.as_str()).filter(|f| f.len() <= FOLDER_MAX_BYTES),
        group_id: m
            .group_id
            .as_deref()
            .filter(|g| !g.is_empty() && g.len() <= GROUP_ID_MAX_BYTES),
        content: m.content.as_deref(),
    };
    if body.content.is_some() {
        let with = to_json(&body);
        if encrypted_len(with.len()) <= MAX_BODY_BYTES {
            return Ok(Plaintext { bytes: with, with_content: true });
        }
        body.content = None;
    }
    let without = to_json(&body);
    if encrypted_len(without.len()) > MAX_BODY_BYTES {
        return Err(PayloadError::TooLarge(without.len()));
    }
    Ok(Plaintext { bytes: without, with_content: false })
}

fn to_json(body: &Body<'_>) -> Vec<u8> {
    // Strings and numbers only: serialisation cannot fail.
    serde_json::to_vec(body).unwrap_or_default()
}

/// `{"validation":"<secret>"}` (the secret is cut to [`VALIDATION_MAX_BYTES`]
/// by the caller's checks; intake refuses longer ones).
pub fn validation(secret: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "validation": secret })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> PushMessageV1 {
        PushMessageV1 {
            from_email: Some("Bob@Example.ORG".into()),
            from_name: Some("Bob Builder".into()),
            subject: Some("Chat: hi".into()),
            date_unix: Some(1_577_834_450),
            message_id: Some("<chat$group.abcdefghijkl.1@example.org>".into()),
            uid: 7,
            uidvalidity: 1_700_000_000,
            folder: "COI/Chats".into(),
            group_id: Some("abcdefghijkl".into()),
            kind: "group-chat".into(),
            content: Some("-----BEGIN PGP MESSAGE-----\n...".into()),
        }
    }

    fn json(p: &Plaintext) -> serde_json::Value {
        serde_json::from_slice(&p.bytes).unwrap()
    }

    #[test]
    fn every_field_is_named_as_the_spec_says() {
        let p = message(&msg()).unwrap();
        assert!(p.with_content);
        assert_eq!(
            json(&p),
            serde_json::json!({
                "from-email": "bob@example.org", "from-name": "Bob Builder", "subject": "Chat: hi",
                "date": "2019-12-31T23:20:50Z", "msg-id": "chat$group.abcdefghijkl.1@example.org",
                "uid": 7, "uidvalidity": 1_700_000_000u32, "folder": "COI/Chats",
                "group-id": "abcdefghijkl", "content": "-----BEGIN PGP MESSAGE-----\n..."
            })
        );
    }

    #[test]
    fn absent_and_empty_fields_are_left_out() {
        let m = PushMessageV1 {
            uid: 1,
            uidvalidity: 2,
            folder: "INBOX".into(),
            subject: Some("  ".into()),
            kind: "chat".into(),
            ..Default::default()
        };
        assert_eq!(json(&message(&m).unwrap()), serde_json::json!({"uid": 1, "uidvalidity": 2, "folder": "INBOX"}));
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary_with_an_ellipsis() {
        assert_eq!(cut_with_ellipsis("short", 100), "short");
        let exact = "a".repeat(100);
        assert_eq!(cut_with_ellipsis(&exact, 100), exact, "100 bytes are kept whole");
        // 99 ASCII + a 3-byte char straddling byte 100: the char goes.
        let s = format!("{}€tail", "a".repeat(99));
        assert_eq!(cut_with_ellipsis(&s, 100), format!("{}…", "a".repeat(99)));
        let mut m = msg();
        m.subject = Some("ü".repeat(80)); // 160 bytes
        m.from_name = Some("\"".repeat(150)); // escapes must not be split
        let v = json(&message(&m).unwrap());
        let subject = v["subject"].as_str().unwrap();
        assert_eq!(subject, format!("{}…", "ü".repeat(50)));
        assert_eq!(v["from-name"].as_str().unwrap(), format!("{}…", "\"".repeat(100)));
    }

    #[test]
    fn long_folder_and_group_id_are_left_out_not_cut() {
        let mut m = msg();
        m.folder = "f".repeat(201);
        m.group_id = Some("g".repeat(129));
        let v = json(&message(&m).unwrap());
        assert!(v.get("folder").is_none());
        assert!(v.get("group-id").is_none());
        m.folder = "f".repeat(200);
        m.group_id = Some("g".repeat(128));
        let v = json(&message(&m).unwrap());
        assert_eq!(v["folder"].as_str().unwrap().len(), 200);
        assert_eq!(v["group-id"].as_str().unwrap().len(), 128);
    }

    #[test]
    fn content_is_kept_exactly_while_the_encrypted_body_fits_4096() {
        let mut m = msg();
        m.content = None;
        let base = message(&m).unwrap().bytes.len();
        // `,"content":""` adds 13 bytes around the content itself.
        let fits = MAX_BODY_BYTES - encrypted_len(base + 13);
        m.content = Some("x".repeat(fits));
        let p = message(&m).unwrap();
        assert!(p.with_content);
        assert_eq!(encrypted_len(p.bytes.len()), MAX_BODY_BYTES);
        m.content = Some("x".repeat(fits + 1));
        let p = message(&m).unwrap();
        assert!(!p.with_content, "one byte more and content is dropped");
        assert_eq!(p.bytes.len(), base);
        // Escaping counts: 1000 newlines are 2000 bytes of JSON.
        m.content = Some("\n".repeat(fits / 2 + 1));
        assert!(!message(&m).unwrap().with_content);
    }

    #[test]
    fn dates_render_as_rfc3339_and_absurd_ones_are_left_out() {
        let mut m = msg();
        m.date_unix = Some(0);
        assert_eq!(json(&message(&m).unwrap())["date"], "1970-01-01T00:00:00Z");
        m.date_unix = Some(-86_400);
        assert_eq!(json(&message(&m).unwrap())["date"], "1969-12-31T00:00:00Z");
        m.date_unix = Some(i64::MAX);
        assert!(json(&message(&m).unwrap()).get("date").is_none());
    }

    #[test]
    fn validation_body() {
        assert_eq!(validation("abc$123"), br#"{"validation":"abc$123"}"#);
    }
}

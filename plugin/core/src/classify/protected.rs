//! The header-protected Delta Chat rule: recognising a chat whose chat
//! headers are all inside the encryption.
//!
//! Delta Chat 2.x (captured from 2.65, every kind of message it sends:
//! tests/fixtures/deltachat/) shows the server nothing but
//!
//! ```text
//! From: <alice@example.org>
//! Date: <randomised into the past>
//! Message-ID: <4e380869-aeec-4f2e-af3a-475cfda71bd4@localhost>
//! MIME-Version: 1.0
//! To: "hidden-recipients": ;
//! Subject: [...]
//! Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=...
//! ```
//!
//! The rule holds when ALL five signals hold (docs/deltachat.md has the
//! false-positive analysis against Thunderbird, Thunderbird for Android/K-9,
//! Proton Mail Bridge, Mailvelope and RFC 9788):
//! 1. `Content-Type` is RFC 3156 PGP/MIME encryption
//!    (`multipart/encrypted`, `protocol=application/pgp-encrypted`);
//! 2. `Message-ID` is `<UUID@localhost>`, a lowercase version-4 UUID;
//! 3. `To` is the empty group `hidden-recipients` and nothing else;
//! 4. `Subject` is exactly `[...]`;
//! 5. `From` is a bare `<addr-spec>`, without display name.
//!
//! Each alone occurs elsewhere (K-9 writes `[...]`, Thunderbird writes UUID
//! Message-IDs, RFC 9788's `hcp_shy` drops the From display name); the
//! conjunction is Delta Chat's. What such a message is (1:1 or group, text,
//! read receipt, reaction, sync message) is encrypted: the verdict is a plain
//! chat, flagged as header-protected.
//!
//! Invariants: each reader is linear in its (capped) value, allocates
//! nothing and never panics; the cheapest discriminating test
//! (Content-Type) runs first.
//!
//! Callers: `rules::classify` only.

use super::content_type::is_pgp_encrypted;
use super::headers::ChatHeaders;
use super::lex::{skip_cfws, skip_quoted_body, token};
use super::msgid::is_localhost_uuid_v4;

/// The display name of Delta Chat's empty recipient group.
const HIDDEN_RECIPIENTS: &[u8] = b"hidden-recipients";
/// The Subject placeholder of header-protected mail (RFC 9788's default).
const SUBJECT_PLACEHOLDER: &[u8] = b"[...]";

/// True if the fields carry all five signals of a header-protected Delta Chat
/// message. `window` caps every value the way the other rules do.
pub(crate) fn is_header_protected_chat(
    headers: &ChatHeaders<'_>,
    window: fn(&[u8]) -> &[u8],
) -> bool {
    let (Some(ct), Some(mid), Some(to), Some(subject), Some(from)) = (
        headers.content_type,
        headers.message_id,
        headers.to,
        headers.subject,
        headers.from,
    ) else {
        return false;
    };
    is_pgp_encrypted(window(ct))
        && is_localhost_uuid_v4(window(mid))
        && is_hidden_recipients_group(window(to))
        && is_placeholder_subject(window(subject))
        && is_bare_angle_addr(window(from))
}

/// `"hidden-recipients": ;` (quoted or not, any spacing, comments allowed):
/// an RFC 5322 group with that name and no members, and nothing after it.
fn is_hidden_recipients_group(value: &[u8]) -> bool {
    let s = skip_cfws(value);
    let (name, rest) = match s {
        [b'"', body @ ..] => {
            let rest = skip_quoted_body(body);
            // body .. rest covers the name and its closing quote
            let consumed = body.len() - rest.len();
            match consumed.checked_sub(1) {
                Some(n) if body.get(n) == Some(&b'"') => (&body[..n], rest),
                _ => return false,
            }
        }
        _ => token(s),
    };
    if !name.eq_ignore_ascii_case(HIDDEN_RECIPIENTS) {
        return false;
    }
    let [b':', rest @ ..] = skip_cfws(rest) else {
        return false;
    };
    let [b';', rest @ ..] = skip_cfws(rest) else {
        return false;
    };
    skip_cfws(rest).is_empty()
}

/// `[...]`, surrounding whitespace allowed.
fn is_placeholder_subject(value: &[u8]) -> bool {
    value.trim_ascii() == SUBJECT_PLACEHOLDER
}

/// `<local@domain>` with no display name before it and nothing after it.
fn is_bare_angle_addr(value: &[u8]) -> bool {
    let s = skip_cfws(value);
    let Some(s) = s.strip_prefix(b"<") else {
        return false;
    };
    let Some(close) = s.iter().position(|&b| b == b'>') else {
        return false;
    };
    let addr = &s[..close];
    addr.contains(&b'@')
        && !addr.iter().any(|&b| b.is_ascii_whitespace() || b == b'<')
        && skip_cfws(&s[close + 1..]).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(v: &[u8]) -> &[u8] {
        v
    }

    /// The five outer fields of a captured Delta Chat 2.65 message.
    fn deltachat() -> ChatHeaders<'static> {
        ChatHeaders {
            from: Some(b"<bob@example.org>"),
            to: Some(b"\"hidden-recipients\": ;"),
            subject: Some(b"[...]"),
            message_id: Some(b"<4f6251f5-b4ee-4fa0-a716-c3f9f24f0023@localhost>"),
            content_type: Some(
                b"multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
                  boundary=\"18edb75f18b70a59_c4a0d98e3fab25cb_912410fe33ce853d\"",
            ),
            ..Default::default()
        }
    }

    #[test]
    fn captured_form_is_recognised() {
        assert!(is_header_protected_chat(&deltachat(), ident));
    }

    #[test]
    fn each_signal_is_needed() {
        type Tweak = fn(&mut ChatHeaders<'static>);
        let table: &[(&str, Tweak)] = &[
            ("no From", |h| h.from = None),
            ("From with display name", |h| {
                h.from = Some(b"Bob <bob@example.org>")
            }),
            ("From with quoted name", |h| {
                h.from = Some(b"\"Bob\" <bob@example.org>")
            }),
            ("no To", |h| h.to = None),
            ("To names the recipient", |h| {
                h.to = Some(b"<alice@example.org>")
            }),
            ("To group with a member", |h| {
                h.to = Some(b"\"hidden-recipients\": <alice@example.org>;")
            }),
            ("To group of another name", |h| {
                h.to = Some(b"undisclosed-recipients:;")
            }),
            ("To group plus a recipient", |h| {
                h.to = Some(b"\"hidden-recipients\": ;, alice@example.org")
            }),
            ("no Subject", |h| h.subject = None),
            ("Thunderbird's subject", |h| h.subject = Some(b"...")),
            ("real subject", |h| h.subject = Some(b"lunch?")),
            ("Re: placeholder", |h| h.subject = Some(b"Re: [...]")),
            ("no Message-ID", |h| h.message_id = None),
            ("Message-ID of the sender's domain", |h| {
                h.message_id = Some(b"<4f6251f5-b4ee-4fa0-a716-c3f9f24f0023@example.org>")
            }),
            ("upper-case UUID", |h| {
                h.message_id = Some(b"<4F6251F5-B4EE-4FA0-A716-C3F9F24F0023@localhost>")
            }),
            ("no Content-Type", |h| h.content_type = None),
            ("signed, not encrypted", |h| {
                h.content_type = Some(b"multipart/signed; protocol=\"application/pgp-signature\"")
            }),
            ("S/MIME", |h| {
                h.content_type = Some(b"application/pkcs7-mime; smime-type=enveloped-data")
            }),
            ("plain text", |h| {
                h.content_type = Some(b"text/plain; charset=utf-8")
            }),
        ];
        for (name, tweak) in table {
            let mut h = deltachat();
            tweak(&mut h);
            assert!(!is_header_protected_chat(&h, ident), "{name}");
        }
    }

    #[test]
    fn hidden_recipients_spellings() {
        let table: &[(&str, bool)] = &[
            ("\"hidden-recipients\": ;", true),
            ("\"hidden-recipients\":;", true),
            ("hidden-recipients: ;", true),
            ("hidden-recipients:;", true),
            ("  \"Hidden-Recipients\" : ; ", true),
            ("(c) \"hidden-recipients\": ; (c)", true),
            ("\"hidden-recipients\":\r\n ;", true),
            ("\"hidden-recipients\"", false),
            ("\"hidden-recipients\":", false),
            ("\"hidden-recipients: ;", false),
            ("\"hidden-recipients\"; ;", false),
            ("\"hidden recipients\": ;", false),
            ("\"hidden-recipients\": ; x", false),
            ("", false),
        ];
        for (input, want) in table {
            assert_eq!(
                is_hidden_recipients_group(input.as_bytes()),
                *want,
                "{input}"
            );
        }
    }

    #[test]
    fn bare_angle_addr_spellings() {
        let table: &[(&str, bool)] = &[
            ("<bob@example.org>", true),
            (" <bob@example.org> ", true),
            ("<bob@example.org> (comment)", true),
            ("bob@example.org", false),
            ("Bob <bob@example.org>", false),
            ("\"\" <bob@example.org>", false),
            ("<bob@example.org>, <carol@example.org>", false),
            ("<bob>", false),
            ("<bob@example.org", false),
            ("<bob @example.org>", false),
            ("", false),
        ];
        for (input, want) in table {
            assert_eq!(is_bare_angle_addr(input.as_bytes()), *want, "{input}");
        }
    }

    #[test]
    fn placeholder_subject_spellings() {
        assert!(is_placeholder_subject(b"[...]"));
        assert!(is_placeholder_subject(b" [...] "));
        assert!(!is_placeholder_subject(b"..."));
        assert!(!is_placeholder_subject(b"[..]"));
        assert!(!is_placeholder_subject(b"=?utf-8?q?=5B=2E=2E=2E=5D?="));
        assert!(!is_placeholder_subject(b""));
    }
}

//! Reading chat markers out of the first msg-id of a field.
//!
//! - COI: a local part starting `chat$`, groups `chat$group.<id>.<unique>`
//!   ([`first_chat_id`]);
//! - Delta Chat 1.x: `Gr.<grpid>.<random>@<domain>` names the group of a
//!   message that also carries `Chat-Version` ([`first_deltachat_group`]);
//! - Delta Chat 2.x header protection: `<UUID-v4@localhost>`, lowercase hex,
//!   on every message ([`is_localhost_uuid_v4`]).
//!
//! Only the first msg-id matters (Message-ID has one; for References the COI
//! spec looks at the first, i.e. the thread root). Grammar accepted, in the
//! tolerant spirit of RFC 5322 §4 (obsolete syntax):
//! `CFWS ["<" CFWS] local-part ...`, so angle brackets are optional and comments
//! or folds may precede the id. Whatever follows the COI prefix and group id is
//! not validated: a sender that writes `chat$` has declared the message a chat.
//!
//! Invariants: linear in the input, no allocation, no panic. The caller caps
//! the input (see `rules`).
//!
//! Callers: `rules::classify` only.

use super::lex::{is_wsp, skip_cfws, starts_with_ignore_case};

/// Local-part prefix that marks a COI chat message id.
const CHAT_PREFIX: &[u8] = b"chat$";
/// What follows [`CHAT_PREFIX`] in a group message id.
const GROUP_PREFIX: &[u8] = b"group.";
/// Shortest group id the COI spec allows.
pub(crate) const GROUP_ID_MIN: usize = 12;
/// Longest group id we accept. The spec sets no maximum; the cap keeps a
/// hostile id from becoming a huge push payload or log field.
pub(crate) const GROUP_ID_MAX: usize = 64;
/// Local-part prefix of a Delta Chat 1.x group message id.
const DELTACHAT_GROUP_PREFIX: &[u8] = b"Gr.";
/// Delta Chat 1.x group ids are exactly this long (its own reader insists on
/// these lengths because `Gr.` alone is a weak marker).
const DELTACHAT_GROUP_ID_LENS: [usize; 2] = [11, 16];
/// `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`
const UUID_LEN: usize = 36;
const LOCALHOST_SUFFIX: &[u8] = b"@localhost>";

/// What the first msg-id of a field says about COI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatId<'a> {
    /// No `chat$` prefix (or no msg-id at all).
    NotChat,
    /// `chat$` without a valid group part.
    Chat,
    /// `chat$group.<id>.<unique>`; holds `<id>`, pure ASCII.
    Group(&'a [u8]),
}

impl<'a> ChatId<'a> {
    pub(crate) fn is_chat(self) -> bool {
        self != ChatId::NotChat
    }

    pub(crate) fn group(self) -> Option<&'a [u8]> {
        match self {
            ChatId::Group(id) => Some(id),
            _ => None,
        }
    }
}

/// Classifies the first msg-id of a Message-ID or References value.
pub(crate) fn first_chat_id(value: &[u8]) -> ChatId<'_> {
    let mut s = skip_cfws(value);
    if let [b'<', rest @ ..] = s {
        s = skip_cfws(rest);
    }
    if !starts_with_ignore_case(s, CHAT_PREFIX) {
        return ChatId::NotChat;
    }
    let after = &s[CHAT_PREFIX.len()..];
    match group_id(after) {
        Some(id) => ChatId::Group(id),
        None => ChatId::Chat,
    }
}

/// `group.<id>.<unique>` at the start of `s` -> `<id>`.
fn group_id(s: &[u8]) -> Option<&[u8]> {
    if !starts_with_ignore_case(s, GROUP_PREFIX) {
        return None;
    }
    let s = &s[GROUP_PREFIX.len()..];
    // Look one byte past the maximum so an over-long id is seen as such
    // without walking the whole value.
    let window = &s[..s.len().min(GROUP_ID_MAX + 1)];
    let len = window
        .iter()
        .position(|&b| !is_group_id_char(b))
        .unwrap_or(window.len());
    if !(GROUP_ID_MIN..=GROUP_ID_MAX).contains(&len) {
        return None;
    }
    // The id must be followed by ".<unique>": a bare `chat$group.<id>@x`
    // has no unique part and is not of the group form.
    match s.get(len..)? {
        [b'.', next, ..] if !matches!(next, b'@' | b'>') && !is_wsp(*next) => Some(&s[..len]),
        _ => None,
    }
}

fn is_group_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The group id of a Delta Chat 1.x group message id `Gr.<grpid>.<random>@…`
/// (first msg-id of the value; `Gr.` case-sensitive as Delta Chat writes and
/// reads it; `<grpid>` 11 or 16 of `[0-9A-Za-z_-]`). Only meaningful on a
/// message already known to be a chat (`Chat-Version`).
pub(crate) fn first_deltachat_group(value: &[u8]) -> Option<&[u8]> {
    let mut s = skip_cfws(value);
    if let [b'<', rest @ ..] = s {
        s = skip_cfws(rest);
    }
    let s = s.strip_prefix(DELTACHAT_GROUP_PREFIX)?;
    let window = &s[..s.len().min(GROUP_ID_MAX + 1)];
    let len = window
        .iter()
        .position(|&b| !is_group_id_char(b))
        .unwrap_or(window.len());
    if !DELTACHAT_GROUP_ID_LENS.contains(&len) {
        return None;
    }
    match s.get(len..)? {
        [b'.', next, ..] if !matches!(next, b'@' | b'>') && !is_wsp(*next) => Some(&s[..len]),
        _ => None,
    }
}

/// True if the value is exactly one `<UUID@localhost>` msg-id whose UUID is
/// a lowercase random (version 4, RFC 9562 variant) UUID, surrounding
/// whitespace and comments allowed. This is the Message-ID Delta Chat 2.x
/// puts on every message; Thunderbird and K-9 use UUIDs too, but with the
/// sender's domain (and K-9 in upper case).
pub(crate) fn is_localhost_uuid_v4(value: &[u8]) -> bool {
    let s = skip_cfws(value);
    let Some(s) = s.strip_prefix(b"<") else {
        return false;
    };
    let Some((uuid, rest)) = s.split_at_checked(UUID_LEN) else {
        return false;
    };
    if !is_lowercase_uuid_v4(uuid) {
        return false;
    }
    match rest.get(..LOCALHOST_SUFFIX.len()) {
        Some(suffix) if suffix.eq_ignore_ascii_case(LOCALHOST_SUFFIX) => {
            skip_cfws(&rest[LOCALHOST_SUFFIX.len()..]).is_empty()
        }
        _ => false,
    }
}

fn is_lowercase_uuid_v4(uuid: &[u8]) -> bool {
    uuid.len() == UUID_LEN
        && uuid.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            14 => b == b'4',
            19 => matches!(b, b'8' | b'9' | b'a' | b'b'),
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_chat_id_table() {
        use ChatId::*;
        let table: &[(&str, ChatId<'_>)] = &[
            ("<chat$1234567890@example.org>", Chat),
            ("chat$1234567890@example.org", Chat),
            ("<CHAT$1234567890@example.org>", Chat),
            ("<Chat$x@y>", Chat),
            ("  (comment) <chat$1@x>", Chat),
            ("(a (b) c)\r\n <chat$1@x>", Chat),
            ("< chat$1@x>", Chat),
            (
                "<chat$group.abcdefABCDEF12.xyz@example.org>",
                Group(b"abcdefABCDEF12"),
            ),
            (
                "<chat$GROUP.abcdefABCDEF12.xyz@example.org>",
                Group(b"abcdefABCDEF12"),
            ),
            ("<chat$group.AAAABBBBCCCC.1@x>", Group(b"AAAABBBBCCCC")),
            ("<chat$group.a_b-c_d-e_f-.1@x>", Group(b"a_b-c_d-e_f-")),
            // Too short (11), bad characters, no unique part, too long.
            ("<chat$group.AAAABBBBCCC.1@x>", Chat),
            ("<chat$group.AAAA!BBBBCCCC.1@x>", Chat),
            ("<chat$group.AAAA+BBBBCCCC.1@x>", Chat),
            ("<chat$group.AAAABBBBCCCC@x>", Chat),
            ("<chat$group.AAAABBBBCCCC.@x>", Chat),
            ("<chat$group.AAAABBBBCCCC.>", Chat),
            ("<chat$group.AAAABBBBCCCC.", Chat),
            ("<chat$group.AAAABBBBCCCC", Chat),
            ("<chat$group.>", Chat),
            ("<chat$groupAAAABBBBCCCC.1@x>", Chat),
            ("<chat@x>", NotChat),
            ("<chat@x> <chat$1@y>", NotChat),
            ("<other@y> <chat$1@x>", NotChat),
            ("<a1b2c3d4-e5f6-7890-abcd-ef1234567890@localhost>", NotChat),
            ("<Gr.abcdefghijkl.xyz@example.org>", NotChat),
            ("<Mr.abcdefghijkl.xyz@example.org>", NotChat),
            ("<x.chat$1@y>", NotChat),
            ("", NotChat),
            ("<", NotChat),
            ("(unterminated <chat$1@x>", NotChat),
            ("\"chat$1\"@x", NotChat),
        ];
        for (input, want) in table {
            assert_eq!(first_chat_id(input.as_bytes()), *want, "{input}");
        }
    }

    #[test]
    fn deltachat_group_table() {
        let table: &[(&str, Option<&str>)] = &[
            (
                "<Gr.abcdefghijk.morerandom@example.org>",
                Some("abcdefghijk"),
            ),
            (
                "<Gr.abcdefgh-_IJKLMN.x@example.org>",
                Some("abcdefgh-_IJKLMN"),
            ),
            ("Gr.abcdefghijk.x@y", Some("abcdefghijk")),
            ("(c) < Gr.abcdefghijk.x@y>", Some("abcdefghijk")),
            ("<Gr.abcdefghij.x@y>", None),        // 10
            ("<Gr.abcdefghijkl.x@y>", None),      // 12
            ("<Gr.abcdefghijklmnopq.x@y>", None), // 17
            ("<Gr.abcdefghijk@y>", None),         // no random part
            ("<Gr.abcdefghijk.>", None),
            ("<gr.abcdefghijk.x@y>", None), // Delta Chat writes Gr.
            ("<Mr.abcdefghijk.x@y>", None),
            ("<Gr.abcde+ghijk.x@y>", None),
            ("<x@y> <Gr.abcdefghijk.x@y>", None),
            ("", None),
        ];
        for (input, want) in table {
            assert_eq!(
                first_deltachat_group(input.as_bytes()),
                want.map(str::as_bytes),
                "{input}"
            );
        }
    }

    #[test]
    fn localhost_uuid_table() {
        let table: &[(&str, bool)] = &[
            ("<4e380869-aeec-4f2e-af3a-475cfda71bd4@localhost>", true),
            ("<32377cc5-a441-4bf0-b37d-bfba6d01377d@localhost>", true),
            (" <4e380869-aeec-4f2e-bf3a-475cfda71bd4@localhost> ", true),
            (
                "\r\n <4e380869-aeec-4f2e-8f3a-475cfda71bd4@LOCALHOST>",
                true,
            ),
            ("<4e380869-aeec-4f2e-9f3a-475cfda71bd4@localhost> (c)", true),
            // K-9 / Thunderbird for Android: upper case, sender's domain
            ("<4E380869-AEEC-4F2E-AF3A-475CFDA71BD4@example.org>", false),
            ("<4E380869-AEEC-4F2E-AF3A-475CFDA71BD4@localhost>", false),
            // Thunderbird: lower case UUID v4, sender's domain
            ("<4e380869-aeec-4f2e-af3a-475cfda71bd4@example.org>", false),
            (
                "<4e380869-aeec-4f2e-af3a-475cfda71bd4@localhost.localdomain>",
                false,
            ),
            ("<4e380869-aeec-1f2e-af3a-475cfda71bd4@localhost>", false), // version 1
            ("<4e380869-aeec-4f2e-cf3a-475cfda71bd4@localhost>", false), // variant
            ("<4e380869aeec4f2eaf3a475cfda71bd4@localhost>", false),
            ("<4e380869-aeec-4f2e-af3a-475cfda71bd@localhost>", false),
            ("4e380869-aeec-4f2e-af3a-475cfda71bd4@localhost", false),
            (
                "<4e380869-aeec-4f2e-af3a-475cfda71bd4@localhost> <x@y>",
                false,
            ),
            ("<4e380869-aeec-4f2e-af3a-475cfda71bd4@localhost", false),
            ("<Mr.4e380869aeec.x@localhost>", false),
            ("", false),
        ];
        for (input, want) in table {
            assert_eq!(is_localhost_uuid_v4(input.as_bytes()), *want, "{input}");
        }
    }

    #[test]
    fn group_id_length_bounds() {
        for len in 0..=GROUP_ID_MAX + 3 {
            let id = "a".repeat(len);
            let v = format!("<chat$group.{id}.u@x>");
            let got = first_chat_id(v.as_bytes());
            if (GROUP_ID_MIN..=GROUP_ID_MAX).contains(&len) {
                assert_eq!(got, ChatId::Group(id.as_bytes()), "len {len}");
            } else {
                assert_eq!(got, ChatId::Chat, "len {len}");
            }
        }
    }
}

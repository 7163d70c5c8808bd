//! Reading the COI marker out of the first msg-id of a field.
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

//! The classification rules, combining the field readers.
//!
//! See the module docs of [`crate::classify`] for the rules. Precedence:
//! the COI markers (Chat-Version, `chat$` ids) first, then the
//! header-protected Delta Chat form; not a chat at all => [`Kind::NotChat`]
//! (even for an MDN); else an MDN => [`Kind::ReadReceipt`]; else a group id
//! found (COI `chat$group.`, then Delta Chat 1.x `Gr.` with Chat-Version)
//! => [`Kind::GroupChat`]; else [`Kind::Chat`]. A header-protected message is
//! always a plain [`Kind::Chat`]: its group and whether it is a receipt are
//! encrypted.
//!
//! Invariants: each header value is read through a window of at most
//! [`VALUE_SCAN_LIMIT`] bytes; work is linear in that window; the only
//! allocation is a group chat's id (at most 64 bytes).
//!
//! Callers: the plugin's `classify` op ([`verdict`], [`classify`]); tests,
//! fuzzer and benchmark ([`classify_header_block`]).

use super::content_type::is_disposition_report;
use super::headers::{extract_headers, ChatHeaders};
use super::kind::Kind;
use super::msgid::{first_chat_id, first_deltachat_group, ChatId};
use super::protected::is_header_protected_chat;

/// Most bytes of any one header value the classifier looks at.
///
/// Everything it needs sits at the start of a value (the first msg-id, the
/// media type and a few parameters), so a hostile or merely long header (a
/// References chain of thousands of ids) costs no more than this. The FFI
/// layer may pass longer values; they are cut here.
pub const VALUE_SCAN_LIMIT: usize = 16 * 1024;

fn window(value: &[u8]) -> &[u8] {
    &value[..value.len().min(VALUE_SCAN_LIMIT)]
}

fn chat_id(value: Option<&[u8]>) -> ChatId<'_> {
    value.map_or(ChatId::NotChat, |v| first_chat_id(window(v)))
}

/// Which rule made a message a chat (for logs, events and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// No rule matched: ordinary mail.
    None,
    /// A `Chat-Version` field (COI, Delta Chat unencrypted and 1.x).
    ChatVersion,
    /// A `chat$` Message-ID or first References id (COI).
    ChatMessageId,
    /// The header-protected Delta Chat 2.x form (`crate::classify` docs):
    /// group id, receipt status and subject are end-to-end encrypted.
    HeaderProtected,
}

impl Evidence {
    /// Stable name for debug logs.
    pub fn name(self) -> &'static str {
        match self {
            Evidence::None => "none",
            Evidence::ChatVersion => "chat-version",
            Evidence::ChatMessageId => "chat-message-id",
            Evidence::HeaderProtected => "header-protected",
        }
    }
}

/// The classifier's answer: the kind, and the rule behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What the message is, as far as the server can know.
    pub kind: Kind,
    /// Which rule said so.
    pub evidence: Evidence,
}

impl Verdict {
    /// True when the chat's own headers are encrypted, so the server cannot
    /// know its group, whether it is a read receipt, or its subject.
    pub fn headers_protected(&self) -> bool {
        self.evidence == Evidence::HeaderProtected
    }
}

fn deltachat_group(value: Option<&[u8]>) -> Option<&[u8]> {
    value.and_then(|v| first_deltachat_group(window(v)))
}

/// Classifies a message from the first occurrence of its relevant header fields.
pub fn verdict(headers: &ChatHeaders<'_>) -> Verdict {
    let from_message_id = chat_id(headers.message_id);
    // References only matters when Message-ID did not already settle both
    // chat-ness and the group id.
    let from_references = match from_message_id {
        ChatId::Group(_) => ChatId::NotChat,
        _ => chat_id(headers.references),
    };
    let evidence = if headers.chat_version.is_some() {
        Evidence::ChatVersion
    } else if from_message_id.is_chat() || from_references.is_chat() {
        Evidence::ChatMessageId
    } else if is_header_protected_chat(headers, window) {
        return Verdict {
            kind: Kind::Chat,
            evidence: Evidence::HeaderProtected,
        };
    } else {
        return Verdict {
            kind: Kind::NotChat,
            evidence: Evidence::None,
        };
    };
    if headers
        .content_type
        .is_some_and(|v| is_disposition_report(window(v)))
    {
        return Verdict {
            kind: Kind::ReadReceipt,
            evidence,
        };
    }
    let group = from_message_id
        .group()
        .or(from_references.group())
        .or_else(|| {
            // Delta Chat 1.x names the group in its own msg-id form; trusted
            // only next to Chat-Version, as Delta Chat itself does.
            if evidence != Evidence::ChatVersion {
                return None;
            }
            deltachat_group(headers.message_id).or_else(|| deltachat_group(headers.references))
        });
    let kind = match group {
        // Group ids are checked to be ASCII, so this is a plain copy.
        Some(id) => Kind::GroupChat {
            group_id: id.iter().map(|&b| char::from(b)).collect(),
        },
        None => Kind::Chat,
    };
    Verdict { kind, evidence }
}

/// The kind alone (see [`verdict`]).
pub fn classify(headers: &ChatHeaders<'_>) -> Kind {
    verdict(headers).kind
}

/// Parses a raw RFC 5322 header block (bytes up to the first empty line;
/// tolerates LF or CRLF, folded lines, case-insensitive field names, repeated
/// fields -> first one wins, garbage lines skipped) and classifies it.
/// Used by tests, the fuzzer and the benchmark.
pub fn classify_header_block(block: &[u8]) -> Kind {
    classify(&extract_headers(block))
}

/// [`classify_header_block`] with the rule behind the verdict.
pub fn verdict_header_block(block: &[u8]) -> Verdict {
    verdict(&extract_headers(block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn group(id: &str) -> Kind {
        Kind::GroupChat {
            group_id: id.to_string(),
        }
    }

    /// (name, header block, expected kind)
    fn corpus() -> Vec<(&'static str, Vec<u8>, Kind)> {
        let mut table: Vec<(&'static str, Vec<u8>, Kind)> = vec![
            (
                "COI 1:1",
                b"From: a@example.org\r\nTo: b@example.org\r\n\
                  Message-ID: <chat$1234567890@example.org>\r\nSubject: Chat: hi\r\n\
                  Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
                    .to_vec(),
                Kind::Chat,
            ),
            (
                "COI group",
                b"Message-ID: <chat$group.abcdefABCDEF12.xyz@example.org>\r\n\r\n".to_vec(),
                group("abcdefABCDEF12"),
            ),
            (
                "COI group, Chat-Version too",
                b"Chat-Version: 1.0\r\nMessage-ID: <chat$group.abcdefABCDEF12.xyz@example.org>\r\n"
                    .to_vec(),
                group("abcdefABCDEF12"),
            ),
            (
                "group id too short",
                b"Message-ID: <chat$group.abcdefABCDE.xyz@example.org>\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "group id with bad chars",
                b"Message-ID: <chat$group.abcdef+ABCDEF12.xyz@example.org>\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "group id too long",
                format!("Message-ID: <chat$group.{}.xyz@example.org>\r\n", "a".repeat(65))
                    .into_bytes(),
                Kind::Chat,
            ),
            (
                "group id at max length",
                format!("Message-ID: <chat$group.{}.xyz@example.org>\r\n", "a".repeat(64))
                    .into_bytes(),
                Kind::GroupChat {
                    group_id: "a".repeat(64),
                },
            ),
            (
                "legacy client reply, only References",
                b"From: c@x\r\nMessage-ID: <random123@mua.example>\r\n\
                  References: <chat$group.AAAABBBBCCCC.1@x> <other@y>\r\n\
                  In-Reply-To: <other@y>\r\n\r\n"
                    .to_vec(),
                group("AAAABBBBCCCC"),
            ),
            (
                "legacy reply to a 1:1 chat",
                b"Message-ID: <random123@mua.example>\r\nReferences: <chat$abc@x>\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "References: first id not chat, later one is",
                b"Message-ID: <random123@mua.example>\r\n\
                  References: <other@y> <chat$group.AAAABBBBCCCC.1@x>\r\n"
                    .to_vec(),
                Kind::NotChat,
            ),
            (
                "group id from Message-ID beats References",
                b"Message-ID: <chat$group.MMMMMMMMMMMM.1@x>\r\n\
                  References: <chat$group.RRRRRRRRRRRR.1@x>\r\n"
                    .to_vec(),
                group("MMMMMMMMMMMM"),
            ),
            (
                "plain chat Message-ID, group from References",
                b"Message-ID: <chat$1@x>\r\nReferences: <chat$group.RRRRRRRRRRRR.1@x>\r\n".to_vec(),
                group("RRRRRRRRRRRR"),
            ),
            (
                "Delta Chat plain",
                b"Chat-Version: 1.0\r\n\
                  Message-ID: <a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d@localhost>\r\n\
                  From: alice@example.org\r\nSubject: Message from alice@example.org\r\n\
                  Content-Type: text/plain; charset=utf-8; format=flowed; delsp=no\r\n\r\nhi\r\n"
                    .to_vec(),
                Kind::Chat,
            ),
            (
                "Delta Chat 1.x encrypted, Chat-Version outside",
                b"From: alice@example.org\r\nTo: bob@example.net\r\nDate: Sun, 1 Jun 2025 10:00:00 +0000\r\n\
                  Chat-Version: 1.0\r\nSubject: [...]\r\n\
                  Message-ID: <0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0@localhost>\r\n\
                  Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n\
                  \tboundary=\"1234567890abcdef\"\r\n\r\n--1234567890abcdef\r\n"
                    .to_vec(),
                Kind::Chat,
            ),
            (
                "Delta Chat MDN",
                b"Chat-Version: 1.0\r\nMessage-ID: <f00dfeed-0000-1111-2222-333344445555@localhost>\r\n\
                  Subject: Receipt Notification\r\n\
                  Content-Type: multipart/report; report-type=disposition-notification;\r\n\
                  \tboundary=\"xyz\"\r\n\r\n"
                    .to_vec(),
                Kind::ReadReceipt,
            ),
            (
                "MDN in a COI group thread",
                b"Message-ID: <chat$group.abcdefABCDEF12.mdn@x>\r\n\
                  Content-Type: multipart/report; report-type=\"disposition-notification\"\r\n"
                    .to_vec(),
                Kind::ReadReceipt,
            ),
            (
                "MDN without Chat-Version",
                b"From: mua@example.org\r\nMessage-ID: <123.456@mua.example.org>\r\n\
                  Subject: Read: hello\r\n\
                  Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n"
                    .to_vec(),
                Kind::NotChat,
            ),
            (
                "ordinary mail",
                b"Return-Path: <a@example.org>\r\nReceived: from mx by mx; Sun, 1 Jun 2025 10:00:00 +0000\r\n\
                  From: A <a@example.org>\r\nTo: b@example.net\r\nSubject: lunch?\r\n\
                  Message-ID: <CAF=abc123@mail.gmail.com>\r\nMIME-Version: 1.0\r\n\
                  Content-Type: text/plain; charset=\"UTF-8\"\r\n\r\nbody\r\n"
                    .to_vec(),
                Kind::NotChat,
            ),
            (
                "mailing list mail",
                b"From: someone@lists.example.org\r\nList-Id: Dev list <dev.lists.example.org>\r\n\
                  List-Unsubscribe: <mailto:dev-leave@lists.example.org>\r\nPrecedence: list\r\n\
                  Message-ID: <20250601100000.GA12345@host.example.org>\r\n\
                  References: <20250531.abc@host> <20250531.def@host>\r\n\
                  In-Reply-To: <20250531.def@host>\r\n\r\n"
                    .to_vec(),
                Kind::NotChat,
            ),
            (
                "Delta Chat 1.x group: Gr. id with Chat-Version",
                b"Chat-Version: 1.0\r\nMessage-ID: <Gr.abcdefghijk.mnopqrstuvw@example.org>\r\n".to_vec(),
                group("abcdefghijk"),
            ),
            (
                "Delta Chat 1.x reply: Gr. id in References",
                b"Chat-Version: 1.0\r\nMessage-ID: <Mr.abcdefghijk.mnopqrstuvw@example.org>\r\n\
                  References: <Gr.ABCDEFGHIJKLMNOP.x@example.org>\r\n"
                    .to_vec(),
                group("ABCDEFGHIJKLMNOP"),
            ),
            (
                "Delta Chat 1.x: COI group id wins over Gr.",
                b"Chat-Version: 1.0\r\nMessage-ID: <Gr.abcdefghijk.x@example.org>\r\n\
                  References: <chat$group.RRRRRRRRRRRR.1@x>\r\n"
                    .to_vec(),
                group("RRRRRRRRRRRR"),
            ),
            (
                "Delta Chat 1.x Mr. id with Chat-Version",
                b"Chat-Version: 1.0\r\nMessage-ID: <Mr.abcdefghijk.mnopqrstuvw@example.org>\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "Gr. id of the wrong length with Chat-Version",
                b"Chat-Version: 1.0\r\nMessage-ID: <Gr.abcdefghijkl.x@example.org>\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "Gr. id with chat$ Message-ID but no Chat-Version",
                b"Message-ID: <chat$1@x>\r\nReferences: <Gr.abcdefghijk.x@example.org>\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "Delta Chat old Gr. prefix alone",
                b"Message-ID: <Gr.abcdefghijkl.mnopqrstuvw@example.org>\r\n".to_vec(),
                Kind::NotChat,
            ),
            (
                "Delta Chat old Mr. prefix alone",
                b"Message-ID: <Mr.abcdefghijkl.mnopqrstuvw@example.org>\r\n".to_vec(),
                Kind::NotChat,
            ),
            (
                "UUID@localhost alone",
                b"Message-ID: <a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d@localhost>\r\n".to_vec(),
                Kind::NotChat,
            ),
            (
                "folded Message-ID",
                b"Message-ID:\r\n <chat$group.abcdefABCDEF12.xyz@example.org>\r\n".to_vec(),
                group("abcdefABCDEF12"),
            ),
            (
                "folded References, first id on continuation line",
                b"References:\r\n\t<chat$1@x>\r\n <other@y>\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "folded Content-Type MDN",
                b"Chat-Version: 1.0\r\nContent-Type: multipart/report;\r\n\tboundary=\"b\";\r\n\
                  \treport-type=\r\n disposition-notification\r\n"
                    .to_vec(),
                Kind::ReadReceipt,
            ),
            (
                "odd case CHAT-VERSION",
                b"CHAT-VERSION: 1.0\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "odd case chat-version, LF only",
                b"chat-version: 1.0\nmessage-id: <x@y>\n".to_vec(),
                Kind::Chat,
            ),
            (
                "odd case MESSAGE-ID",
                b"MESSAGE-ID: <CHAT$1@X>\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "RFC 2047 Chat-Version value",
                b"Chat-Version: =?utf-8?q?1=2E0?=\r\n".to_vec(),
                Kind::Chat,
            ),
            ("empty Chat-Version value", b"Chat-Version:\r\n".to_vec(), Kind::Chat),
            ("blank Chat-Version value", b"Chat-Version:   \r\n".to_vec(), Kind::Chat),
            (
                "repeated Message-ID, first wins (not chat)",
                b"Message-ID: <plain@x>\r\nMessage-ID: <chat$1@x>\r\n".to_vec(),
                Kind::NotChat,
            ),
            (
                "repeated Message-ID, first wins (chat)",
                b"Message-ID: <chat$group.FFFFFFFFFFFF.1@x>\r\nMessage-ID: <chat$group.SSSSSSSSSSSS.1@x>\r\n"
                    .to_vec(),
                group("FFFFFFFFFFFF"),
            ),
            (
                "repeated Content-Type, first wins",
                b"Chat-Version: 1\r\nContent-Type: text/plain\r\n\
                  Content-Type: multipart/report; report-type=disposition-notification\r\n"
                    .to_vec(),
                Kind::Chat,
            ),
            (
                "non-UTF-8 bytes",
                b"Subject: \xff\xfe\xc3\x28\r\nX-Junk: \x80\x81\r\n\xff\xff\r\n\
                  Message-ID: <chat$\xe9t\xe9@x>\r\n"
                    .to_vec(),
                Kind::Chat,
            ),
            (
                "non-UTF-8 bytes, not chat",
                b"Subject: \xff\xfe\r\nMessage-ID: <\xe9t\xe9@x>\r\n".to_vec(),
                Kind::NotChat,
            ),
            (
                "NUL bytes",
                b"Subject: a\x00b\r\n\x00\x00\r\nMessage-ID: <chat$\x001@x>\r\nX: \x00\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "NUL inside group id",
                b"Message-ID: <chat$group.AAAAAA\x00BBBBBB.1@x>\r\n".to_vec(),
                Kind::Chat,
            ),
            ("missing headers", b"".to_vec(), Kind::NotChat),
            ("only a body separator", b"\r\n\r\nChat-Version: 1\r\n".to_vec(), Kind::NotChat),
            (
                "no relevant headers",
                b"From: a@b\r\nSubject: x\r\n\r\n".to_vec(),
                Kind::NotChat,
            ),
            (
                "angle brackets missing",
                b"Message-ID: chat$group.abcdefABCDEF12.xyz@example.org\r\n".to_vec(),
                group("abcdefABCDEF12"),
            ),
            (
                "angle brackets missing in References",
                b"References: chat$1@x other@y\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "comment before msg-id",
                b"Message-ID: (x) <chat$1234567890@example.org>\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "nested comment and fold before References id",
                b"References: (a (b)\r\n c) <chat$group.AAAABBBBCCCC.1@x>\r\n".to_vec(),
                group("AAAABBBBCCCC"),
            ),
            (
                "chat$ not at start of local part",
                b"Message-ID: <xchat$1@x>\r\n".to_vec(),
                Kind::NotChat,
            ),
            (
                "Chat-Version after body separator is body",
                b"Subject: x\n\nChat-Version: 1.0\n".to_vec(),
                Kind::NotChat,
            ),
            (
                "mbox From line then headers",
                b"From alice@example.org Sun Jun  1 10:00:00 2025\nChat-Version: 1.0\n".to_vec(),
                Kind::Chat,
            ),
            (
                "header name with space before colon",
                b"Chat-Version : 1.0\r\n".to_vec(),
                Kind::Chat,
            ),
            (
                "similar but different header names",
                b"X-Chat-Version: 1.0\r\nChat-Versions: 1\r\nMessage-IDs: <chat$1@x>\r\n".to_vec(),
                Kind::NotChat,
            ),
        ];

        // A 1 MiB References header whose first id is a group chat id.
        let mut huge =
            b"Message-ID: <plain@x>\r\nReferences: <chat$group.AAAABBBBCCCC.1@x>".to_vec();
        while huge.len() < 1 << 20 {
            huge.extend_from_slice(b" <padding-padding-padding@example.org>");
        }
        huge.extend_from_slice(b"\r\nChat-Version: 1.0\r\n");
        table.push(("1 MiB References", huge, group("AAAABBBBCCCC")));

        // Thousands of folded References ids, the first not a chat.
        let mut many = b"References: <root@x>".to_vec();
        for i in 0..5000 {
            many.extend_from_slice(format!("\r\n <chat$group.AAAABBBBCCCC.{i}@x>").as_bytes());
        }
        many.extend_from_slice(b"\r\n\r\n");
        table.push(("thousands of References ids", many, Kind::NotChat));

        // A Content-Type whose report-type sits beyond the scan window.
        let mut far = b"Chat-Version: 1\r\nContent-Type: multipart/report".to_vec();
        while far.len() < VALUE_SCAN_LIMIT + 100 {
            far.extend_from_slice(b"; x=y");
        }
        far.extend_from_slice(b"; report-type=disposition-notification\r\n");
        table.push(("report-type beyond scan window", far, Kind::Chat));

        table
    }

    #[test]
    fn classify_header_block_table() {
        for (name, block, want) in corpus() {
            assert_eq!(classify_header_block(&block), want, "{name}");
        }
    }

    fn fixtures(dir: &str) -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(dir);
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| {
                (
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    std::fs::read(&p).unwrap_or_default(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Every message Delta Chat 2.65 sent in tests/capture_deltachat.py is a
    /// chat: the encrypted ones by the header-protected rule, the few it
    /// sends in the clear (to addresses without a key) by Chat-Version.
    #[test]
    fn captured_deltachat_messages_are_chats() {
        let captured = fixtures("deltachat");
        assert!(captured.len() >= 20, "capture missing: {}", captured.len());
        let mut protected = 0;
        for (name, raw) in &captured {
            let v = verdict_header_block(raw);
            assert_eq!(v.kind, Kind::Chat, "{name}");
            if raw.windows(20).any(|w| w == b"multipart/encrypted;") {
                assert_eq!(v.evidence, Evidence::HeaderProtected, "{name}");
                assert!(v.headers_protected(), "{name}");
                protected += 1;
            } else {
                assert_eq!(v.evidence, Evidence::ChatVersion, "{name}");
            }
        }
        assert!(protected >= 20, "{protected}");
    }

    /// Encrypted mail of ordinary clients stays mail (near misses,
    /// tests/fixtures/encrypted-mail/README.md).
    #[test]
    fn encrypted_mail_of_mail_clients_stays_mail() {
        let mail = fixtures("encrypted-mail");
        assert!(mail.len() >= 7, "{}", mail.len());
        for (name, raw) in &mail {
            assert_eq!(
                verdict_header_block(raw),
                Verdict {
                    kind: Kind::NotChat,
                    evidence: Evidence::None
                },
                "{name}"
            );
        }
    }

    #[test]
    fn one_signal_off_the_captured_form_is_mail() {
        let base: &[(&str, &str)] = &[
            ("From", "<bob@example.org>"),
            ("Date", "Tue, 1 Dec 2026 08:49:26 +0000"),
            (
                "Message-ID",
                "<4f6251f5-b4ee-4fa0-a716-c3f9f24f0023@localhost>",
            ),
            ("MIME-Version", "1.0"),
            ("To", "\"hidden-recipients\": ;"),
            ("Subject", "[...]"),
            (
                "Content-Type",
                "multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"b\"",
            ),
        ];
        let block = |replace: Option<(&str, &str)>| {
            let mut out = String::new();
            for (name, value) in base {
                let value = match replace {
                    Some((n, v)) if n == *name => v,
                    _ => value,
                };
                if !value.is_empty() {
                    out.push_str(&format!("{name}: {value}\r\n"));
                }
            }
            out + "\r\n"
        };
        assert_eq!(
            verdict_header_block(block(None).as_bytes()).evidence,
            Evidence::HeaderProtected
        );
        let misses: &[(&str, &str)] = &[
            ("From", "Bob <bob@example.org>"),
            ("From", ""),
            (
                "Message-ID",
                "<4F6251F5-B4EE-4FA0-A716-C3F9F24F0023@localhost>",
            ),
            (
                "Message-ID",
                "<4f6251f5-b4ee-4fa0-a716-c3f9f24f0023@example.org>",
            ),
            ("Message-ID", ""),
            ("To", "<alice@example.org>"),
            ("To", "undisclosed-recipients:;"),
            ("To", ""),
            ("Subject", "..."),
            ("Subject", "hello"),
            ("Subject", ""),
            (
                "Content-Type",
                "multipart/signed; protocol=\"application/pgp-signature\"; boundary=b",
            ),
            ("Content-Type", "multipart/mixed; boundary=b"),
            ("Content-Type", ""),
        ];
        for miss in misses {
            assert_eq!(
                verdict_header_block(block(Some(*miss)).as_bytes()).kind,
                Kind::NotChat,
                "{miss:?}"
            );
        }
        // Header order and case do not matter, and a Chat-Version added by
        // a future version keeps it a chat (by the COI rule then).
        let reordered = "content-type: multipart/encrypted; protocol=\"application/pgp-encrypted\"\n\
                         SUBJECT: [...]\nto: hidden-recipients:;\nmessage-id: <4f6251f5-b4ee-4fa0-a716-c3f9f24f0023@localhost>\n\
                         from: <bob@example.org>\n\n";
        assert_eq!(
            verdict_header_block(reordered.as_bytes()).evidence,
            Evidence::HeaderProtected
        );
        let with_cv = block(None).replacen("MIME-Version", "Chat-Version: 1.0\r\nMIME-Version", 1);
        assert_eq!(
            verdict_header_block(with_cv.as_bytes()),
            Verdict {
                kind: Kind::Chat,
                evidence: Evidence::ChatVersion
            }
        );
    }

    #[test]
    fn classify_from_dovecot_style_values() {
        // What mail_get_first_header() hands the FFI layer: raw, maybe folded.
        let table: &[(&str, ChatHeaders<'_>, Kind)] = &[
            ("nothing", ChatHeaders::default(), Kind::NotChat),
            (
                "empty Chat-Version",
                ChatHeaders {
                    chat_version: Some(b""),
                    ..Default::default()
                },
                Kind::Chat,
            ),
            (
                "folded Message-ID",
                ChatHeaders {
                    message_id: Some(b"\r\n <chat$group.abcdefABCDEF12.u@x>"),
                    ..Default::default()
                },
                group("abcdefABCDEF12"),
            ),
            (
                "MDN needs chat-ness",
                ChatHeaders {
                    content_type: Some(b"multipart/report; report-type=disposition-notification"),
                    ..Default::default()
                },
                Kind::NotChat,
            ),
            (
                "MDN chat via References",
                ChatHeaders {
                    references: Some(b"<chat$group.abcdefABCDEF12.u@x>"),
                    content_type: Some(b"multipart/report; report-type=disposition-notification"),
                    ..Default::default()
                },
                Kind::ReadReceipt,
            ),
            (
                "empty values",
                ChatHeaders {
                    chat_version: None,
                    message_id: Some(b""),
                    references: Some(b""),
                    content_type: Some(b""),
                    ..Default::default()
                },
                Kind::NotChat,
            ),
        ];
        for (name, headers, want) in table {
            assert_eq!(classify(headers), *want, "{name}");
        }
    }

    #[test]
    fn huge_values_are_windowed() {
        // 4 MiB of comment before the id: the window stops the scan long
        // before the id, so this must be NotChat (and fast).
        let mut v = vec![b'('; 1];
        v.resize(4 << 20, b'x');
        v.extend_from_slice(b") <chat$1@x>");
        let headers = ChatHeaders {
            message_id: Some(&v),
            references: Some(&v),
            content_type: Some(&v),
            ..Default::default()
        };
        assert_eq!(classify(&headers), Kind::NotChat);
    }

    proptest! {
        #[test]
        fn classify_header_block_never_panics(block in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = classify_header_block(&block);
        }

        #[test]
        fn classify_never_panics(
            cv in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            mid in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
            refs in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
            ct in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
        ) {
            let headers = ChatHeaders {
                chat_version: cv.as_deref(),
                message_id: mid.as_deref(),
                references: refs.as_deref(),
                content_type: ct.as_deref(),
                ..Default::default()
            };
            let kind = classify(&headers);
            if let Kind::GroupChat { group_id } = &kind {
                prop_assert!((11..=64).contains(&group_id.len()));
                prop_assert!(group_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            }
            if cv.is_some() {
                prop_assert!(kind.is_chat());
            }
        }

        #[test]
        fn classify_never_panics_on_structured_noise(
            mid in "[<>() \t\r\n\\\\\"@.$a-zA-Z0-9_-]{0,80}",
            refs in "[<>() \t\r\n\\\\\"@.$a-zA-Z0-9_-]{0,80}",
            ct in "[;=/() \t\r\n\\\\\"a-zA-Z-]{0,80}",
        ) {
            let headers = ChatHeaders {
                chat_version: None,
                message_id: Some(mid.as_bytes()),
                references: Some(refs.as_bytes()),
                content_type: Some(ct.as_bytes()),
                ..Default::default()
            };
            let _ = classify(&headers);
        }

        #[test]
        fn chat_prefixed_ids_are_chats(
            prefix in "(\\([a-z ]{0,5}\\))?[ \t]{0,2}<?",
            case in proptest::sample::select(vec!["chat$", "CHAT$", "Chat$", "cHaT$"]),
            rest in "[a-zA-Z0-9.]{0,20}@[a-z]{1,10}>?",
        ) {
            let value = format!("{prefix}{case}{rest}");
            let headers = ChatHeaders { message_id: Some(value.as_bytes()), ..Default::default() };
            prop_assert!(classify(&headers).is_chat(), "{}", value);
            let headers = ChatHeaders { references: Some(value.as_bytes()), ..Default::default() };
            prop_assert!(classify(&headers).is_chat(), "{}", value);
        }

        #[test]
        fn block_and_values_agree(
            cv in proptest::option::of("[ -~]{0,10}"),
            mid in proptest::option::of("<?(chat\\$)?(group\\.)?[A-Za-z0-9_-]{0,20}(\\.[a-z]{1,3})?@x>?"),
            refs in proptest::option::of("<?(chat\\$)?(group\\.)?[A-Za-z0-9_-]{0,20}(\\.[a-z]{1,3})?@x>? <y@z>"),
            ct in proptest::option::of("multipart/report; report-type=(disposition-notification|delivery-status)"),
        ) {
            // Building the block from the values and parsing it back must not
            // change the verdict.
            let mut block = String::new();
            for (name, v) in [("Chat-Version", &cv), ("Message-ID", &mid), ("References", &refs), ("Content-Type", &ct)] {
                if let Some(v) = v {
                    block.push_str(&format!("{name}: {v}\r\n"));
                }
            }
            let trim = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string());
            let (cv, mid, refs, ct) = (trim(&cv), trim(&mid), trim(&refs), trim(&ct));
            let headers = ChatHeaders {
                chat_version: cv.as_deref().map(str::as_bytes),
                message_id: mid.as_deref().map(str::as_bytes),
                references: refs.as_deref().map(str::as_bytes),
                content_type: ct.as_deref().map(str::as_bytes),
                ..Default::default()
            };
            prop_assert_eq!(classify_header_block(block.as_bytes()), classify(&headers));
        }
    }
}

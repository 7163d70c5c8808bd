//! Message classification: is this delivery a chat, and of which kind?
//!
//! Rules (DESIGN §3 and §4, COI server spec, Delta Chat 2.65 as captured in
//! tests/fixtures/deltachat/, docs/deltachat.md), applied to the first
//! occurrence of each header field:
//! - a message is a chat if ANY of: a `Chat-Version` field is present (its
//!   value is never looked at, even empty or RFC 2047-encoded counts); the first
//!   msg-id of `Message-ID` has a local part starting with `chat$`; the FIRST
//!   msg-id of `References` does (`chat$` is compared ASCII
//!   case-insensitively); or the message has Delta Chat's header-protected
//!   form: PGP/MIME encrypted, `Message-ID: <UUID-v4@localhost>`,
//!   `To: "hidden-recipients": ;`, `Subject: [...]` and a `From` without
//!   display name, all five (`protected`). Delta Chat's `UUID@localhost` ids
//!   and its old `Gr.`/`Mr.` prefixes are not chat markers on their own.
//! - a chat is a group chat when a chat id reads `chat$group.<gid>.<unique>@…`
//!   with `<gid>` made of `[0-9A-Za-z_-]`, 12 to 64 of them (anything else
//!   leaves it a plain chat; `group.` compares case-insensitively like
//!   `chat$`, the id keeps its case). The group id comes from `Message-ID`,
//!   else from the first `References` id. A message with `Chat-Version` and
//!   no COI group id may name its group the Delta Chat 1.x way,
//!   `Gr.<gid>.<random>@…` with `<gid>` 11 or 16 of `[0-9A-Za-z_-]`.
//! - a header-protected chat is never a group chat or read receipt as far
//!   as the server can tell: both are inside the encryption
//!   ([`Verdict::headers_protected`]).
//! - a chat whose `Content-Type` is `multipart/report` with
//!   `report-type=disposition-notification` (RFC 8098 MDN) is a read receipt;
//!   that wins over group/plain chat. An MDN that is not a chat stays
//!   [`Kind::NotChat`].
//!
//! Invariants: nothing here panics on any input, and no header value is
//! scanned beyond [`VALUE_SCAN_LIMIT`] bytes, so a 1 MiB `References` costs the
//! same as a 16 KiB one. Only a group chat allocates (its id). Splitting a raw
//! header block ([`extract_headers`]) is one linear pass over the block, which
//! is the caller's to bound (Dovecot's own header parsing bounds it in
//! production, where that function is not used).
//!
//! Callers: the plugin's `classify` op with values from Dovecot's
//! `mail_get_first_header()` ([`classify()`]); tests, the fuzzer and the
//! benchmark with raw header blocks ([`classify_header_block`]).

mod content_type;
mod headers;
mod kind;
mod lex;
mod msgid;
mod protected;
mod rules;

pub use headers::{extract_headers, ChatHeaders};
pub use kind::{Kind, KindCode};
pub use rules::{
    classify, classify_header_block, verdict, verdict_header_block, Evidence, Verdict,
    VALUE_SCAN_LIMIT,
};

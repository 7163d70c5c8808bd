//! Target `classify`: a raw header block in, a [`Kind`] out.
//!
//! Entry point: `coi_core::classify_header_block` (the header-block reader
//! `extract_headers` plus the rules the plugin runs on every delivery).
//!
//! Properties:
//! - never panics, whatever the bytes;
//! - a group id is `[0-9A-Za-z_-]`, 12 to 64 characters for a COI group
//!   (DESIGN §3) or 11 or 16 for a Delta Chat 1.x `Gr.` group (what the
//!   client writes; docs/deltachat.md);
//! - the kind's integer code and name round-trip through `KindCode`;
//! - anything after the first empty line is body and changes nothing;
//! - line endings do not matter: the block with its CRLF line endings turned
//!   into LF classifies the same (the reader treats CR/LF in values as
//!   whitespace).

use coi_core::{classify_header_block, Kind, KindCode};

/// A body that would make any header block a group chat if the reader
/// looked past the empty line.
const TRAILING_BODY: &[u8] =
    b"\r\n\r\nChat-Version: 1.0\r\nMessage-ID: <chat$group.AAAAAAAAAAAA.x@example.org>\r\n";

/// Runs the classifier on `data` and checks the properties above.
pub fn check(data: &[u8]) {
    let kind = classify_header_block(data);
    check_kind(&kind);

    let mut with_body = data.to_vec();
    with_body.extend_from_slice(TRAILING_BODY);
    let kind_with_body = classify_header_block(&with_body);
    assert_eq!(kind, kind_with_body, "text after the first empty line changed the kind");

    if data.windows(2).any(|w| w == b"\r\n") {
        let lf_only = crlf_to_lf(data);
        assert_eq!(kind, classify_header_block(&lf_only), "CRLF vs LF changed the kind");
    }
}

fn check_kind(kind: &Kind) {
    let code = kind.code_kind();
    assert_eq!(KindCode::from_code(kind.code()), Some(code));
    assert_eq!(kind.name(), code.name());
    assert_eq!(kind.is_chat(), code.is_chat());
    match kind {
        Kind::GroupChat { group_id } => {
            assert!(
                (12..=64).contains(&group_id.len()) || group_id.len() == 11,
                "group id of {} bytes",
                group_id.len()
            );
            assert!(
                group_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "group id {group_id:?} has characters outside [0-9A-Za-z_-]"
            );
            assert_eq!(kind.group_id(), Some(group_id.as_str()));
        }
        _ => assert_eq!(kind.group_id(), None),
    }
}

/// Turns every CRLF line ending into LF. A CR right before that CR is data
/// (a line `"\r" CRLF` holds one CR), so a CRLF preceded by CR is left alone:
/// dropping its CR would turn the data CR into a line ending's optional CR
/// and the line into an empty one (found by this target; the input is kept
/// in regressions/classify/).
fn crlf_to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &b) in data.iter().enumerate() {
        let ending_cr = b == b'\r'
            && data.get(i + 1) == Some(&b'\n')
            && (i == 0 || data[i - 1] != b'\r');
        if !ending_cr {
            out.push(b);
        }
    }
    out
}

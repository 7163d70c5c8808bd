//! The header fields the classifier needs, and how to find them in a raw
//! RFC 5322 header block.
//!
//! [`ChatHeaders`] is what the plugin fills from Dovecot's
//! `mail_get_first_header()`; [`extract_headers`] fills it from raw bytes for
//! tests, the fuzzer and the benchmark. The block reader is tolerant, because
//! real mail is not RFC-clean:
//! - the block ends at the first empty line (LF or CRLF) or at the end of input;
//! - lines end in LF with an optional CR before it; a lone CR is data;
//! - lines starting with SP/HT continue the previous field (folding); the value
//!   is returned still folded, the value readers treat CR/LF as whitespace;
//! - field names compare ASCII case-insensitively and may have WSP before the
//!   colon (RFC 5322 obsolete syntax);
//! - lines that are not `name: value` (mbox `From ` lines, binary junk, a
//!   continuation with nothing to continue) are skipped with their folds;
//! - the first occurrence of each field wins.
//!
//! Invariants: values borrow from the block; one linear pass, stopping as soon
//! as all seven fields were seen; no allocation, no panic.
//!
//! Callers: the FFI layer builds [`ChatHeaders`] directly;
//! [`crate::classify::classify_header_block`] uses [`extract_headers`].

/// First occurrence of each header field, value as Dovecot's
/// `mail_get_first_header()` returns it (may still contain folding CRLF+WSP,
/// comments, RFC 2047 encoded-words, arbitrary non-UTF-8 bytes, and be huge).
///
/// `None` means the field is absent; `Some(b"")` is a present, empty field.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChatHeaders<'a> {
    /// `Chat-Version` (presence alone makes a chat).
    pub chat_version: Option<&'a [u8]>,
    /// `Message-ID`.
    pub message_id: Option<&'a [u8]>,
    /// `References`.
    pub references: Option<&'a [u8]>,
    /// `Content-Type` (to recognise read receipts and PGP/MIME encryption).
    pub content_type: Option<&'a [u8]>,
    /// `From`, raw (the header-protected rule wants it without display name).
    pub from: Option<&'a [u8]>,
    /// `To`, raw (the header-protected rule wants Delta Chat's empty group).
    pub to: Option<&'a [u8]>,
    /// `Subject`, raw, not decoded (the header-protected rule wants `[...]`).
    pub subject: Option<&'a [u8]>,
}

impl ChatHeaders<'_> {
    fn is_complete(&self) -> bool {
        self.chat_version.is_some()
            && self.message_id.is_some()
            && self.references.is_some()
            && self.content_type.is_some()
            && self.from.is_some()
            && self.to.is_some()
            && self.subject.is_some()
    }
}

/// Finds the first `Chat-Version`, `Message-ID`, `References`,
/// `Content-Type`, `From`, `To` and `Subject` fields of a raw header block
/// (the parsing half of [`crate::classify::classify_header_block`]).
///
/// Values are borrowed, with leading whitespace and the final line ending
/// removed; folds inside a value are left for the value readers. Work is one
/// pass over the block, stopping early once all seven fields were found.
pub fn extract_headers(block: &[u8]) -> ChatHeaders<'_> {
    let mut headers = ChatHeaders::default();
    for (name, value) in Fields::new(block) {
        let slot = if name.eq_ignore_ascii_case(b"chat-version") {
            &mut headers.chat_version
        } else if name.eq_ignore_ascii_case(b"message-id") {
            &mut headers.message_id
        } else if name.eq_ignore_ascii_case(b"references") {
            &mut headers.references
        } else if name.eq_ignore_ascii_case(b"content-type") {
            &mut headers.content_type
        } else if name.eq_ignore_ascii_case(b"from") {
            &mut headers.from
        } else if name.eq_ignore_ascii_case(b"to") {
            &mut headers.to
        } else if name.eq_ignore_ascii_case(b"subject") {
            &mut headers.subject
        } else {
            continue;
        };
        if slot.is_none() {
            *slot = Some(value);
            if headers.is_complete() {
                break;
            }
        }
    }
    headers
}

/// Iterator over the well-formed `(name, value)` fields of a header block.
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(block: &'a [u8]) -> Self {
        Fields { rest: block }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let buf = self.rest;
            if buf.is_empty() {
                return None;
            }
            let first_end = line_end(buf, 0);
            let first_line = strip_cr(&buf[..first_end]);
            if first_line.is_empty() {
                // The empty line ends the header block; what follows is body.
                self.rest = &[];
                return None;
            }
            let mut end = first_end;
            let mut next = first_end.saturating_add(1).min(buf.len());
            while matches!(buf.get(next), Some(b' ' | b'\t')) {
                end = line_end(buf, next);
                next = end.saturating_add(1).min(buf.len());
            }
            self.rest = &buf[next..];
            if let Some(field) = split_field(first_line, strip_cr(&buf[..end])) {
                return Some(field);
            }
        }
    }
}

/// Splits a whole (possibly folded) field into name and value, or `None` for
/// a line that is not a header field. The colon is looked for in the first
/// line only: a colon on a continuation line does not make junk a field.
fn split_field<'a>(first_line: &[u8], field: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    let colon = first_line.iter().position(|&b| b == b':')?;
    let name = trim_end_wsp(&field[..colon]);
    if name.is_empty() || !name.iter().all(|&b| b.is_ascii_graphic() && b != b':') {
        return None;
    }
    let value = trim_start_ws(&field[colon + 1..]);
    Some((name, value))
}

/// Index of the LF ending the line that starts at `from`, or `buf.len()`.
fn line_end(buf: &[u8], from: usize) -> usize {
    buf.get(from..)
        .and_then(|s| s.iter().position(|&b| b == b'\n'))
        .map_or(buf.len(), |i| from + i)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_end_wsp(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rposition(|&b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &s[..n]
}

fn trim_start_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(s.len());
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(block: &[u8]) -> Vec<(String, String)> {
        Fields::new(block)
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// (raw block, expected (name, value) fields)
    type FieldCase = (&'static [u8], &'static [(&'static str, &'static str)]);

    #[test]
    fn field_splitting_table() {
        let table: &[FieldCase] = &[
            (b"", &[]),
            (b"A: 1\r\nB: 2\r\n", &[("A", "1"), ("B", "2")]),
            (b"A: 1\nB: 2\n", &[("A", "1"), ("B", "2")]),
            (b"A: 1\nB: 2", &[("A", "1"), ("B", "2")]),
            (b"A: 1\r\n\r\nB: 2\r\n", &[("A", "1")]),
            (b"A: 1\n\nB: 2\n", &[("A", "1")]),
            (b"\r\nA: 1\r\n", &[]),
            (
                b"A: 1\r\n 2\r\n\t3\r\nB: x\r\n",
                &[("A", "1\r\n 2\r\n\t3"), ("B", "x")],
            ),
            (b"A:\r\n <x@y>\r\n", &[("A", "<x@y>")]),
            (b"A:no-space\r\n", &[("A", "no-space")]),
            (b"A :  obs\r\n", &[("A", "obs")]),
            (b"A:\r\n", &[("A", "")]),
            (b"A:", &[("A", "")]),
            (b"From a@b Mon Jan  1 00:00:00 2024\nA: 1\n", &[("A", "1")]),
            (b"garbage line\nA: 1\n", &[("A", "1")]),
            (b" orphan: continuation\nA: 1\n", &[("A", "1")]),
            (b"junk\n continued: x\nA: 1\n", &[("A", "1")]),
            (b": no name\nA: 1\n", &[("A", "1")]),
            (b"Bad Name: x\nA: 1\n", &[("A", "1")]),
            (b"N\x00L: x\nA: 1\n", &[("A", "1")]),
            (
                b"A: v\x00\xff\xfe\nB: 2\n",
                &[("A", "v\0\u{fffd}\u{fffd}"), ("B", "2")],
            ),
            (b"A: with\rlone CR\n", &[("A", "with\rlone CR")]),
            (b"A: 1\r\n \r\nB: 2\r\n", &[("A", "1\r\n "), ("B", "2")]),
        ];
        for (block, want) in table {
            assert_eq!(
                fields(block),
                pairs(want),
                "{:?}",
                String::from_utf8_lossy(block)
            );
        }
    }

    #[test]
    fn extract_finds_all_fields_case_insensitively() {
        let block = b"CHAT-VERSION: 1.0\r\nmessage-id: <a@b>\r\nReFeReNcEs: <r@b>\r\n\
                      CONTENT-type: text/plain\r\n\r\nbody\r\n";
        let h = extract_headers(block);
        assert_eq!(h.chat_version, Some(&b"1.0"[..]));
        assert_eq!(h.message_id, Some(&b"<a@b>"[..]));
        assert_eq!(h.references, Some(&b"<r@b>"[..]));
        assert_eq!(h.content_type, Some(&b"text/plain"[..]));
        let block = b"FROM: <a@b>\r\nto: \"hidden-recipients\": ;\r\nSUBJECT: [...]\r\n\r\n";
        let h = extract_headers(block);
        assert_eq!(h.from, Some(&b"<a@b>"[..]));
        assert_eq!(h.to, Some(&b"\"hidden-recipients\": ;"[..]));
        assert_eq!(h.subject, Some(&b"[...]"[..]));
    }

    #[test]
    fn extract_first_occurrence_wins() {
        let block = b"Message-ID: <first@x>\nMessage-ID: <chat$second@x>\n\
                      Chat-Version:\nChat-Version: 2\n";
        let h = extract_headers(block);
        assert_eq!(h.message_id, Some(&b"<first@x>"[..]));
        assert_eq!(h.chat_version, Some(&b""[..]));
    }

    #[test]
    fn extract_ignores_body() {
        let h = extract_headers(b"Subject: x\n\nChat-Version: 1.0\n");
        assert!(h.chat_version.is_none());
    }

    #[test]
    fn extract_missing_fields() {
        let h = extract_headers(b"Subject: hi\r\nFrom: a@b\r\n");
        assert!(h.chat_version.is_none());
        assert!(h.message_id.is_none());
        assert!(h.references.is_none());
        assert!(h.content_type.is_none());
    }

    proptest! {
        #[test]
        fn extract_headers_never_panics(block in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let h = extract_headers(&block);
            // Values must be sub-slices of the input.
            for v in [h.chat_version, h.message_id, h.references, h.content_type, h.from, h.to, h.subject]
                .into_iter()
                .flatten()
            {
                let start = v.as_ptr() as usize - block.as_ptr() as usize;
                prop_assert!(start + v.len() <= block.len());
            }
        }

        #[test]
        fn fields_never_panic_on_header_like_input(
            lines in proptest::collection::vec(
                "([ \t]?[A-Za-z-]{0,12}[ ]?:?[ -~]{0,20}|[\\x00-\\xff]{0,10})(\r?\n)?", 0..20)
        ) {
            let block = lines.concat();
            for (name, _) in Fields::new(block.as_bytes()) {
                prop_assert!(!name.is_empty());
                prop_assert!(name.iter().all(|b| b.is_ascii_graphic() && *b != b':'));
            }
        }
    }
}

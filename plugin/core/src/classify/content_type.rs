//! Recognising a Message Disposition Notification by its Content-Type.
//!
//! An MDN (RFC 8098) is `multipart/report` with the parameter
//! `report-type=disposition-notification` (RFC 6522). Type, subtype, parameter
//! name and value compare ASCII case-insensitively; the value may be a token or
//! a quoted-string (quoted-pairs honoured); parameters may come in any order,
//! with comments and folds between them. The first `report-type` parameter
//! decides. Malformed parameters are skipped up to the next `;`. RFC 2231
//! continuations (`report-type*0=`) are not decoded: no client splits a
//! 24-byte value.
//!
//! Invariants: linear in the (capped) input, no allocation, no panic.
//!
//! Callers: `rules::classify` only.

use super::lex::{skip_cfws, skip_quoted_body, token};

const REPORT_TYPE: &[u8] = b"report-type";
const DISPOSITION_NOTIFICATION: &[u8] = b"disposition-notification";

/// True if the Content-Type value declares an RFC 8098 MDN.
pub(crate) fn is_disposition_report(value: &[u8]) -> bool {
    let s = skip_cfws(value);
    let (ty, s) = token(s);
    if !ty.eq_ignore_ascii_case(b"multipart") {
        return false;
    }
    let [b'/', s @ ..] = skip_cfws(s) else {
        return false;
    };
    let (subtype, mut s) = token(skip_cfws(s));
    if !subtype.eq_ignore_ascii_case(b"report") {
        return false;
    }
    loop {
        s = skip_cfws(s);
        match s {
            [] => return false,
            [b';', rest @ ..] => s = skip_cfws(rest),
            _ => {
                // Junk where a ';' belongs; resync on the next parameter.
                s = skip_to_semicolon(s);
                continue;
            }
        }
        let (name, rest) = token(s);
        let [b'=', rest @ ..] = skip_cfws(rest) else {
            s = skip_to_semicolon(rest);
            continue;
        };
        let rest = skip_cfws(rest);
        if name.eq_ignore_ascii_case(REPORT_TYPE) {
            return value_eq_ignore_case(rest, DISPOSITION_NOTIFICATION);
        }
        s = skip_to_semicolon(rest);
    }
}

/// Advances to the next `;` that is outside quotes and comments (or to the end).
fn skip_to_semicolon(mut s: &[u8]) -> &[u8] {
    loop {
        match s {
            [] | [b';', ..] => return s,
            [b'"', rest @ ..] => s = skip_quoted_body(rest),
            [b'(', ..] => s = skip_cfws(s),
            [_, rest @ ..] => s = rest,
        }
    }
}

/// Compares a parameter value (token or quoted-string) with `want`, ASCII
/// case-insensitively, without unescaping into a buffer.
fn value_eq_ignore_case(s: &[u8], want: &[u8]) -> bool {
    let [b'"', body @ ..] = s else {
        return token(s).0.eq_ignore_ascii_case(want);
    };
    let mut want = want.iter();
    let mut i = 0;
    while i < body.len() {
        let mut b = body[i];
        if b == b'"' {
            return want.next().is_none();
        }
        if b == b'\\' {
            i += 1;
            match body.get(i) {
                Some(&escaped) => b = escaped,
                None => return false,
            }
        }
        match want.next() {
            Some(w) if w.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
        i += 1;
    }
    // Unterminated quote: the value ran to the end of the field; accept a
    // complete match rather than punish a truncated header.
    want.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdn_content_types() {
        let table: &[(&str, bool)] = &[
            ("multipart/report; report-type=disposition-notification", true),
            ("multipart/report; report-type=\"disposition-notification\"", true),
            ("Multipart/Report; Report-Type=Disposition-Notification", true),
            ("MULTIPART/REPORT;REPORT-TYPE=DISPOSITION-NOTIFICATION", true),
            ("multipart/report; boundary=\"abc;def\"; report-type=disposition-notification", true),
            ("multipart/report; boundary=xyz;\r\n\treport-type=disposition-notification", true),
            ("multipart/report;\r\n report-type=disposition-notification;\r\n boundary=\"x\"", true),
            ("multipart / report ; report-type = disposition-notification", true),
            ("(c) multipart/report (c); (c) report-type (c) = (c) disposition-notification (c)", true),
            ("multipart/report; report-type=\"dispo\\sition-notification\"", true),
            ("multipart/report; report-type=\"disposition-notification", true),
            ("multipart/report; junk; report-type=disposition-notification", true),
            ("multipart/report; a=\"(;)\"; report-type=disposition-notification", true),
            ("multipart/report; @@@ ; report-type=disposition-notification", true),
            ("multipart/report; report-type=delivery-status", false),
            ("multipart/report; report-type=delivery-status; report-type=disposition-notification", false),
            ("multipart/report; report-type=disposition-notification-x", false),
            ("multipart/report; report-type=\"disposition-notification-x\"", false),
            ("multipart/report; report-type=\"disposition\"", false),
            ("multipart/report; report-type=\"disposition-notification\\", false),
            ("multipart/report", false),
            ("multipart/report;", false),
            ("multipart/report; report-type", false),
            ("multipart/report; report-type=", false),
            ("multipart/mixed; report-type=disposition-notification", false),
            ("multipart/reports; report-type=disposition-notification", false),
            ("message/disposition-notification", false),
            ("text/plain; charset=utf-8", false),
            ("multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"x\"", false),
            ("multipart", false),
            ("", false),
            ("multipart/report; x-report-type=disposition-notification", false),
        ];
        for (input, want) in table {
            assert_eq!(is_disposition_report(input.as_bytes()), *want, "{input}");
        }
    }

    #[test]
    fn skip_to_semicolon_progresses() {
        assert_eq!(skip_to_semicolon(b"abc;d"), b";d");
        assert_eq!(skip_to_semicolon(b"\"a;b\";c"), b";c");
        assert_eq!(skip_to_semicolon(b"(a;b);c"), b";c");
        assert_eq!(skip_to_semicolon(b"\"open"), b"");
    }
}

//! Reading the two Content-Types the classifier cares about.
//!
//! - An MDN (RFC 8098) is `multipart/report` with the parameter
//!   `report-type=disposition-notification` (RFC 6522).
//! - A PGP/MIME encrypted message (RFC 3156) is `multipart/encrypted` with
//!   `protocol="application/pgp-encrypted"`; the header-protected Delta Chat
//!   rule needs it (`protected`).
//!
//! Type, subtype, parameter name and value compare ASCII case-insensitively;
//! the value may be a quoted-string (quoted-pairs honoured) or a bare value
//! (everything up to whitespace, `;` or a comment, so a sloppy unquoted
//! `protocol=application/pgp-encrypted` still reads); parameters may come in
//! any order, with comments and folds between them. The first occurrence of
//! a parameter decides. Malformed parameters are skipped up to the next `;`.
//! RFC 2231 continuations (`report-type*0=`) are not decoded: no client
//! splits these short values.
//!
//! Invariants: linear in the (capped) input, no allocation, no panic.
//!
//! Callers: `rules::classify` and `protected` only.

use super::lex::{is_wsp, skip_cfws, skip_quoted_body, token};

const REPORT_TYPE: &[u8] = b"report-type";
const DISPOSITION_NOTIFICATION: &[u8] = b"disposition-notification";
const PROTOCOL: &[u8] = b"protocol";
const PGP_ENCRYPTED: &[u8] = b"application/pgp-encrypted";

/// True if the Content-Type value declares an RFC 8098 MDN.
pub(crate) fn is_disposition_report(value: &[u8]) -> bool {
    media_type_params(value, b"multipart", b"report")
        .is_some_and(|params| param_is(params, REPORT_TYPE, DISPOSITION_NOTIFICATION))
}

/// True if the Content-Type value declares RFC 3156 PGP/MIME encryption.
pub(crate) fn is_pgp_encrypted(value: &[u8]) -> bool {
    media_type_params(value, b"multipart", b"encrypted")
        .is_some_and(|params| param_is(params, PROTOCOL, PGP_ENCRYPTED))
}

/// The parameter list after `type/subtype`, if the value has that media type.
fn media_type_params<'a>(value: &'a [u8], ty: &[u8], subtype: &[u8]) -> Option<&'a [u8]> {
    let s = skip_cfws(value);
    let (got_ty, s) = token(s);
    if !got_ty.eq_ignore_ascii_case(ty) {
        return None;
    }
    let [b'/', s @ ..] = skip_cfws(s) else {
        return None;
    };
    let (got_subtype, s) = token(skip_cfws(s));
    got_subtype.eq_ignore_ascii_case(subtype).then_some(s)
}

/// True if the first parameter called `name` has the value `want`.
fn param_is(mut s: &[u8], name: &[u8], want: &[u8]) -> bool {
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
        let (got, rest) = token(s);
        let [b'=', rest @ ..] = skip_cfws(rest) else {
            s = skip_to_semicolon(rest);
            continue;
        };
        let rest = skip_cfws(rest);
        if got.eq_ignore_ascii_case(name) {
            return value_eq_ignore_case(rest, want);
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

/// Compares a parameter value (quoted-string or bare) with `want`, ASCII
/// case-insensitively, without unescaping into a buffer.
fn value_eq_ignore_case(s: &[u8], want: &[u8]) -> bool {
    let [b'"', body @ ..] = s else {
        let n = s
            .iter()
            .position(|&b| is_wsp(b) || matches!(b, b';' | b'(' | b'"'))
            .unwrap_or(s.len());
        return s[..n].eq_ignore_ascii_case(want);
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
    fn pgp_encrypted_content_types() {
        let table: &[(&str, bool)] = &[
            // Delta Chat 2.65, Thunderbird, K-9: the RFC 3156 form
            ("multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"b\"", true),
            ("multipart/encrypted;\r\n protocol=\"application/pgp-encrypted\";\r\n boundary=\"b\"", true),
            ("Multipart/Encrypted; Protocol=\"Application/PGP-Encrypted\"", true),
            ("multipart/encrypted; boundary=\"x;y\"; protocol=\"application/pgp-encrypted\"", true),
            ("multipart/encrypted; protocol=application/pgp-encrypted; boundary=b", true),
            ("multipart/encrypted; protocol=\"application/pgp-encrypted", true),
            ("multipart/encrypted; protocol=\"application/pkcs7-mime\"", false),
            ("multipart/encrypted; protocol=\"application/pgp-encrypted-x\"", false),
            ("multipart/encrypted; boundary=b", false),
            ("multipart/encrypted", false),
            ("multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256", false),
            ("multipart/mixed; protocol=\"application/pgp-encrypted\"", false),
            ("application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m", false),
            ("application/pgp-encrypted", false),
            ("", false),
        ];
        for (input, want) in table {
            assert_eq!(is_pgp_encrypted(input.as_bytes()), *want, "{input}");
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

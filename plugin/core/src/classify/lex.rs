//! Tolerant lexing primitives shared by the msg-id and Content-Type readers.
//!
//! Every function takes a byte slice and returns the rest after what it
//! consumed; none of them allocates, recurses or panics, and each consumes
//! at most its input, so callers stay linear in the (capped) value length.
//! Malformed input (unterminated comments or quotes, stray bytes) is consumed
//! up to the end rather than reported: classification treats "unreadable" as
//! "no marker found".
//!
//! Callers: `msgid` and `content_type` in this module only.

/// Folding whitespace in the wide sense: a header value handed over raw may
/// still contain the CRLF of a fold, or a bare LF.
pub(crate) fn is_wsp(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Skips whitespace and RFC 5322 comments (nested, with quoted-pairs).
pub(crate) fn skip_cfws(mut s: &[u8]) -> &[u8] {
    loop {
        while let [b, rest @ ..] = s {
            if !is_wsp(*b) {
                break;
            }
            s = rest;
        }
        match s {
            [b'(', rest @ ..] => s = skip_comment_body(rest),
            _ => return s,
        }
    }
}

/// Skips a comment whose opening `(` was already consumed. An unterminated
/// comment swallows the rest of the value.
fn skip_comment_body(s: &[u8]) -> &[u8] {
    // A counter instead of recursion: hostile nesting depth must not grow the stack.
    let mut depth: usize = 1;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[i + 1..];
                }
            }
            _ => {}
        }
        i += 1;
    }
    &[]
}

/// Skips a quoted-string whose opening `"` was already consumed.
pub(crate) fn skip_quoted_body(s: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'"' => return &s[i + 1..],
            _ => {}
        }
        i += 1;
    }
    &[]
}

/// RFC 2045 token character: printable ASCII except tspecials.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b'@'
                | b','
                | b';'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'='
        )
}

/// Splits off the longest run of token characters.
pub(crate) fn token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().position(|&b| !is_token_char(b)).unwrap_or(s.len());
    s.split_at(n)
}

/// ASCII case-insensitive `starts_with`.
pub(crate) fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_cfws_cases() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"   x", b"x"),
            (b"\r\n\tx", b"x"),
            (b"(c) x", b"x"),
            (b"(a (nested) b)x", b"x"),
            (b"(esc \\) still)x", b"x"),
            (b"(one) (two)\r\n (three)<id>", b"<id>"),
            (b"(unterminated <id>", b""),
            (b"((((", b""),
            (b"(trailing backslash \\", b""),
            (b")x", b")x"),
        ];
        for (input, rest) in table {
            assert_eq!(
                skip_cfws(input),
                *rest,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn skip_cfws_deep_nesting_does_not_recurse() {
        let mut v = vec![b'('; 100_000];
        v.resize(200_000, b')');
        v.push(b'x');
        assert_eq!(skip_cfws(&v), b"x");
    }

    #[test]
    fn quoted_body() {
        assert_eq!(skip_quoted_body(b"abc\" rest"), b" rest");
        assert_eq!(skip_quoted_body(b"a\\\"b\"x"), b"x");
        assert_eq!(skip_quoted_body(b"never ends"), b"");
        assert_eq!(skip_quoted_body(b"\\"), b"");
    }

    #[test]
    fn tokens() {
        assert_eq!(
            token(b"multipart/report"),
            (&b"multipart"[..], &b"/report"[..])
        );
        assert_eq!(token(b"report-type=x"), (&b"report-type"[..], &b"=x"[..]));
        assert_eq!(token(b""), (&b""[..], &b""[..]));
        assert_eq!(token(b"\xffabc"), (&b""[..], &b"\xffabc"[..]));
    }

    #[test]
    fn prefix_ignore_case() {
        assert!(starts_with_ignore_case(b"CHAT$x", b"chat$"));
        assert!(starts_with_ignore_case(b"chat$", b"chat$"));
        assert!(!starts_with_ignore_case(b"chat", b"chat$"));
        assert!(!starts_with_ignore_case(b"", b"chat$"));
    }
}

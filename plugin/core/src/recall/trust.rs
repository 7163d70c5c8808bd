//! Is a delivered message authored by an authenticated local user?
//!
//! LMTP cannot tell a message that the operator's submission server
//! accepted from an authenticated user from outside mail that merely claims
//! a local sender in its From header and envelope: both arrive the same
//! way. Recall and read status must never act on the second kind, so a
//! copy counts as authored by local user `A` only when all of these hold
//! (docs/recall.md, "Who sent it"):
//!
//! 1. `coi_sender_trust = received`;
//! 2. the topmost Received header that is not Dovecot's own LMTP trace
//!    record (`by ... with LMTP`, `LMTPS`, `LMTPA`, `LMTPSA`) was written by
//!    the operator's MTA for an authenticated submission: its protocol
//!    (`with ESMTPA` / `ESMTPSA`, RFC 3848) ends in `A`, and before its `by`
//!    clause it carries Postfix's `(Authenticated sender: A)` note
//!    (`smtpd_sasl_authenticated_header = yes`);
//! 3. the From header's address and the envelope sender are both `A`
//!    (ASCII case-insensitive).
//!
//! Why this cannot be forged from outside: an MTA prepends its Received
//! header, so for mail from outside the topmost non-LMTP header is the
//! operator's inbound hop (`with ESMTP`/`ESMTPS`, no note); headers an
//! attacker writes sit below it and are never looked at. Inside the
//! operator's header, the part before `by` holds only the HELO name (one
//! token, no spaces) and the client's DNS name and address, so a client
//! cannot spell a note there either. Set-ups where a content filter
//! re-injects the message (one more unauthenticated hop on top) fail
//! closed: nothing is trusted.
//!
//! Invariants: pure, never panics, bounded work (at most
//! [`MAX_RECEIVED_HEADERS`] headers of [`MAX_HEADER_BYTES`] each are read).
//!
//! Callers: the plugin's delivery ops (`trust_check`).

use super::settings::SenderTrust;

/// Received headers looked at from the top, at most.
pub const MAX_RECEIVED_HEADERS: usize = 16;
/// Bytes of one Received header looked at, at most.
pub const MAX_HEADER_BYTES: usize = 4096;
/// Longest address accepted.
pub const MAX_ADDRESS_BYTES: usize = 254;

/// Why a message is or is not taken as authored by a local user (for the
/// debug log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authored by this (lowercased) address.
    Trusted(String),
    /// `coi_sender_trust = none`.
    TrustOff,
    /// No Received header below Dovecot's own.
    NoReceived,
    /// The topmost MTA header is not an authenticated submission.
    NotAuthenticated,
    /// Authenticated, but the login, the From address and the envelope
    /// sender are not all the same address.
    Mismatch,
}

impl Verdict {
    /// The trusted sender, if any.
    pub fn sender(&self) -> Option<&str> {
        match self {
            Verdict::Trusted(a) => Some(a),
            _ => None,
        }
    }

    /// A short explanation for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Trusted(_) => "authenticated submission",
            Verdict::TrustOff => "coi_sender_trust = none",
            Verdict::NoReceived => "no Received header from the MTA",
            Verdict::NotAuthenticated => "topmost MTA Received header is not an authenticated submission",
            Verdict::Mismatch => "login, From and envelope sender differ",
        }
    }
}

/// Collapses every run of whitespace into one space and lowercases ASCII;
/// reads at most [`MAX_HEADER_BYTES`].
fn normalize(value: &[u8]) -> String {
    let head = &value[..value.len().min(MAX_HEADER_BYTES)];
    let mut out = String::with_capacity(head.len());
    let mut space = true;
    for c in String::from_utf8_lossy(head).chars() {
        if c.is_whitespace() {
            if !space {
                out.push(' ');
                space = true;
            }
        } else {
            out.extend(c.to_lowercase());
            space = false;
        }
    }
    out
}

/// The protocol word after ` with ` following the `by` clause.
fn protocol(header: &str) -> Option<&str> {
    let by = if header.starts_with("by ") { 0 } else { header.find(" by ")? + 1 };
    let rest = &header[by..];
    let with = rest.find(" with ")?;
    rest[with + 6..].split([' ', ';']).next().filter(|w| !w.is_empty())
}

fn is_lmtp(header: &str) -> bool {
    matches!(protocol(header), Some("lmtp" | "lmtps" | "lmtpa" | "lmtpsa"))
}

/// The login in an `(authenticated sender: X)` note before the `by` clause.
fn authenticated_sender(header: &str) -> Option<&str> {
    const NOTE: &str = "(authenticated sender: ";
    // " by " (not "by "): a HELO name may start with "by".
    let before_by = match header.find(" by ") {
        Some(at) => &header[..at],
        None => header,
    };
    let start = before_by.find(NOTE)? + NOTE.len();
    let end = before_by[start..].find(')')? + start;
    Some(before_by[start..end].trim())
}

fn plain_address(a: &[u8]) -> Option<String> {
    let a = std::str::from_utf8(a.trim_ascii()).ok()?;
    let a = a.strip_prefix('<').and_then(|a| a.strip_suffix('>')).unwrap_or(a);
    let ok = !a.is_empty()
        && a.len() <= MAX_ADDRESS_BYTES
        && a.contains('@')
        && !a.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| a.to_ascii_lowercase())
}

/// Decides (see the module docs). `received` are the Received header
/// values in message order (topmost first), `from` the From header's
/// address (`local@domain`), `envelope` the MAIL FROM address.
pub fn check(trust: SenderTrust, received: &[&[u8]], from: Option<&[u8]>, envelope: Option<&[u8]>) -> Verdict {
    if trust == SenderTrust::None {
        return Verdict::TrustOff;
    }
    let topmost = received
        .iter()
        .take(MAX_RECEIVED_HEADERS)
        .map(|h| normalize(h))
        .find(|h| !is_lmtp(h));
    let Some(header) = topmost else {
        return Verdict::NoReceived;
    };
    let authenticated_protocol = protocol(&header).is_some_and(|p| p.ends_with('a'));
    let login = match authenticated_sender(&header) {
        Some(login) if authenticated_protocol => login,
        _ => return Verdict::NotAuthenticated,
    };
    let (Some(login), Some(from), Some(envelope)) =
        (plain_address(login.as_bytes()), from.and_then(plain_address), envelope.and_then(plain_address))
    else {
        return Verdict::Mismatch;
    };
    if login == from && login == envelope {
        Verdict::Trusted(login)
    } else {
        Verdict::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LMTP: &str = "from mail.example.org ([127.0.0.1])\r\n\tby mail.example.org with LMTP\r\n\tid xyz\r\n\t(envelope-from <alice@example.org>)\r\n\tfor <bob@example.org>; Thu, 3 Dec 2026 11:00:00 +0000";
    const SUBMISSION: &str = "from [127.0.0.1] (localhost [127.0.0.1])\r\n\t(Authenticated sender: alice@example.org)\r\n\tby mail.example.org (Postfix) with ESMTPA id 4F1A2\r\n\tfor <bob@example.org>; Thu, 3 Dec 2026 11:00:00 +0000 (UTC)";
    const INBOUND: &str = "from evil.example (evil.example [192.0.2.7])\r\n\tby mail.example.org (Postfix) with ESMTP id 4F1A3\r\n\tfor <bob@example.org>; Thu, 3 Dec 2026 11:00:00 +0000 (UTC)";

    fn run(headers: &[&str], from: &str, env: &str) -> Verdict {
        let h: Vec<&[u8]> = headers.iter().map(|s| s.as_bytes()).collect();
        check(SenderTrust::Received, &h, Some(from.as_bytes()), Some(env.as_bytes()))
    }

    #[test]
    fn authenticated_submission_is_trusted() {
        let v = run(&[LMTP, SUBMISSION], "Alice@Example.org", "alice@example.org");
        assert_eq!(v, Verdict::Trusted("alice@example.org".into()));
        // dovecot-lda: no LMTP header on top
        assert_eq!(run(&[SUBMISSION], "alice@example.org", "<alice@example.org>").sender(), Some("alice@example.org"));
        // ESMTPSA (TLS) too
        let tls = SUBMISSION.replace("ESMTPA", "ESMTPSA");
        assert!(run(&[LMTP, &tls], "alice@example.org", "alice@example.org").sender().is_some());
    }

    #[test]
    fn outside_mail_forging_everything_is_not_trusted() {
        // The forged note sits below the operator's inbound header.
        let v = run(&[LMTP, INBOUND, SUBMISSION], "alice@example.org", "alice@example.org");
        assert_eq!(v, Verdict::NotAuthenticated);
        // A forged LMTP header above the forgery does not help: the inbound
        // hop is still the first non-LMTP header.
        let v = run(&[LMTP, INBOUND, LMTP, SUBMISSION], "alice@example.org", "alice@example.org");
        assert_eq!(v, Verdict::NotAuthenticated);
        // A note in the recipient (quoted local part) of an inbound hop.
        let sneaky = "from evil (evil [192.0.2.7]) by mail.example.org (Postfix) with ESMTPA id X for <\"(Authenticated sender: alice@example.org)\"@example.org>; date";
        assert_eq!(run(&[LMTP, sneaky], "alice@example.org", "alice@example.org"), Verdict::NotAuthenticated);
    }

    #[test]
    fn a_user_cannot_claim_another_sender() {
        // mallory authenticated, From and envelope say alice
        let mallory = SUBMISSION.replace("Authenticated sender: alice@", "Authenticated sender: mallory@");
        assert_eq!(run(&[LMTP, &mallory], "alice@example.org", "alice@example.org"), Verdict::Mismatch);
        assert_eq!(run(&[LMTP, SUBMISSION], "alice@example.org", "bounce@example.org"), Verdict::Mismatch);
        assert_eq!(run(&[LMTP, SUBMISSION], "carol@example.org", "alice@example.org"), Verdict::Mismatch);
    }

    #[test]
    fn unauthenticated_protocol_or_missing_headers_are_not_trusted() {
        let plain = SUBMISSION.replace("ESMTPA", "ESMTP");
        assert_eq!(run(&[LMTP, &plain], "alice@example.org", "alice@example.org"), Verdict::NotAuthenticated);
        assert_eq!(run(&[LMTP], "alice@example.org", "alice@example.org"), Verdict::NoReceived);
        assert_eq!(run(&[], "alice@example.org", "alice@example.org"), Verdict::NoReceived);
        let h: Vec<&[u8]> = vec![SUBMISSION.as_bytes()];
        assert_eq!(check(SenderTrust::None, &h, Some(b"alice@example.org"), Some(b"alice@example.org")), Verdict::TrustOff);
        assert_eq!(check(SenderTrust::Received, &h, None, Some(b"alice@example.org")), Verdict::Mismatch);
    }

    proptest! {
        #[test]
        fn never_panics(headers in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
                        from in proptest::collection::vec(any::<u8>(), 0..50)) {
            let h: Vec<&[u8]> = headers.iter().map(|v| v.as_slice()).collect();
            let _ = check(SenderTrust::Received, &h, Some(&from), Some(&from));
        }
    }
}

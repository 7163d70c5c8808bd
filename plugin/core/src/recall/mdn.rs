//! Reading an unencrypted MDN (RFC 8098): which message it reports on and
//! whether it says the message was displayed.
//!
//! An MDN is `multipart/report; report-type=disposition-notification` whose
//! `message/disposition-notification` part holds fields such as
//! `Original-Message-ID: <id>` and `Disposition: manual-action/MDN-sent-
//! manually; displayed`. Encrypted MDNs (Delta Chat's, inside
//! `multipart/encrypted`) cannot be read by the server and are ignored.
//!
//! Invariants: pure, never panics, reads at most [`MAX_BODY_BYTES`] of the
//! body; anything unexpected gives `None`.
//!
//! Callers: the plugin's delivery ops (`mdn_seen`).

use super::request::message_id_from_header;

/// Body bytes looked at, at most.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What an MDN reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mdn {
    /// The `Original-Message-ID`, normalized.
    pub original_message_id: String,
    /// The disposition type (`displayed`, `deleted`, ...), lowercased.
    pub disposition: String,
}

impl Mdn {
    /// The MDN says the message was read.
    pub fn displayed(&self) -> bool {
        self.disposition == "displayed"
    }
}

fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

/// A parameter of a Content-Type value (`name=value` or `name="value"`).
fn param(content_type: &str, name: &str) -> Option<String> {
    for part in content_type.split(';').skip(1) {
        let (k, v) = part.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            return Some(v.to_string());
        }
    }
    None
}

/// Header fields of a block, unfolded: (lowercased name, value).
fn fields(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

fn split_head_body(part: &str) -> (&str, &str) {
    for sep in ["\r\n\r\n", "\n\n"] {
        if let Some(at) = part.find(sep) {
            return (&part[..at], &part[at + sep.len()..]);
        }
    }
    (part, "")
}

/// Parses an MDN from its top-level Content-Type value and body.
pub fn parse(content_type: &[u8], body: &[u8]) -> Option<Mdn> {
    let ct = String::from_utf8_lossy(content_type).to_string();
    let media = ct.split(';').next()?.trim().to_ascii_lowercase();
    if media != "multipart/report" || !param(&ct, "report-type")?.eq_ignore_ascii_case("disposition-notification") {
        return None;
    }
    let boundary = param(&ct, "boundary").filter(|b| !b.is_empty() && b.len() <= 200)?;
    let body = String::from_utf8_lossy(&body[..body.len().min(MAX_BODY_BYTES)]).to_string();
    let delimiter = format!("--{boundary}");
    for part in body.split(&delimiter).skip(1) {
        let (head, content) = split_head_body(part.trim_start_matches(['\r', '\n']));
        let is_report = fields(head).iter().any(|(k, v)| {
            k == "content-type" && v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("message/disposition-notification"))
        });
        if !is_report {
            continue;
        }
        let report = fields(content);
        let original = report.iter().find(|(k, _)| k == "original-message-id")?;
        let disposition = report.iter().find(|(k, _)| k == "disposition")?;
        // "action-mode/sending-mode; type/modifiers"
        let kind = disposition.1.split(';').nth(1)?.split('/').next()?.trim();
        return Some(Mdn {
            original_message_id: message_id_from_header(original.1.as_bytes())?,
            disposition: lower(kind.as_bytes()),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CT: &str = "multipart/report; report-type=disposition-notification;\r\n\tboundary=\"b1\"";
    const BODY: &str = "--b1\r\nContent-Type: text/plain\r\n\r\nRead.\r\n--b1\r\nContent-Type: message/disposition-notification\r\n\r\nReporting-UA: x; y\r\nOriginal-Recipient: rfc822;bob@remote.example\r\nFinal-Recipient: rfc822;bob@remote.example\r\nOriginal-Message-ID:\r\n <m1@example.org>\r\nDisposition: manual-action/MDN-sent-manually; displayed\r\n\r\n--b1--\r\n";

    #[test]
    fn reads_a_displayed_mdn() {
        let m = parse(CT.as_bytes(), BODY.as_bytes()).unwrap();
        assert_eq!(m.original_message_id, "<m1@example.org>");
        assert!(m.displayed());
    }

    #[test]
    fn other_dispositions_and_other_messages_are_not_reads() {
        let deleted = BODY.replace("; displayed", "; deleted");
        assert!(!parse(CT.as_bytes(), deleted.as_bytes()).unwrap().displayed());
        assert_eq!(parse(b"multipart/mixed; boundary=b1", BODY.as_bytes()), None);
        assert_eq!(parse(b"multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b1", BODY.as_bytes()), None);
        let no_report = BODY.replace("message/disposition-notification", "text/plain");
        assert_eq!(parse(CT.as_bytes(), no_report.as_bytes()), None);
    }

    proptest! {
        #[test]
        fn never_panics(ct in proptest::collection::vec(any::<u8>(), 0..120), body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&ct, &body);
            let _ = parse(CT.as_bytes(), &body);
        }
    }
}

//! Delta Chat device tokens (DESIGN §4): `SETMETADATA "INBOX"
//! (/private/devicetoken "<token>")`, re-sent by the client on every
//! connection. Dovecot's plain attribute store would keep only the last
//! one; a user with several devices needs all of them, so each token is
//! kept under its own key, and the same token sent again lands on the same
//! key (deduplicated).
//!
//! What this module owns: token validation, the per-token key name (a
//! hash, so the key leaks nothing and has a fixed syntax), the stored form.

use serde::{Deserialize, Serialize};

use crate::wire::PUSH_TOKEN_MAX_BYTES;

/// Most tokens kept per user; the proxy's 410 answers remove dead ones.
pub const MAX_TOKENS_PER_USER: u32 = 32;

/// What is stored per token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The opaque token.
    pub token: String,
    /// Unix seconds it was last set.
    pub seen_unix: i64,
}

/// The key a token is kept under: 16 hex digits of its FNV-1a 64 hash.
/// Collisions only merge two tokens' slots (the newer wins), at odds of
/// 2^-64 per pair.
pub fn token_key(token: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Validates a token set by a client and returns its key and stored JSON.
/// `others` is how many other tokens the user has.
pub fn accept_token(token: &[u8], others: u32, now_unix: i64) -> Result<(String, String), String> {
    let text = std::str::from_utf8(token).map_err(|_| "device token must be UTF-8 text".to_string())?;
    if text.is_empty() || text.len() > PUSH_TOKEN_MAX_BYTES {
        return Err(format!("device token must be 1 to {PUSH_TOKEN_MAX_BYTES} octets"));
    }
    if text.chars().any(char::is_control) {
        return Err("device token must not contain control characters".to_string());
    }
    if others >= MAX_TOKENS_PER_USER {
        return Err(format!("too many device tokens (at most {MAX_TOKENS_PER_USER})"));
    }
    let stored = StoredToken { token: text.to_string(), seen_unix: now_unix };
    Ok((token_key(text), serde_json::to_string(&stored).unwrap_or_default()))
}

/// Reads a stored value.
pub fn parse_stored(stored: &[u8]) -> Option<StoredToken> {
    serde_json::from_slice(stored).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_token_same_key_different_tokens_differ() {
        assert_eq!(token_key("abc"), token_key("abc"));
        assert_ne!(token_key("abc"), token_key("abd"));
        assert_eq!(token_key("").len(), 16);
    }

    #[test]
    fn accept_and_read_back() {
        let (key, stored) = accept_token(b"openpgp:xyz", 0, 42).unwrap();
        assert_eq!(key, token_key("openpgp:xyz"));
        let t = parse_stored(stored.as_bytes()).unwrap();
        assert_eq!((t.token.as_str(), t.seen_unix), ("openpgp:xyz", 42));
    }

    #[test]
    fn refusals() {
        assert!(accept_token(b"", 0, 0).is_err());
        assert!(accept_token(&[0xff, 0xfe], 0, 0).unwrap_err().contains("UTF-8"));
        assert!(accept_token(b"a\nb", 0, 0).unwrap_err().contains("control"));
        assert!(accept_token(&vec![b'a'; 1025], 0, 0).is_err());
        assert!(accept_token(b"ok", MAX_TOKENS_PER_USER, 0).unwrap_err().contains("too many"));
        assert!(parse_stored(b"junk").is_none());
    }
}

//! Standard Webhooks v1 signatures (DESIGN §5).
//!
//! What this module owns: the `webhook-signature` header value for a body:
//! `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`, one entry per
//! configured secret, space-separated, so receivers can rotate keys (old and
//! new secret both valid during the overlap).
//!
//! Invariant: pure and deterministic; keys arrive already decoded from
//! `whsec_<base64>` by `config.rs`.
//!
//! Callers: `delivery::driver` for every attempt (the timestamp is the
//! attempt's, the id the event's, the same on every retry).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// One `v1,<base64>` signature.
pub fn sign_one(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag))
}

#[cold]
fn unreachable_hmac() -> ! {
    // Hmac<Sha256>::new_from_slice is infallible (any key length is valid).
    unreachable!("HMAC-SHA256 rejected a key")
}

/// The full `webhook-signature` header value for all `keys`.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| sign_one(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap()
    }

    #[test]
    fn standard_webhooks_test_vector() {
        let k = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            sign_one(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn several_secrets_give_space_separated_signatures() {
        let a = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let b = vec![7u8; 32];
        let header = signature_header(&[a.clone(), b.clone()], "id", 5, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, vec![sign_one(&a, "id", 5, b"{}"), sign_one(&b, "id", 5, b"{}")]);
    }
}

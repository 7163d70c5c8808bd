//! Web Push message encryption: RFC 8291 on top of RFC 8188's `aes128gcm`
//! content coding, for one record.
//!
//! What this module owns: turning a plaintext and a subscription's keys
//! (`p256dh`, `auth`) into the body of a push request:
//! ```text
//! salt (16) | rs (4, big-endian) | idlen (1) = 65 | keyid (65) = our ephemeral public key
//! | AES-128-GCM(CEK, NONCE, plaintext | 0x02)   (ciphertext + 16-byte tag)
//! ```
//! with, per RFC 8291 §3.3/§3.4:
//! `ecdh = ECDH(ephemeral secret, ua_public)`,
//! `IKM = HKDF(salt = auth, ikm = ecdh, info = "WebPush: info" 0x00 ua_public as_public, 32)`,
//! `CEK = HKDF(salt, IKM, "Content-Encoding: aes128gcm" 0x00, 16)`,
//! `NONCE = HKDF(salt, IKM, "Content-Encoding: nonce" 0x00, 12)`.
//!
//! Invariants:
//! - one record only (a push message is at most 4096 bytes, DESIGN §3), so
//!   the padding delimiter is always 0x02 ("last record") and no zero
//!   padding is added; `rs` is [`RECORD_SIZE`] (4096, as in RFC 8291's
//!   example), which is larger than any record we produce;
//! - a fresh ephemeral key pair and salt per message ([`encrypt`]); the
//!   deterministic core ([`encrypt_with`]) exists so RFC 8291 Appendix A
//!   can be checked byte for byte;
//! - the per-message key pair and ECDH run on `ring` (already linked for
//!   TLS), the fixed-key path on `p256`: ring cannot take a given private
//!   key, p256 can, and both feed the same key derivation and sealing
//!   ([`seal`]). Why ring for the hot path: RFC 8291 requires a fresh
//!   ephemeral key per message, so every push pays one key generation and
//!   one ECDH, and ring's P-256 (assembly) does them several times faster
//!   than p256's portable arithmetic (measured in docs/performance.md);
//! - [`encrypted_len`] is the exact body length for a plaintext length, so
//!   the payload builder can stay within the 4096-byte budget before
//!   encrypting.
//!
//! Callers: `push::webpush` (every Web Push request).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// The `rs` field of the header.
pub const RECORD_SIZE: u32 = 4096;
/// Header bytes: salt 16 + rs 4 + idlen 1 + keyid 65.
pub const HEADER_LEN: usize = 86;
/// AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// The padding delimiter of the last (only) record.
const LAST_RECORD: u8 = 0x02;

/// Why a message could not be encrypted for a subscription.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EceError {
    /// `p256dh` is not an uncompressed P-256 point.
    #[error("p256dh is not a valid P-256 public key")]
    BadPublicKey,
    /// `auth` is not 16 bytes.
    #[error("auth secret must be 16 bytes, got {0}")]
    BadAuth(usize),
    /// The plaintext does not fit one record.
    #[error("plaintext of {0} bytes does not fit one record")]
    TooLong(usize),
    /// The AEAD refused (cannot happen with valid key and nonce sizes).
    #[error("AES-GCM failed")]
    Aead,
    /// The system random generator or the key agreement failed.
    #[error("ephemeral key agreement failed")]
    KeyAgreement,
}

impl EceError {
    /// Bounded label.
    pub fn error_type(&self) -> &'static str {
        match self {
            EceError::BadPublicKey => "bad_p256dh",
            EceError::BadAuth(_) => "bad_auth",
            EceError::TooLong(_) => "too_long",
            EceError::Aead => "aead",
            EceError::KeyAgreement => "key_agreement",
        }
    }

    /// A subscription's keys do not change on retry.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// The request body length for a plaintext of `plaintext_len` bytes.
pub fn encrypted_len(plaintext_len: usize) -> usize {
    HEADER_LEN + plaintext_len + 1 + TAG_LEN
}

/// The subscription's keys, decoded and checked.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// `p256dh` as sent: an uncompressed point, checked to be on the curve.
    pub p256dh: [u8; 65],
    /// `auth`.
    pub auth: [u8; 16],
}

impl Subscriber {
    /// From the raw bytes of `p256dh` (65-byte uncompressed point) and
    /// `auth` (16 bytes).
    pub fn from_bytes(p256dh: &[u8], auth: &[u8]) -> Result<Subscriber, EceError> {
        // RFC 8291 §3.1: the user agent's key is an uncompressed point.
        if p256dh.len() != 65 || p256dh[0] != 0x04 {
            return Err(EceError::BadPublicKey);
        }
        PublicKey::from_sec1_bytes(p256dh).map_err(|_| EceError::BadPublicKey)?;
        let p256dh: [u8; 65] = p256dh.try_into().map_err(|_| EceError::BadPublicKey)?;
        let auth: [u8; 16] = auth.try_into().map_err(|_| EceError::BadAuth(auth.len()))?;
        Ok(Subscriber { p256dh, auth })
    }
}

/// Encrypts `plaintext` for `to` with a fresh ephemeral key and salt.
pub fn encrypt(plaintext: &[u8], to: &Subscriber) -> Result<Vec<u8>, EceError> {
    use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
    use ring::rand::{SecureRandom, SystemRandom};

    check_len(plaintext)?;
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| EceError::KeyAgreement)?;
    let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| EceError::KeyAgreement)?;
    let as_public = ephemeral.compute_public_key().map_err(|_| EceError::KeyAgreement)?;
    let peer = UnparsedPublicKey::new(&ECDH_P256, &to.p256dh[..]);
    agree_ephemeral(ephemeral, &peer, |shared| seal(plaintext, to, as_public.as_ref(), shared, &salt))
        .map_err(|_| EceError::KeyAgreement)?
}

fn check_len(plaintext: &[u8]) -> Result<(), EceError> {
    // rs counts the padded plaintext plus the tag; one record must fit it.
    if plaintext.len() + 1 + TAG_LEN > RECORD_SIZE as usize {
        return Err(EceError::TooLong(plaintext.len()));
    }
    Ok(())
}

/// [`encrypt`] with the ephemeral key and salt given (tests, RFC vectors).
pub fn encrypt_with(
    plaintext: &[u8],
    to: &Subscriber,
    ephemeral: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, EceError> {
    check_len(plaintext)?;
    let ua_public = PublicKey::from_sec1_bytes(&to.p256dh).map_err(|_| EceError::BadPublicKey)?;
    let as_public = ephemeral.public_key().to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), ua_public.as_affine());
    seal(plaintext, to, as_public.as_bytes(), shared.raw_secret_bytes(), salt)
}

/// Key derivation and sealing (RFC 8291 §3.3/§3.4) from our ephemeral
/// public key (`as_public`, uncompressed) and the ECDH secret; the
/// callers checked the plaintext's length.
fn seal(plaintext: &[u8], to: &Subscriber, as_public: &[u8], shared: &[u8], salt: &[u8; 16]) -> Result<Vec<u8>, EceError> {
    let ua_public = &to.p256dh;
    let mut key_info = Vec::with_capacity(14 + 65 + 65);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&to.auth), shared)
        .expand(&key_info, &mut ikm)
        .map_err(|_| EceError::Aead)?;

    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|_| EceError::Aead)?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| EceError::Aead)?;

    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(LAST_RECORD);
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| EceError::Aead)?;
    // The sequence number of the only record is 0, so the nonce is used as is.
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), record.as_slice())
        .map_err(|_| EceError::Aead)?;

    let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
    out.extend_from_slice(salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(65);
    out.extend_from_slice(as_public);
    out.extend_from_slice(&sealed);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::OsRng;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn b64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    /// RFC 8291 Appendix A: every input fixed, so the output must equal the
    /// RFC's message byte for byte (header with rs = 4096 included).
    #[test]
    fn rfc8291_appendix_a_encrypts_to_the_published_bytes() {
        let plaintext = b"When I grow up, I want to be a watermelon";
        let ua_public = b64("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
        let auth = b64("BTBZMqHH6r4Tts7J_aSIgg");
        let as_private = SecretKey::from_slice(&b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")).unwrap();
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let want = b64(
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
        );
        // The RFC's application server public key, derived from its private key.
        assert_eq!(
            as_private.public_key().to_encoded_point(false).as_bytes(),
            b64("BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8").as_slice()
        );
        let to = Subscriber::from_bytes(&ua_public, &auth).unwrap();
        let got = encrypt_with(plaintext, &to, &as_private, &salt).unwrap();
        assert_eq!(got, want);
        assert_eq!(got.len(), encrypted_len(plaintext.len()));
    }

    #[test]
    fn fresh_encryptions_differ_and_have_the_predicted_length() {
        let ua = SecretKey::random(&mut OsRng);
        let to = Subscriber::from_bytes(ua.public_key().to_encoded_point(false).as_bytes(), &[7; 16]).unwrap();
        let a = encrypt(b"hello", &to).unwrap();
        let b = encrypt(b"hello", &to).unwrap();
        assert_ne!(a, b, "salt and ephemeral key are fresh each time");
        assert_eq!(a.len(), encrypted_len(5));
        assert_eq!(&a[16..21], &[0, 0, 0x10, 0, 65]);
    }

    /// The user agent's side, written from the RFC with p256 only (not
    /// ring): what [`encrypt`] produces must open with the subscription's
    /// private key.
    fn decrypt(body: &[u8], ua: &SecretKey, auth: &[u8; 16]) -> Vec<u8> {
        let salt = &body[..16];
        assert_eq!(&body[16..21], &[0, 0, 0x10, 0, 65]);
        let as_public = PublicKey::from_sec1_bytes(&body[21..86]).unwrap();
        let shared = p256::ecdh::diffie_hellman(ua.to_nonzero_scalar(), as_public.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(ua.public_key().to_encoded_point(false).as_bytes());
        info.extend_from_slice(&body[21..86]);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes()).expand(&info, &mut ikm).unwrap();
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).unwrap();
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce).unwrap();
        let mut record = Aes128Gcm::new_from_slice(&cek)
            .unwrap()
            .decrypt(Nonce::from_slice(&nonce), &body[86..])
            .unwrap();
        assert_eq!(record.pop(), Some(LAST_RECORD));
        record
    }

    #[test]
    fn a_fresh_encryption_opens_with_the_subscribers_key() {
        let ua = SecretKey::random(&mut OsRng);
        let auth = [9u8; 16];
        let to = Subscriber::from_bytes(ua.public_key().to_encoded_point(false).as_bytes(), &auth).unwrap();
        for text in [&b""[..], b"hello", &[b'x'; 4079][..]] {
            let body = encrypt(text, &to).unwrap();
            assert_eq!(decrypt(&body, &ua, &auth), text);
        }
        let other = SecretKey::random(&mut OsRng);
        let body = encrypt(b"hello", &to).unwrap();
        let wrong = std::panic::catch_unwind(|| decrypt(&body, &other, &auth));
        assert!(wrong.is_err(), "another key must not open it");
    }

    #[test]
    fn bad_keys_and_oversized_plaintext_are_refused() {
        assert_eq!(Subscriber::from_bytes(&[4; 64], &[0; 16]).unwrap_err(), EceError::BadPublicKey);
        let mut not_on_curve = vec![4u8; 65];
        not_on_curve[1] = 1;
        assert_eq!(Subscriber::from_bytes(&not_on_curve, &[0; 16]).unwrap_err(), EceError::BadPublicKey);
        let ua = SecretKey::random(&mut OsRng);
        let point = ua.public_key().to_encoded_point(false);
        assert_eq!(Subscriber::from_bytes(point.as_bytes(), &[0; 15]).unwrap_err(), EceError::BadAuth(15));
        let to = Subscriber::from_bytes(point.as_bytes(), &[0; 16]).unwrap();
        assert!(encrypt(&vec![b'x'; 4079], &to).is_ok());
        assert_eq!(encrypt(&vec![b'x'; 4080], &to).unwrap_err(), EceError::TooLong(4080));
    }
}

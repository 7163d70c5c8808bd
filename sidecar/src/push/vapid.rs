//! The VAPID key pair (RFC 8292): its files, and the `Authorization`
//! header of every Web Push request.
//!
//! What this module owns:
//! - [`VapidKeys::load_or_create`]: on start, the P-256 key pair is read
//!   from `webpush.vapid_private_key` (PKCS#8 or SEC1 PEM) or, when neither
//!   file exists, made and written: the private key with mode 0600, the
//!   public key as a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`)
//!   with mode 0644 so Dovecot's mail processes can read it (the plugin
//!   serves it to IMAP clients as `/private/vendor/vendor.dovecot/webpush/vapid`).
//!   Both files are written atomically (temp file, fsync, rename, fsync of
//!   the directory).
//! - [`VapidKeys::authorization`]: `vapid t=<JWT>, k=<base64url public key>`
//!   with an ES256 JWT whose claims are `aud` (the origin of the push
//!   endpoint), `exp` (now + [`JWT_LIFETIME`]) and `sub` (the operator's
//!   contact, `webpush.vapid_subject`). A token is reused for the same
//!   origin and subject for up to [`JWT_REUSE`] (then signed anew): an
//!   ES256 signature per push was a measurable share of the sidecar's CPU
//!   per push (issue 18), and every push to one push service carries the
//!   same claims but `exp`. At most [`JWT_CACHE_MAX`] origins are kept
//!   (endpoints come from users); past that the cache starts over.
//!
//! Invariants:
//! - a key pair is never regenerated while its files exist: push services
//!   bind every subscription to the public key, so a new key would silently
//!   break every subscription. A private key file that does not parse, a
//!   public key file that does not match the private key, or a public key
//!   without its private key is a startup error naming the file and what
//!   to do. A missing public key next to a present private key is derived
//!   and written (nothing changes for clients).
//! - the JWT never claims more than 24 hours (RFC 8292 §2: `exp` MUST NOT
//!   be more than 24 hours after the request): a reused token's `exp` is
//!   between `JWT_LIFETIME - JWT_REUSE` and `JWT_LIFETIME` ahead.
//!
//! Callers: `app.rs` (start), `main.rs` (`check-config` inspects without
//! writing), `push::webpush` (every request).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes_gcm::aead::OsRng;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use p256::{PublicKey, SecretKey};
use serde::Serialize;

/// How far ahead `exp` points. 12 h keeps a safe margin below RFC 8292's
/// 24 h maximum even with a skewed clock (push services reject tokens
/// beyond it), and is independent of the message `TTL`.
pub const JWT_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// How long one signed token is reused for the same origin and subject.
pub const JWT_REUSE: Duration = Duration::from_secs(3600);

/// Most (origin, subject) pairs whose token is kept.
pub const JWT_CACHE_MAX: usize = 256;

/// Signed tokens by (origin, subject): when each was signed, and the token.
type JwtCache = HashMap<(String, String), (u64, Arc<str>)>;

/// Why the key pair could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    /// Reading, creating or renaming a key file failed.
    #[error("VAPID key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key file exists but is not a P-256 key in PEM form.
    #[error("VAPID key file {path} is not a valid P-256 {what} in PEM form: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// "private key" or "public key".
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// The two files exist but do not belong together.
    #[error("VAPID public key {public} does not match the private key {private}; restore the matching file (replacing the key pair invalidates every Web Push subscription)")]
    Mismatch {
        /// The private key file.
        private: PathBuf,
        /// The public key file.
        public: PathBuf,
    },
    /// Only the public key exists.
    #[error("VAPID public key {public} exists but the private key {private} does not; restore the private key, or delete the public key to make a new pair (which invalidates every Web Push subscription)")]
    Orphan {
        /// The private key file.
        private: PathBuf,
        /// The public key file.
        public: PathBuf,
    },
}

impl VapidError {
    /// Bounded label.
    pub fn error_type(&self) -> &'static str {
        match self {
            VapidError::Io { .. } => "vapid_io",
            VapidError::Corrupt { .. } => "vapid_corrupt",
            VapidError::Mismatch { .. } => "vapid_mismatch",
            VapidError::Orphan { .. } => "vapid_orphan",
        }
    }

    /// Only I/O trouble may go away by itself.
    pub fn is_retriable(&self) -> bool {
        matches!(self, VapidError::Io { .. })
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> VapidError + '_ {
    move |source| VapidError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`VapidKeys::load_or_create`] did, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Both files were there.
    Loaded,
    /// The private key was there; the public key file was written from it.
    PublicWritten,
    /// A new pair was made.
    Created,
}

/// The server's VAPID key pair.
#[derive(Clone)]
pub struct VapidKeys {
    signing: SigningKey,
    /// The uncompressed public point, base64url: the header's `k`.
    public_b64: String,
    /// Tokens to reuse (module docs); shared by clones.
    tokens: Arc<Mutex<JwtCache>>,
}

impl std::fmt::Debug for VapidKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VapidKeys(k={})", self.public_b64)
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: u64,
    sub: &'a str,
}

impl VapidKeys {
    /// A key pair held in memory only (tests).
    pub fn from_secret(secret: &SecretKey) -> VapidKeys {
        let public = secret.public_key().to_encoded_point(false);
        VapidKeys {
            signing: SigningKey::from(secret),
            public_b64: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            tokens: Arc::default(),
        }
    }

    /// The public key as the header's `k` (base64url, uncompressed point).
    pub fn public_b64(&self) -> &str {
        &self.public_b64
    }

    /// Reads the pair, or makes and writes it when neither file exists (see
    /// the module docs for every case).
    pub fn load_or_create(private: &Path, public: &Path) -> Result<(VapidKeys, KeyOrigin), VapidError> {
        match Self::inspect(private, public)? {
            Some((keys, true)) => Ok((keys, KeyOrigin::Loaded)),
            Some((keys, false)) => {
                let secret = SecretKey::from(keys.signing.as_nonzero_scalar());
                write_public(public, &secret.public_key())?;
                Ok((keys, KeyOrigin::PublicWritten))
            }
            None => {
                let secret = SecretKey::random(&mut OsRng);
                let pem = secret.to_pkcs8_pem(LineEnding::LF).map_err(|e| VapidError::Corrupt {
                    path: private.to_path_buf(),
                    what: "private key",
                    detail: e.to_string(),
                })?;
                // Private first: a crash between the two writes leaves a
                // private key alone, which the next start completes.
                write_atomically(private, pem.as_bytes(), 0o600)?;
                write_public(public, &secret.public_key())?;
                Ok((VapidKeys::from_secret(&secret), KeyOrigin::Created))
            }
        }
    }

    /// Reads what exists without writing anything: `None` when neither file
    /// exists (a pair would be made), else the keys and whether the public
    /// key file is present (and matches).
    pub fn inspect(private: &Path, public: &Path) -> Result<Option<(VapidKeys, bool)>, VapidError> {
        let private_text = read_optional(private)?;
        let public_text = read_optional(public)?;
        let Some(private_text) = private_text else {
            return match public_text {
                Some(_) => Err(VapidError::Orphan {
                    private: private.to_path_buf(),
                    public: public.to_path_buf(),
                }),
                None => Ok(None),
            };
        };
        let secret = parse_private(&private_text).map_err(|detail| VapidError::Corrupt {
            path: private.to_path_buf(),
            what: "private key",
            detail,
        })?;
        let keys = VapidKeys::from_secret(&secret);
        let Some(public_text) = public_text else {
            return Ok(Some((keys, false)));
        };
        let on_disk = PublicKey::from_public_key_pem(public_text.trim()).map_err(|e| VapidError::Corrupt {
            path: public.to_path_buf(),
            what: "public key",
            detail: e.to_string(),
        })?;
        if on_disk != secret.public_key() {
            return Err(VapidError::Mismatch {
                private: private.to_path_buf(),
                public: public.to_path_buf(),
            });
        }
        Ok(Some((keys, true)))
    }

    /// The signed JWT for a request to `endpoint` at unix time `now_secs`.
    pub fn jwt(&self, endpoint: &reqwest::Url, subject: &str, now_secs: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let origin = audience(endpoint);
        let claims = Claims {
            aud: &origin,
            exp: now_secs + JWT_LIFETIME.as_secs(),
            sub: subject,
        };
        // A struct of two strings and a number always serialises.
        let claims = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
        // ES256 (RFC 7518 §3.4): the JWS signature is r || s, 64 bytes.
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The `Authorization` header value (RFC 8292 §3), with a token signed
    /// at most [`JWT_REUSE`] ago for the same origin and subject.
    pub fn authorization(&self, endpoint: &reqwest::Url, subject: &str, now_secs: u64) -> String {
        let key = (audience(endpoint), subject.to_string());
        let mut tokens = match self.tokens.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let fresh = |signed: u64| signed <= now_secs && now_secs - signed < JWT_REUSE.as_secs();
        let token = match tokens.get(&key) {
            Some((signed, token)) if fresh(*signed) => token.clone(),
            _ => {
                let token: Arc<str> = self.jwt(endpoint, subject, now_secs).into();
                if tokens.len() >= JWT_CACHE_MAX && !tokens.contains_key(&key) {
                    tokens.clear();
                }
                tokens.insert(key, (now_secs, token.clone()));
                token
            }
        };
        drop(tokens);
        format!("vapid t={token}, k={}", self.public_b64)
    }
}

/// The JWT audience: the origin of the push resource (RFC 8292 §2), i.e.
/// scheme, host and a non-default port, no path.
pub fn audience(endpoint: &reqwest::Url) -> String {
    endpoint.origin().ascii_serialization()
}

fn parse_private(text: &str) -> Result<SecretKey, String> {
    let text = text.trim();
    // PKCS#8 is what we write; SEC1 ("EC PRIVATE KEY", what `openssl
    // ecparam -genkey` writes) is accepted for operator-provided keys.
    match SecretKey::from_pkcs8_pem(text) {
        Ok(k) => Ok(k),
        Err(pkcs8) => SecretKey::from_sec1_pem(text).map_err(|_| pkcs8.to_string()),
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, VapidError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| VapidError::Corrupt {
            path: path.to_path_buf(),
            what: "key",
            detail: "not UTF-8 text".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn write_public(path: &Path, key: &PublicKey) -> Result<(), VapidError> {
    let pem = key.to_public_key_pem(LineEnding::LF).map_err(|e| VapidError::Corrupt {
        path: path.to_path_buf(),
        what: "public key",
        detail: e.to_string(),
    })?;
    write_atomically(path, pem.as_bytes(), 0o644)
}

/// Writes `bytes` to `path` with `mode` so that readers see the old file or
/// the whole new one: a temp file in the same directory (created with the
/// mode, never wider), fsync, rename, fsync of the directory. Missing
/// directories are created with mode 0755 (the public key's directory must
/// be searchable by Dovecot's mail processes).
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), VapidError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io(dir))?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; the public key must be 0644.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::VerifyingKey;
    use std::os::unix::fs::MetadataExt;

    fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("priv/vapid-private.pem"), dir.join("pub/webpush/vapid-public.pem"))
    }

    #[test]
    fn first_start_creates_both_files_with_their_modes_and_later_starts_reuse_them() {
        let d = tempfile::tempdir().unwrap();
        let (private, public) = paths(d.path());
        let (a, origin) = VapidKeys::load_or_create(&private, &public).unwrap();
        assert_eq!(origin, KeyOrigin::Created);
        assert_eq!(std::fs::metadata(&private).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&public).unwrap().mode() & 0o777, 0o644);
        assert_eq!(std::fs::metadata(public.parent().unwrap()).unwrap().mode() & 0o777, 0o755);
        let text = std::fs::read_to_string(&public).unwrap();
        assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{text}");
        let (b, origin) = VapidKeys::load_or_create(&private, &public).unwrap();
        assert_eq!(origin, KeyOrigin::Loaded);
        assert_eq!(a.public_b64(), b.public_b64(), "never regenerated");
        // A lost public key is derived from the private key again.
        std::fs::remove_file(&public).unwrap();
        let (c, origin) = VapidKeys::load_or_create(&private, &public).unwrap();
        assert_eq!(origin, KeyOrigin::PublicWritten);
        assert_eq!(c.public_b64(), a.public_b64());
        assert_eq!(std::fs::read_to_string(&public).unwrap(), text);
        let leftovers: Vec<_> = std::fs::read_dir(public.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn corrupt_mismatched_and_orphaned_files_are_startup_errors() {
        let d = tempfile::tempdir().unwrap();
        let (private, public) = paths(d.path());
        VapidKeys::load_or_create(&private, &public).unwrap();
        let good_public = std::fs::read(&public).unwrap();

        std::fs::write(&public, "-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n").unwrap();
        let e = VapidKeys::load_or_create(&private, &public).unwrap_err();
        assert_eq!(e.error_type(), "vapid_corrupt", "{e}");

        let other = SecretKey::random(&mut OsRng).public_key().to_public_key_pem(LineEnding::LF).unwrap();
        std::fs::write(&public, other).unwrap();
        let e = VapidKeys::load_or_create(&private, &public).unwrap_err();
        assert_eq!(e.error_type(), "vapid_mismatch", "{e}");

        std::fs::write(&public, &good_public).unwrap();
        std::fs::write(&private, "garbage").unwrap();
        let e = VapidKeys::load_or_create(&private, &public).unwrap_err();
        assert_eq!(e.error_type(), "vapid_corrupt");
        assert!(e.to_string().contains("vapid-private.pem"), "{e}");
        assert_eq!(std::fs::read(&public).unwrap(), good_public, "nothing overwritten");

        std::fs::remove_file(&private).unwrap();
        let e = VapidKeys::load_or_create(&private, &public).unwrap_err();
        assert_eq!(e.error_type(), "vapid_orphan");
        assert!(!private.exists(), "no new pair behind the operator's back");
    }

    #[test]
    fn sec1_private_keys_are_accepted() {
        let d = tempfile::tempdir().unwrap();
        let (private, public) = paths(d.path());
        let secret = SecretKey::random(&mut OsRng);
        std::fs::create_dir_all(private.parent().unwrap()).unwrap();
        std::fs::write(&private, secret.to_sec1_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
        let (keys, origin) = VapidKeys::load_or_create(&private, &public).unwrap();
        assert_eq!(origin, KeyOrigin::PublicWritten);
        assert_eq!(keys.public_b64(), VapidKeys::from_secret(&secret).public_b64());
    }

    #[test]
    fn a_token_is_reused_per_origin_and_subject_for_at_most_jwt_reuse() {
        let keys = VapidKeys::from_secret(&SecretKey::random(&mut OsRng));
        let a: reqwest::Url = "https://push.example.net/p/one".parse().unwrap();
        let a2: reqwest::Url = "https://push.example.net/p/two".parse().unwrap();
        let b: reqwest::Url = "https://other.example.net/p/one".parse().unwrap();
        let sub = "mailto:postmaster@example.org";
        let t0 = 1_700_000_000;
        let first = keys.authorization(&a, sub, t0);
        assert_eq!(keys.authorization(&a2, sub, t0 + 10), first, "same origin: reused");
        assert_ne!(keys.authorization(&b, sub, t0 + 10), first, "other origin: its own aud");
        assert_ne!(keys.authorization(&a, "mailto:other@example.org", t0 + 10), first);
        let renewed = keys.authorization(&a, sub, t0 + JWT_REUSE.as_secs());
        assert_ne!(renewed, first, "signed anew once JWT_REUSE has passed");
        let exp = |auth: &str| -> u64 {
            let jwt = auth.strip_prefix("vapid t=").unwrap().split(',').next().unwrap();
            let claims: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap();
            claims["exp"].as_u64().unwrap()
        };
        assert_eq!(exp(&renewed), t0 + JWT_REUSE.as_secs() + JWT_LIFETIME.as_secs());
        // A clock that went back never gets a token from the future.
        assert_ne!(keys.authorization(&a, sub, t0 - 5), renewed);
        // The cache stays bounded whatever the number of origins.
        for i in 0..(JWT_CACHE_MAX + 10) {
            let u: reqwest::Url = format!("https://h{i}.example.net/p").parse().unwrap();
            keys.authorization(&u, sub, t0);
        }
        assert!(keys.tokens.lock().unwrap().len() <= JWT_CACHE_MAX);
    }

    #[test]
    fn jwt_has_es256_header_the_claims_and_a_valid_signature() {
        let secret = SecretKey::random(&mut OsRng);
        let keys = VapidKeys::from_secret(&secret);
        let url: reqwest::Url = "https://push.example.net:8443/p/abc?x=1".parse().unwrap();
        let jwt = keys.jwt(&url, "mailto:postmaster@example.org", 1_700_000_000);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"typ": "JWT", "alg": "ES256"}));
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"aud": "https://push.example.net:8443", "exp": 1_700_000_000u64 + 43_200,
                               "sub": "mailto:postmaster@example.org"})
        );
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let verifying = VerifyingKey::from(&secret.public_key());
        verifying
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        let header = keys.authorization(&url, "mailto:a@b", 1);
        assert!(header.starts_with("vapid t=ey"));
        assert!(header.ends_with(&format!(", k={}", keys.public_b64())));
        assert_eq!(URL_SAFE_NO_PAD.decode(keys.public_b64()).unwrap().len(), 65);
    }

    #[test]
    fn audience_is_the_origin() {
        let a = |u: &str| audience(&u.parse().unwrap());
        assert_eq!(a("https://fcm.googleapis.com/fcm/send/xyz"), "https://fcm.googleapis.com");
        assert_eq!(a("https://push.example.net:443/x"), "https://push.example.net");
        assert_eq!(a("http://127.0.0.1:8080/push/1"), "http://127.0.0.1:8080");
    }
}

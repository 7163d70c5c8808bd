//! The plugin settings that say where delivery events go, validated once per
//! user like [`crate::settings`]:
//!
//! - `coi_spool_path`: directory holding the event spool (`events.log`, see
//!   `docs/events.md`). Default `/var/spool/coi`. An absolute path.
//! - `coi_spool_max_size`: the active spool file is never appended beyond
//!   this size (events are then dropped and counted). Dovecot size syntax: a
//!   number with an optional `B`, `k`, `M`, `G` or `T` suffix (powers of
//!   1024, case-insensitive, optional space). Default `256M`; at least 64k.
//! - `coi_sidecar_socket`: the sidecar's datagram socket for the doorbell.
//!   Default `/run/coi-sidecar/events.sock`. An absolute path, at most 107
//!   bytes (`sockaddr_un`).
//!
//! Empty values count as unset, as in [`crate::settings`].
//! Caller: the plugin's `user_new` op.

use std::path::PathBuf;

/// Name of the spool directory setting.
pub const SETTING_SPOOL_PATH: &str = "coi_spool_path";
/// Name of the spool size limit setting.
pub const SETTING_SPOOL_MAX_SIZE: &str = "coi_spool_max_size";
/// Name of the doorbell socket setting.
pub const SETTING_SIDECAR_SOCKET: &str = "coi_sidecar_socket";

/// Spool directory when `coi_spool_path` is unset.
pub const DEFAULT_SPOOL_PATH: &str = "/var/spool/coi";
/// Spool size limit when `coi_spool_max_size` is unset (256 MiB).
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Doorbell socket when `coi_sidecar_socket` is unset.
pub const DEFAULT_SIDECAR_SOCKET: &str = "/run/coi-sidecar/events.sock";
/// Smallest accepted spool limit: a few records must always fit.
pub const MIN_SPOOL_MAX_BYTES: u64 = 64 * 1024;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Where this user's delivery events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    /// Directory of the event spool.
    pub spool_dir: PathBuf,
    /// Size limit of the active spool file, in bytes.
    pub spool_max_bytes: u64,
    /// The sidecar's doorbell socket.
    pub sidecar_socket: PathBuf,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            spool_dir: PathBuf::from(DEFAULT_SPOOL_PATH),
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            sidecar_socket: PathBuf::from(DEFAULT_SIDECAR_SOCKET),
        }
    }
}

/// A rejected event setting; the message names the setting and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventSettingsError {
    /// A path setting that is not an absolute UTF-8 path.
    #[error("{setting}: invalid value {value:?}; allowed: an absolute path")]
    NotAbsolutePath {
        /// The setting's name.
        setting: &'static str,
        /// The offending value (lossy UTF-8, at most 64 characters).
        value: String,
    },
    /// A socket path too long for `sockaddr_un`.
    #[error("{SETTING_SIDECAR_SOCKET}: path is {len} bytes; allowed: at most 107 bytes")]
    SocketPathTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A size that does not parse or is too small.
    #[error(
        "{SETTING_SPOOL_MAX_SIZE}: invalid value {value:?}; allowed: a size such as 256M or 1G, at least 64k"
    )]
    BadSize {
        /// The offending value (lossy UTF-8, at most 64 characters).
        value: String,
    },
}

impl EventSettings {
    /// Validates the raw values of `coi_spool_path`, `coi_spool_max_size` and
    /// `coi_sidecar_socket` (`None` = unset).
    pub fn from_raw(
        spool_path: Option<&[u8]>,
        spool_max_size: Option<&[u8]>,
        sidecar_socket: Option<&[u8]>,
    ) -> Result<EventSettings, EventSettingsError> {
        let defaults = EventSettings::default();
        let spool_dir = match non_empty(spool_path) {
            None => defaults.spool_dir,
            Some(raw) => absolute_path(SETTING_SPOOL_PATH, raw)?,
        };
        let spool_max_bytes = match non_empty(spool_max_size) {
            None => defaults.spool_max_bytes,
            Some(raw) => parse_size(raw)
                .filter(|bytes| *bytes >= MIN_SPOOL_MAX_BYTES)
                .ok_or_else(|| EventSettingsError::BadSize { value: shown(raw) })?,
        };
        let sidecar_socket = match non_empty(sidecar_socket) {
            None => defaults.sidecar_socket,
            Some(raw) => {
                let path = absolute_path(SETTING_SIDECAR_SOCKET, raw)?;
                if raw.len() > MAX_SOCKET_PATH_BYTES {
                    return Err(EventSettingsError::SocketPathTooLong { len: raw.len() });
                }
                path
            }
        };
        Ok(EventSettings { spool_dir, spool_max_bytes, sidecar_socket })
    }
}

fn non_empty(raw: Option<&[u8]>) -> Option<&[u8]> {
    raw.map(|v| v.trim_ascii()).filter(|v| !v.is_empty())
}

fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).chars().take(64).collect()
}

fn absolute_path(setting: &'static str, raw: &[u8]) -> Result<PathBuf, EventSettingsError> {
    match std::str::from_utf8(raw) {
        Ok(text) if text.starts_with('/') && !text.contains('\0') => Ok(PathBuf::from(text)),
        _ => Err(EventSettingsError::NotAbsolutePath { setting, value: shown(raw) }),
    }
}

/// Dovecot size syntax: digits, optional space, optional unit (B, k, M, G, T).
pub fn parse_size(raw: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits_end == 0 {
        return None;
    }
    let number: u64 = text[..digits_end].parse().ok()?;
    let unit = text[digits_end..].trim_start().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Option<&[u8]> {
        Some(s.as_bytes())
    }

    #[test]
    fn defaults_when_unset_or_empty() {
        assert_eq!(EventSettings::from_raw(None, None, None), Ok(EventSettings::default()));
        assert_eq!(EventSettings::from_raw(raw(""), raw("  "), raw("")), Ok(EventSettings::default()));
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("65536", 65536),
            ("64k", 65536),
            ("64 K", 65536),
            ("256M", 256 << 20),
            ("1G", 1 << 30),
            ("2gb", 2 << 30),
            ("1T", 1 << 40),
        ] {
            assert_eq!(parse_size(text.as_bytes()), Some(bytes), "{text}");
        }
        for text in ["", "M", "-1", "1.5G", "12Q", "99999999999999999999", "1 G B"] {
            assert_eq!(parse_size(text.as_bytes()), None, "{text}");
        }
        assert_eq!(parse_size(b"18446744073709551615T"), None, "overflow is rejected");
    }

    #[test]
    fn values_are_validated() {
        let ok = EventSettings::from_raw(raw("/tmp/spool"), raw("1M"), raw("/tmp/s.sock")).unwrap_or_default();
        assert_eq!(ok.spool_dir, PathBuf::from("/tmp/spool"));
        assert_eq!(ok.spool_max_bytes, 1 << 20);
        assert_eq!(ok.sidecar_socket, PathBuf::from("/tmp/s.sock"));

        let err = EventSettings::from_raw(raw("relative/dir"), None, None);
        assert!(matches!(err, Err(EventSettingsError::NotAbsolutePath { setting: SETTING_SPOOL_PATH, .. })));
        let err = EventSettings::from_raw(None, raw("1k"), None);
        assert!(matches!(&err, Err(EventSettingsError::BadSize { .. })));
        assert!(err.err().map(|e| e.to_string()).unwrap_or_default().starts_with("coi_spool_max_size:"));
        let long = format!("/{}", "s".repeat(120));
        let err = EventSettings::from_raw(None, None, raw(&long));
        assert_eq!(err, Err(EventSettingsError::SocketPathTooLong { len: 121 }));
        let err = EventSettings::from_raw(None, None, Some(b"/run/\xff"));
        assert!(matches!(err, Err(EventSettingsError::NotAbsolutePath { setting: SETTING_SIDECAR_SOCKET, .. })));
    }
}

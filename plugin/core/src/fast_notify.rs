//! Which folders get chat-grade change notifications (issue 7).
//!
//! Stock Dovecot tells IDLE clients about new mail only after a fixed delay
//! (`mailbox-watch.c`, 500 ms). For folders in scope the plugin watches the
//! mailbox's index log itself and notifies at once. The setting:
//!
//! - `coi_fast_notify = chats` (default): `<root>/Chats`, and INBOX of users
//!   who enabled COI (their chats may stay in INBOX, message-filter `none`);
//! - `all`: every folder of every user with the plugin;
//! - `no`: stock behaviour everywhere.
//!
//! Caller: the plugin's `notify_scope` op, once per IDLE/NOTIFY start.

use crate::route::Policy;

/// Name of the setting.
pub const SETTING_FAST_NOTIFY: &str = "coi_fast_notify";

/// The `coi_fast_notify` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FastNotify {
    /// Stock Dovecot behaviour.
    No,
    /// The chats folder, and INBOX of COI users.
    #[default]
    Chats,
    /// Every folder.
    All,
}

/// A `coi_fast_notify` value that is none of the allowed ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{SETTING_FAST_NOTIFY}: invalid value {value:?}; allowed: chats, all, no")]
pub struct FastNotifyError {
    /// The offending value (lossy UTF-8, at most 64 characters).
    pub value: String,
}

impl FastNotify {
    /// Parses the raw setting (`None` or blank = default `chats`).
    pub fn from_raw(raw: Option<&[u8]>) -> Result<FastNotify, FastNotifyError> {
        let Some(value) = raw.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()) else {
            return Ok(FastNotify::default());
        };
        match value.to_ascii_lowercase().as_slice() {
            b"chats" => Ok(FastNotify::Chats),
            b"all" => Ok(FastNotify::All),
            b"no" | b"none" | b"off" => Ok(FastNotify::No),
            _ => Err(FastNotifyError { value: String::from_utf8_lossy(value).chars().take(64).collect() }),
        }
    }

    /// Whether a folder gets fast notifications. `policy` is the user's COI
    /// policy when it could be read (only needed for INBOX).
    pub fn applies(self, folder: &str, chats_folder: &str, policy: Option<&Policy>) -> bool {
        match self {
            FastNotify::No => false,
            FastNotify::All => true,
            FastNotify::Chats => {
                folder == chats_folder
                    || (folder.eq_ignore_ascii_case("INBOX") && policy.is_some_and(|p| p.enabled))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Source;
    use crate::settings::MessageFilter;

    fn policy(enabled: bool) -> Policy {
        Policy {
            enabled,
            enabled_source: Source::Metadata,
            filter: MessageFilter::None,
            filter_source: Source::Default,
        }
    }

    #[test]
    fn parse() {
        assert_eq!(FastNotify::from_raw(None), Ok(FastNotify::Chats));
        assert_eq!(FastNotify::from_raw(Some(b" ")), Ok(FastNotify::Chats));
        assert_eq!(FastNotify::from_raw(Some(b"ALL")), Ok(FastNotify::All));
        assert_eq!(FastNotify::from_raw(Some(b"no")), Ok(FastNotify::No));
        assert_eq!(FastNotify::from_raw(Some(b"chats")), Ok(FastNotify::Chats));
        let err = FastNotify::from_raw(Some(b"yes please")).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("coi_fast_notify: invalid value \"yes please\"; allowed: chats, all, no"));
    }

    #[test]
    fn scope() {
        let chats = "COI/Chats";
        assert!(FastNotify::Chats.applies("COI/Chats", chats, None));
        assert!(!FastNotify::Chats.applies("COI/Contacts", chats, Some(&policy(true))));
        assert!(FastNotify::Chats.applies("INBOX", chats, Some(&policy(true))));
        assert!(FastNotify::Chats.applies("inbox", chats, Some(&policy(true))));
        assert!(!FastNotify::Chats.applies("INBOX", chats, Some(&policy(false))));
        assert!(!FastNotify::Chats.applies("INBOX", chats, None), "unreadable policy: stock behaviour");
        assert!(FastNotify::All.applies("Archive", chats, None));
        assert!(!FastNotify::No.applies("COI/Chats", chats, Some(&policy(true))));
    }
}

//! The recall and read-status settings of a user, validated once
//! (STYLE §7):
//! - `coi_recall` (boolean, default `no`): users may ask to recall unread
//!   copies of messages they sent (docs/recall.md).
//! - `coi_sender_trust` (`none` | `received`, default `none`): how delivery
//!   tells a message submitted by an authenticated local user from outside
//!   mail claiming a local sender ([`crate::recall::trust`]). With `none`
//!   no delivered copy is ever taken as authored by a local user, so recall
//!   finds nothing and read status reaches no local sender.
//! - `coi_read_status` (boolean, default `no`): read status is offered at
//!   all (the `read-status` config key, `$CoiRead`, `message.read`).
//! - `coi_default_read_status` (boolean, default `no`): the consent of users
//!   who have not set `.../coi/config/read-status` themselves.
//!
//! Invariants: unset or blank means the default; a bad value is an error
//! naming the setting, never silently replaced (the FFI layer then turns
//! both features off for that user and logs why).

use crate::settings::parse_bool;

/// Setting names, for error messages.
pub const SETTING_RECALL: &str = "coi_recall";
/// See the module docs.
pub const SETTING_SENDER_TRUST: &str = "coi_sender_trust";
/// See the module docs.
pub const SETTING_READ_STATUS: &str = "coi_read_status";
/// See the module docs.
pub const SETTING_DEFAULT_READ_STATUS: &str = "coi_default_read_status";

/// How delivery recognises mail submitted by an authenticated local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SenderTrust {
    /// Never: no copy is recorded as authored by a local user.
    #[default]
    None,
    /// The topmost Received header below Dovecot's own LMTP ones carries
    /// the operator's MTA's `(Authenticated sender: ADDR)` note.
    Received,
}

impl SenderTrust {
    /// The setting value.
    pub fn name(self) -> &'static str {
        match self {
            SenderTrust::None => "none",
            SenderTrust::Received => "received",
        }
    }
}

/// Validated recall and read-status settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecallSettings {
    /// `coi_recall`.
    pub recall: bool,
    /// `coi_sender_trust`.
    pub sender_trust: SenderTrust,
    /// `coi_read_status`.
    pub read_status: bool,
    /// `coi_default_read_status`.
    pub default_read_status: bool,
}

/// A bad recall or read-status setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecallSettingsError {
    /// A boolean setting with another value.
    #[error("{setting} must be yes or no")]
    NotBoolean {
        /// The setting's name.
        setting: &'static str,
    },
    /// `coi_sender_trust` with another value.
    #[error("coi_sender_trust must be none or received")]
    SenderTrust,
}

fn set_value(raw: Option<&[u8]>) -> Option<&[u8]> {
    raw.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty())
}

fn boolean(raw: Option<&[u8]>, setting: &'static str) -> Result<bool, RecallSettingsError> {
    match set_value(raw) {
        None => Ok(false),
        Some(v) => parse_bool(v).ok_or(RecallSettingsError::NotBoolean { setting }),
    }
}

impl RecallSettings {
    /// Validates the raw values (absent = not set).
    pub fn from_raw(
        recall: Option<&[u8]>,
        sender_trust: Option<&[u8]>,
        read_status: Option<&[u8]>,
        default_read_status: Option<&[u8]>,
    ) -> Result<RecallSettings, RecallSettingsError> {
        let sender_trust = match set_value(sender_trust) {
            None => SenderTrust::None,
            Some(v) if v.eq_ignore_ascii_case(b"none") => SenderTrust::None,
            Some(v) if v.eq_ignore_ascii_case(b"received") => SenderTrust::Received,
            Some(_) => return Err(RecallSettingsError::SenderTrust),
        };
        Ok(RecallSettings {
            recall: boolean(recall, SETTING_RECALL)?,
            sender_trust,
            read_status: boolean(read_status, SETTING_READ_STATUS)?,
            default_read_status: boolean(default_read_status, SETTING_DEFAULT_READ_STATUS)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Option<&[u8]> {
        Some(s.as_bytes())
    }

    #[test]
    fn defaults_are_all_off() {
        assert_eq!(RecallSettings::from_raw(None, None, None, None), Ok(RecallSettings::default()));
        assert_eq!(RecallSettings::from_raw(raw(" "), raw(""), raw(""), raw("")), Ok(RecallSettings::default()));
        let d = RecallSettings::default();
        assert!(!d.recall && !d.read_status && !d.default_read_status);
        assert_eq!(d.sender_trust, SenderTrust::None);
    }

    #[test]
    fn values_parse_and_bad_ones_name_the_setting() {
        let s = RecallSettings::from_raw(raw("yes"), raw("Received"), raw("1"), raw("no")).unwrap();
        assert!(s.recall && s.read_status && !s.default_read_status);
        assert_eq!(s.sender_trust, SenderTrust::Received);
        assert_eq!(
            RecallSettings::from_raw(raw("maybe"), None, None, None),
            Err(RecallSettingsError::NotBoolean { setting: SETTING_RECALL })
        );
        assert_eq!(RecallSettings::from_raw(None, raw("header"), None, None), Err(RecallSettingsError::SenderTrust));
        let e = RecallSettings::from_raw(None, None, None, raw("x")).unwrap_err();
        assert!(e.to_string().contains("coi_default_read_status"));
    }
}

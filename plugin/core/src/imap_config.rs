//! Validation of the per-user COI config keys a client sets with
//! SETMETADATA (DESIGN §3, `/private/vendor/vendor.dovecot/coi/config/`).
//!
//! What this module owns: which values each key accepts, the message a
//! client gets for anything else (sent as `NO [CANNOT] <message>`), and what
//! GETMETADATA shows for a key nobody set.
//!
//! `enabled` is a tri-state: `yes` (the user wants COI), `no` (the user does
//! not, whatever the site default says) and NIL (no choice stored: the site
//! default, `coi_default_enabled`, applies). The COI specification knows only
//! `yes` and NIL; both keep their meaning where the site default is off, and
//! `no` is how a user opts out where it is on. DELETE of the chats folder
//! stores `no` too (crate::folder_lifecycle).
//!
//! Invariants: total and allocation-free on the accepting path; a refusal
//! message names the key and lists what is allowed, never echoes the value
//! (it may be binary or huge).
//!
//! Callers: the plugin's `config_check` / `config_get` ops, on behalf of the
//! shim's internal METADATA attributes (plugin/shim/coi-attributes.c).

use crate::settings::{MessageFilter, PluginSettings};

/// The COI config keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKey {
    /// `mailbox-root`: read-only.
    MailboxRoot,
    /// `enabled`: `yes`, `no` or NIL (the site default).
    Enabled,
    /// `message-filter`: `none`, `active` or `seen`.
    MessageFilter,
}

impl ConfigKey {
    /// From the C enum code (`enum coi_config_key`).
    pub fn from_code(code: i32) -> Option<ConfigKey> {
        match code {
            0 => Some(ConfigKey::MailboxRoot),
            1 => Some(ConfigKey::Enabled),
            2 => Some(ConfigKey::MessageFilter),
            _ => None,
        }
    }

    /// The key's name below `.../coi/config/`.
    pub fn name(self) -> &'static str {
        match self {
            ConfigKey::MailboxRoot => "mailbox-root",
            ConfigKey::Enabled => "enabled",
            ConfigKey::MessageFilter => "message-filter",
        }
    }
}

/// What storing an accepted value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigEffect {
    /// `enabled yes`: COI is on, so its folders must exist before the
    /// client's tagged OK.
    TurnsOn,
    /// Anything else that is accepted: just stored.
    Stored,
}

/// Checks a SETMETADATA value (`None` = NIL). `Ok` means it may be stored.
pub fn check_value(key: ConfigKey, value: Option<&[u8]>) -> Result<ConfigEffect, String> {
    match (key, value) {
        (ConfigKey::MailboxRoot, _) => Err(
            "COI mailbox-root is read-only: it is set by the server administrator (coi_mailbox_root)"
                .to_string(),
        ),
        (_, None) => Ok(ConfigEffect::Stored),
        (ConfigKey::Enabled, Some(v)) if v.eq_ignore_ascii_case(b"yes") => Ok(ConfigEffect::TurnsOn),
        (ConfigKey::Enabled, Some(v)) if v.eq_ignore_ascii_case(b"no") => Ok(ConfigEffect::Stored),
        (ConfigKey::Enabled, Some(_)) => Err(
            "COI enabled accepts only \"yes\", \"no\" or NIL (NIL: the server default)".to_string(),
        ),
        (ConfigKey::MessageFilter, Some(v)) if MessageFilter::parse_exact(v).is_some() => Ok(ConfigEffect::Stored),
        (ConfigKey::MessageFilter, Some(_)) => Err(
            "COI message-filter accepts only \"none\", \"active\" or \"seen\" (or NIL for the server default)"
                .to_string(),
        ),
    }
}

/// What GETMETADATA shows when nothing is stored for `key`: the configured
/// root, or the site default so a client sees the policy in force.
pub fn default_value(key: ConfigKey, settings: &PluginSettings) -> Option<String> {
    match key {
        ConfigKey::MailboxRoot => Some(settings.mailbox_root.clone()),
        ConfigKey::Enabled => settings.default_enabled.then(|| "yes".to_string()),
        ConfigKey::MessageFilter => Some(settings.default_filter.name().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_is_yes_no_or_nil() {
        assert_eq!(check_value(ConfigKey::Enabled, Some(b"yes")), Ok(ConfigEffect::TurnsOn));
        assert_eq!(check_value(ConfigKey::Enabled, Some(b"YES")), Ok(ConfigEffect::TurnsOn));
        assert_eq!(check_value(ConfigKey::Enabled, Some(b"no")), Ok(ConfigEffect::Stored));
        assert_eq!(check_value(ConfigKey::Enabled, Some(b"No")), Ok(ConfigEffect::Stored));
        assert_eq!(check_value(ConfigKey::Enabled, None), Ok(ConfigEffect::Stored));
        for bad in [&b""[..], b"true", b"yes ", b"\0yes", b"false", b"nil", b"NIL"] {
            let err = check_value(ConfigKey::Enabled, Some(bad)).unwrap_err();
            assert!(err.contains("\"yes\", \"no\" or NIL"), "{err}");
            assert!(err.contains("server default"), "{err}");
        }
    }

    #[test]
    fn message_filter_accepts_the_three_modes() {
        for good in [&b"none"[..], b"active", b"seen", b"Seen"] {
            assert_eq!(check_value(ConfigKey::MessageFilter, Some(good)), Ok(ConfigEffect::Stored));
        }
        assert!(check_value(ConfigKey::MessageFilter, None).is_ok());
        for bad in [&b"all"[..], b"", b" seen", b"seen\n"] {
            let err = check_value(ConfigKey::MessageFilter, Some(bad)).unwrap_err();
            assert!(err.contains("\"active\""), "{err}");
        }
    }

    #[test]
    fn mailbox_root_is_read_only_even_for_nil() {
        assert!(check_value(ConfigKey::MailboxRoot, None).unwrap_err().contains("read-only"));
        assert!(check_value(ConfigKey::MailboxRoot, Some(b"X")).is_err());
    }

    #[test]
    fn defaults_show_the_policy_in_force() {
        let mut s = PluginSettings::default();
        assert_eq!(default_value(ConfigKey::MailboxRoot, &s).as_deref(), Some("COI"));
        assert_eq!(default_value(ConfigKey::Enabled, &s), None);
        assert_eq!(default_value(ConfigKey::MessageFilter, &s).as_deref(), Some("none"));
        s.default_enabled = true;
        s.default_filter = MessageFilter::Seen;
        assert_eq!(default_value(ConfigKey::Enabled, &s).as_deref(), Some("yes"));
        assert_eq!(default_value(ConfigKey::MessageFilter, &s).as_deref(), Some("seen"));
        assert_eq!(ConfigKey::from_code(3), None);
    }
}

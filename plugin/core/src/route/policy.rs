//! A user's effective COI policy: METADATA over plugin defaults.
//!
//! COI server spec: `/private/vendor/vendor.dovecot/coi/config/enabled` is `yes`
//! or NIL; we also honour an explicit `no` as "disabled by the user", since a
//! value set by hand or by an older server must not silently turn into the
//! site default's opposite. `message-filter` is `none`, `active` or `seen`.
//! Anything else (NIL, a typo, binary junk) means "use the plugin default" and
//! is reported as [`Source::Default`].
//!
//! Invariants: total (every input yields a policy), no allocation.
//!
//! Callers: the plugin's `decide` op, with METADATA the shim read for this user.

use crate::settings::{MessageFilter, PluginSettings};

/// The user's COI server METADATA values, `None` = NIL.
#[derive(Debug, Default, Clone, Copy)]
pub struct UserMetadata<'a> {
    /// `.../coi/config/enabled`
    pub enabled: Option<&'a [u8]>,
    /// `.../coi/config/message-filter`
    pub message_filter: Option<&'a [u8]>,
}

/// Where a policy value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The user's METADATA.
    Metadata,
    /// The plugin settings' default.
    Default,
}

/// The effective COI policy for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whether COI routing applies to this user.
    pub enabled: bool,
    /// Where `enabled` came from.
    pub enabled_source: Source,
    /// The message filter in force.
    pub filter: MessageFilter,
    /// Where `filter` came from.
    pub filter_source: Source,
}

/// Merges METADATA over the plugin defaults.
pub fn resolve_policy(settings: &PluginSettings, metadata: &UserMetadata<'_>) -> Policy {
    let (enabled, enabled_source) = match metadata.enabled.map(<[u8]>::trim_ascii) {
        Some(v) if v.eq_ignore_ascii_case(b"yes") => (true, Source::Metadata),
        Some(v) if v.eq_ignore_ascii_case(b"no") => (false, Source::Metadata),
        _ => (settings.default_enabled, Source::Default),
    };
    let (filter, filter_source) = match metadata.message_filter.and_then(MessageFilter::parse) {
        Some(f) => (f, Source::Metadata),
        None => (settings.default_filter, Source::Default),
    };
    Policy {
        enabled,
        enabled_source,
        filter,
        filter_source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(enabled: bool, filter: MessageFilter) -> PluginSettings {
        PluginSettings {
            default_enabled: enabled,
            default_filter: filter,
            mailbox_root: "COI".into(),
        }
    }

    #[test]
    fn enabled_resolution() {
        // (metadata value, default, expected enabled, expected source)
        let table: &[(Option<&[u8]>, bool, bool, Source)] = &[
            (None, false, false, Source::Default),
            (None, true, true, Source::Default),
            (Some(b"yes"), false, true, Source::Metadata),
            (Some(b"YES"), false, true, Source::Metadata),
            (Some(b" Yes\r\n"), false, true, Source::Metadata),
            (Some(b"no"), true, false, Source::Metadata),
            (Some(b"NO "), true, false, Source::Metadata),
            (Some(b"no"), false, false, Source::Metadata),
            (Some(b"yes"), true, true, Source::Metadata),
            (Some(b""), true, true, Source::Default),
            (Some(b""), false, false, Source::Default),
            (Some(b"1"), false, false, Source::Default),
            (Some(b"true"), false, false, Source::Default),
            (Some(b"y"), false, false, Source::Default),
            (Some(b"yess"), true, true, Source::Default),
            (Some(b"\xff\x00"), true, true, Source::Default),
        ];
        for (value, default, want, source) in table {
            let md = UserMetadata {
                enabled: *value,
                message_filter: None,
            };
            let p = resolve_policy(&settings(*default, MessageFilter::None), &md);
            assert_eq!(
                (p.enabled, p.enabled_source),
                (*want, *source),
                "{value:?} default {default}"
            );
        }
    }

    #[test]
    fn filter_resolution() {
        use MessageFilter as F;
        let table: &[(Option<&[u8]>, MessageFilter, MessageFilter, Source)] = &[
            (None, F::None, F::None, Source::Default),
            (None, F::Seen, F::Seen, Source::Default),
            (Some(b"active"), F::None, F::Active, Source::Metadata),
            (Some(b"ACTIVE"), F::Seen, F::Active, Source::Metadata),
            (Some(b"seen"), F::Active, F::Seen, Source::Metadata),
            (Some(b"none"), F::Active, F::None, Source::Metadata),
            (Some(b" none "), F::Active, F::None, Source::Metadata),
            (Some(b""), F::Active, F::Active, Source::Default),
            (Some(b"all"), F::Seen, F::Seen, Source::Default),
            (Some(b"\xff"), F::Active, F::Active, Source::Default),
        ];
        for (value, default, want, source) in table {
            let md = UserMetadata {
                enabled: None,
                message_filter: *value,
            };
            let p = resolve_policy(&settings(false, *default), &md);
            assert_eq!(
                (p.filter, p.filter_source),
                (*want, *source),
                "{value:?} default {default:?}"
            );
        }
    }

    #[test]
    fn both_from_metadata() {
        let md = UserMetadata {
            enabled: Some(b"yes"),
            message_filter: Some(b"active"),
        };
        let p = resolve_policy(&PluginSettings::default(), &md);
        assert_eq!(
            p,
            Policy {
                enabled: true,
                enabled_source: Source::Metadata,
                filter: MessageFilter::Active,
                filter_source: Source::Metadata,
            }
        );
    }

    #[test]
    fn nil_metadata_is_all_defaults() {
        let p = resolve_policy(&PluginSettings::default(), &UserMetadata::default());
        assert_eq!(
            p,
            Policy {
                enabled: false,
                enabled_source: Source::Default,
                filter: MessageFilter::None,
                filter_source: Source::Default,
            }
        );
    }
}

//! The plugin's own settings, validated once per user (STYLE §7: validate at
//! load time, not on every use).
//!
//! Settings (Dovecot `plugin {}` block in 2.3, declared settings in 2.4):
//! - `coi_default_enabled`: COI routing for users without `enabled` METADATA.
//!   Dovecot booleans: `yes`/`no`, `y`/`n`, `1`/`0`, `true`/`false`, ASCII
//!   case-insensitive. Default `no`.
//! - `coi_default_message_filter`: `none` | `active` | `seen` for users without
//!   `message-filter` METADATA. Default `none`.
//! - `coi_mailbox_root`: the COI root folder, including the namespace prefix
//!   if there is one (DESIGN §3). Valid UTF-8, at most 200 bytes, no control
//!   characters, not starting or ending with `/` or `.`. Default `COI`.
//!
//! Invariants: every value is trimmed of ASCII whitespace first; a value that
//! is then empty counts as unset (Dovecot writes `key =` and an unset 2.4
//! string setting as ""), so it takes the default. A bad value is an error,
//! never silently replaced: the FFI layer logs it and leaves that user alone.
//! Error messages name the setting, show the offending value sanitized
//! (control characters escaped, at most 64 characters) and list what is allowed.
//!
//! Callers: the plugin's `user_new` op (once per mail user), and
//! [`crate::route::resolve_policy`] which reuses [`MessageFilter::parse`] for
//! METADATA values.

/// Name of the default-enabled setting.
pub const SETTING_DEFAULT_ENABLED: &str = "coi_default_enabled";
/// Name of the default message-filter setting.
pub const SETTING_DEFAULT_MESSAGE_FILTER: &str = "coi_default_message_filter";
/// Name of the mailbox-root setting.
pub const SETTING_MAILBOX_ROOT: &str = "coi_mailbox_root";
/// Mailbox root used when `coi_mailbox_root` is unset.
pub const DEFAULT_MAILBOX_ROOT: &str = "COI";
/// Longest accepted `coi_mailbox_root`, in bytes. Leaves room for
/// `<sep>Chats`/`<sep>Contacts` within common mailbox-name limits.
pub const MAILBOX_ROOT_MAX_LEN: usize = 200;

/// How much of a bad value an error message repeats, in characters.
const SANITIZED_MAX_CHARS: usize = 64;

/// The COI `message-filter` modes (COI server spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFilter {
    /// Chats stay in INBOX.
    None,
    /// Chats are filed into `<root>/Chats` on delivery.
    Active,
    /// Chats are moved to `<root>/Chats` once `\Seen`.
    Seen,
}

impl MessageFilter {
    /// Parses `none`, `active` or `seen` (ASCII case-insensitive, surrounding
    /// whitespace trimmed).
    pub fn parse(value: &[u8]) -> Option<MessageFilter> {
        let v = value.trim_ascii();
        [
            MessageFilter::None,
            MessageFilter::Active,
            MessageFilter::Seen,
        ]
        .into_iter()
        .find(|f| v.eq_ignore_ascii_case(f.name().as_bytes()))
    }

    /// Like [`MessageFilter::parse`] but without trimming: what a client
    /// may store with SETMETADATA.
    pub fn parse_exact(value: &[u8]) -> Option<MessageFilter> {
        if value.len() != value.trim_ascii().len() {
            return None;
        }
        MessageFilter::parse(value)
    }

    /// The spec's spelling: `none`, `active` or `seen`.
    pub fn name(self) -> &'static str {
        match self {
            MessageFilter::None => "none",
            MessageFilter::Active => "active",
            MessageFilter::Seen => "seen",
        }
    }
}

/// The validated `coi_*` settings of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// `coi_default_enabled`
    pub default_enabled: bool,
    /// `coi_default_message_filter`
    pub default_filter: MessageFilter,
    /// `coi_mailbox_root`, trimmed.
    pub mailbox_root: String,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            default_enabled: false,
            default_filter: MessageFilter::None,
            mailbox_root: DEFAULT_MAILBOX_ROOT.to_string(),
        }
    }
}

/// A `coi_*` setting with a value we cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// `coi_default_enabled` is not a boolean.
    #[error(
        "{setting}: invalid value \"{value}\"; allowed: yes/no, y/n, true/false, 1/0 \
         (case-insensitive), or empty for the default (no)",
        setting = SETTING_DEFAULT_ENABLED
    )]
    DefaultEnabled {
        /// The value, sanitized and truncated.
        value: String,
    },
    /// `coi_default_message_filter` is not a filter mode.
    #[error(
        "{setting}: invalid value \"{value}\"; allowed: none, active, seen \
         (case-insensitive), or empty for the default (none)",
        setting = SETTING_DEFAULT_MESSAGE_FILTER
    )]
    DefaultMessageFilter {
        /// The value, sanitized and truncated.
        value: String,
    },
    /// `coi_mailbox_root` is not UTF-8.
    #[error(
        "{setting}: invalid value \"{value}\": not valid UTF-8; allowed: a UTF-8 \
         mailbox name of 1 to {max} bytes",
        setting = SETTING_MAILBOX_ROOT,
        max = MAILBOX_ROOT_MAX_LEN
    )]
    MailboxRootNotUtf8 {
        /// The value, sanitized and truncated.
        value: String,
    },
    /// `coi_mailbox_root` is too long.
    #[error(
        "{setting}: invalid value \"{value}\": {len} bytes long; allowed: at most {max} bytes",
        setting = SETTING_MAILBOX_ROOT,
        max = MAILBOX_ROOT_MAX_LEN
    )]
    MailboxRootTooLong {
        /// The value, sanitized and truncated.
        value: String,
        /// Its length in bytes, after trimming.
        len: usize,
    },
    /// `coi_mailbox_root` contains a control character.
    #[error(
        "{setting}: invalid value \"{value}\": contains a control character; \
         allowed: printable characters only",
        setting = SETTING_MAILBOX_ROOT
    )]
    MailboxRootControlChar {
        /// The value, sanitized and truncated.
        value: String,
    },
    /// `coi_mailbox_root` starts or ends with a hierarchy separator.
    #[error(
        "{setting}: invalid value \"{value}\": starts or ends with '/' or '.'; \
         allowed: a mailbox name without leading or trailing separators, e.g. COI or INBOX.COI",
        setting = SETTING_MAILBOX_ROOT
    )]
    MailboxRootSeparatorAtEdge {
        /// The value, sanitized and truncated.
        value: String,
    },
}

impl SettingsError {
    /// The name of the offending setting, e.g. `coi_default_enabled`.
    pub fn setting(&self) -> &'static str {
        match self {
            SettingsError::DefaultEnabled { .. } => SETTING_DEFAULT_ENABLED,
            SettingsError::DefaultMessageFilter { .. } => SETTING_DEFAULT_MESSAGE_FILTER,
            SettingsError::MailboxRootNotUtf8 { .. }
            | SettingsError::MailboxRootTooLong { .. }
            | SettingsError::MailboxRootControlChar { .. }
            | SettingsError::MailboxRootSeparatorAtEdge { .. } => SETTING_MAILBOX_ROOT,
        }
    }
}

impl PluginSettings {
    /// Raw values of the Dovecot plugin settings coi_default_enabled,
    /// coi_default_message_filter, coi_mailbox_root (None = unset => default).
    ///
    /// The first invalid setting, in that order, is reported.
    pub fn from_raw(
        default_enabled: Option<&[u8]>,
        default_filter: Option<&[u8]>,
        mailbox_root: Option<&[u8]>,
    ) -> Result<PluginSettings, SettingsError> {
        let mut settings = PluginSettings::default();
        if let Some(v) = set_value(default_enabled) {
            settings.default_enabled = parse_bool(v)
                .ok_or_else(|| SettingsError::DefaultEnabled { value: sanitize(v) })?;
        }
        if let Some(v) = set_value(default_filter) {
            settings.default_filter = MessageFilter::parse(v)
                .ok_or_else(|| SettingsError::DefaultMessageFilter { value: sanitize(v) })?;
        }
        if let Some(v) = set_value(mailbox_root) {
            settings.mailbox_root = parse_mailbox_root(v)?;
        }
        Ok(settings)
    }
}

/// The trimmed value, or `None` when unset or blank.
fn set_value(raw: Option<&[u8]>) -> Option<&[u8]> {
    raw.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty())
}

/// Dovecot's boolean spellings (`settings_get_bool()`).
pub(crate) fn parse_bool(v: &[u8]) -> Option<bool> {
    const TRUE: [&[u8]; 4] = [b"yes", b"y", b"1", b"true"];
    const FALSE: [&[u8]; 4] = [b"no", b"n", b"0", b"false"];
    if TRUE.iter().any(|t| v.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| v.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// Validates a trimmed, non-empty mailbox root.
fn parse_mailbox_root(v: &[u8]) -> Result<String, SettingsError> {
    let Ok(root) = std::str::from_utf8(v) else {
        return Err(SettingsError::MailboxRootNotUtf8 { value: sanitize(v) });
    };
    if root.len() > MAILBOX_ROOT_MAX_LEN {
        return Err(SettingsError::MailboxRootTooLong {
            value: sanitize(v),
            len: root.len(),
        });
    }
    if root.chars().any(char::is_control) {
        return Err(SettingsError::MailboxRootControlChar { value: sanitize(v) });
    }
    let at_edge = |c: char| c == '/' || c == '.';
    if root.starts_with(at_edge) || root.ends_with(at_edge) {
        return Err(SettingsError::MailboxRootSeparatorAtEdge { value: sanitize(v) });
    }
    Ok(root.to_string())
}

/// Makes a bad value safe to put in a log line: lossy UTF-8, control
/// characters, quotes and backslashes escaped, at most
/// [`SANITIZED_MAX_CHARS`] characters then `...`.
fn sanitize(v: &[u8]) -> String {
    // 4 bytes per char is the most a UTF-8 char can take; anything beyond is
    // cut anyway, so a huge bad value costs no more than this.
    let head = &v[..v.len().min(SANITIZED_MAX_CHARS * 4 + 4)];
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(SANITIZED_MAX_CHARS + 8);
    for (i, c) in text.chars().enumerate() {
        if i == SANITIZED_MAX_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Option<&[u8]> {
        Some(s.as_bytes())
    }

    #[test]
    fn defaults() {
        let s = PluginSettings::default();
        assert!(!s.default_enabled);
        assert_eq!(s.default_filter, MessageFilter::None);
        assert_eq!(s.mailbox_root, "COI");
        assert_eq!(PluginSettings::from_raw(None, None, None), Ok(s));
    }

    #[test]
    fn empty_and_blank_values_are_unset() {
        for v in ["", " ", "\t \r\n"] {
            assert_eq!(
                PluginSettings::from_raw(raw(v), raw(v), raw(v)),
                Ok(PluginSettings::default()),
                "{v:?}"
            );
        }
    }

    #[test]
    fn bool_spellings() {
        let table = [
            ("yes", true),
            ("YES", true),
            ("Yes", true),
            ("y", true),
            ("Y", true),
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("  yes\t", true),
            ("no", false),
            ("NO", false),
            ("n", false),
            ("N", false),
            ("0", false),
            ("false", false),
            ("False", false),
            (" no ", false),
        ];
        for (v, want) in table {
            let s = PluginSettings::from_raw(raw(v), None, None).unwrap();
            assert_eq!(s.default_enabled, want, "{v:?}");
        }
    }

    #[test]
    fn bool_rejects() {
        for v in ["on", "off", "2", "yess", "ye s", "enabled", "-1", "t", "f"] {
            let err = PluginSettings::from_raw(raw(v), None, None).unwrap_err();
            assert_eq!(
                err,
                SettingsError::DefaultEnabled {
                    value: v.to_string()
                }
            );
            assert_eq!(err.setting(), "coi_default_enabled");
            let msg = err.to_string();
            assert!(msg.starts_with("coi_default_enabled: "), "{msg}");
            assert!(msg.contains(&format!("\"{v}\"")), "{msg}");
            assert!(msg.contains("yes/no"), "{msg}");
        }
    }

    #[test]
    fn message_filter_parse() {
        let table: &[(&[u8], Option<MessageFilter>)] = &[
            (b"none", Some(MessageFilter::None)),
            (b"NONE", Some(MessageFilter::None)),
            (b"active", Some(MessageFilter::Active)),
            (b"Active", Some(MessageFilter::Active)),
            (b" active\r\n", Some(MessageFilter::Active)),
            (b"seen", Some(MessageFilter::Seen)),
            (b"\tSEEN ", Some(MessageFilter::Seen)),
            (b"", None),
            (b"   ", None),
            (b"all", None),
            (b"activ", None),
            (b"active seen", None),
            (b"\xffseen", None),
            (b"se\x00en", None),
        ];
        for (v, want) in table {
            assert_eq!(
                MessageFilter::parse(v),
                *want,
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        for f in [
            MessageFilter::None,
            MessageFilter::Active,
            MessageFilter::Seen,
        ] {
            assert_eq!(MessageFilter::parse(f.name().as_bytes()), Some(f));
        }
    }

    #[test]
    fn message_filter_setting() {
        let s = PluginSettings::from_raw(None, raw("Seen"), None).unwrap();
        assert_eq!(s.default_filter, MessageFilter::Seen);
        let s = PluginSettings::from_raw(None, raw("active"), None).unwrap();
        assert_eq!(s.default_filter, MessageFilter::Active);

        let err = PluginSettings::from_raw(None, raw("always"), None).unwrap_err();
        assert_eq!(
            err,
            SettingsError::DefaultMessageFilter {
                value: "always".into()
            }
        );
        assert_eq!(err.setting(), "coi_default_message_filter");
        assert_eq!(
            err.to_string(),
            "coi_default_message_filter: invalid value \"always\"; allowed: none, active, seen \
             (case-insensitive), or empty for the default (none)"
        );
    }

    #[test]
    fn mailbox_root_accepts() {
        for (v, want) in [
            ("COI", "COI"),
            ("  Chats-Root ", "Chats-Root"),
            ("INBOX.COI", "INBOX.COI"),
            ("INBOX/COI", "INBOX/COI"),
            ("Общение", "Общение"),
            ("a", "a"),
        ] {
            let s = PluginSettings::from_raw(None, None, raw(v)).unwrap();
            assert_eq!(s.mailbox_root, want);
        }
        let max = "r".repeat(MAILBOX_ROOT_MAX_LEN);
        let s = PluginSettings::from_raw(None, None, raw(&max)).unwrap();
        assert_eq!(s.mailbox_root, max);
    }

    #[test]
    fn mailbox_root_rejects() {
        let too_long = "r".repeat(MAILBOX_ROOT_MAX_LEN + 1);
        let table: Vec<(&[u8], SettingsError, &str)> = vec![
            (
                b"CO\xffI",
                SettingsError::MailboxRootNotUtf8 {
                    value: "CO\u{fffd}I".into(),
                },
                "not valid UTF-8",
            ),
            (
                too_long.as_bytes(),
                SettingsError::MailboxRootTooLong {
                    value: format!("{}...", "r".repeat(64)),
                    len: 201,
                },
                "at most 200 bytes",
            ),
            (
                b"CO\x01I",
                SettingsError::MailboxRootControlChar {
                    value: "CO\\u{1}I".into(),
                },
                "control character",
            ),
            (
                b"CO\tI",
                SettingsError::MailboxRootControlChar {
                    value: "CO\\tI".into(),
                },
                "control character",
            ),
            (
                "CO\u{85}I".as_bytes(),
                SettingsError::MailboxRootControlChar {
                    value: "CO\\u{85}I".into(),
                },
                "control character",
            ),
            (
                b"/COI",
                SettingsError::MailboxRootSeparatorAtEdge {
                    value: "/COI".into(),
                },
                "'/' or '.'",
            ),
            (
                b"COI/",
                SettingsError::MailboxRootSeparatorAtEdge {
                    value: "COI/".into(),
                },
                "'/' or '.'",
            ),
            (
                b".COI",
                SettingsError::MailboxRootSeparatorAtEdge {
                    value: ".COI".into(),
                },
                "'/' or '.'",
            ),
            (
                b"INBOX.",
                SettingsError::MailboxRootSeparatorAtEdge {
                    value: "INBOX.".into(),
                },
                "'/' or '.'",
            ),
            (
                b"/",
                SettingsError::MailboxRootSeparatorAtEdge { value: "/".into() },
                "'/' or '.'",
            ),
        ];
        for (v, want, fragment) in table {
            let err = PluginSettings::from_raw(None, None, Some(v)).unwrap_err();
            assert_eq!(err, want);
            assert_eq!(err.setting(), "coi_mailbox_root");
            let msg = err.to_string();
            assert!(
                msg.starts_with("coi_mailbox_root: invalid value \""),
                "{msg}"
            );
            assert!(msg.contains(fragment), "{msg}");
            assert!(msg.contains("allowed"), "{msg}");
        }
    }

    #[test]
    fn first_bad_setting_is_reported() {
        let err = PluginSettings::from_raw(raw("maybe"), raw("bad"), raw("/x")).unwrap_err();
        assert_eq!(err.setting(), "coi_default_enabled");
        let err = PluginSettings::from_raw(raw("yes"), raw("bad"), raw("/x")).unwrap_err();
        assert_eq!(err.setting(), "coi_default_message_filter");
        let err = PluginSettings::from_raw(raw("yes"), raw("seen"), raw("/x")).unwrap_err();
        assert_eq!(err.setting(), "coi_mailbox_root");
    }

    #[test]
    fn all_settings_together() {
        let s = PluginSettings::from_raw(raw("Yes"), raw("active"), raw("INBOX.COI")).unwrap();
        assert_eq!(
            s,
            PluginSettings {
                default_enabled: true,
                default_filter: MessageFilter::Active,
                mailbox_root: "INBOX.COI".into(),
            }
        );
    }

    #[test]
    fn sanitize_escapes_and_truncates() {
        assert_eq!(sanitize(b"plain"), "plain");
        assert_eq!(sanitize(b"a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(sanitize(b"\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(sanitize(b"\r\n\0"), "\\r\\n\\u{0}");
        assert_eq!(sanitize(b"\xff"), "\u{fffd}");
        assert_eq!(sanitize(&[b'x'; 64]), "x".repeat(64));
        assert_eq!(sanitize(&[b'x'; 65]), format!("{}...", "x".repeat(64)));
        let huge = vec![b'y'; 1 << 20];
        assert_eq!(sanitize(&huge).len(), 67);
        let multibyte = "é".repeat(100);
        assert_eq!(
            sanitize(multibyte.as_bytes()),
            format!("{}...", "é".repeat(64))
        );
    }

    #[test]
    fn error_values_are_sanitized() {
        let err = PluginSettings::from_raw(Some(b"y\x1b[2Jes\"\n"), None, None).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(msg.contains("y\\u{1b}[2Jes\\\""), "{msg}");
    }
}

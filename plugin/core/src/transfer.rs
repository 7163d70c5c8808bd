//! `doveadm coi export` / `doveadm coi import`: a user's COI state as one
//! JSON document, for moves that carry no METADATA (imapc, imapsync).
//!
//! What this module owns: the document's shape and version, building it
//! from the raw stored values, and turning a document back into the list of
//! writes an import makes. It does not validate the values themselves: the
//! import writes them through the same attribute callbacks as a client's
//! SETMETADATA (config) and as dsync (`push::imported`), so every check
//! lives in one place.
//!
//! ```json
//! {"format":"coi-export","version":1,"user":"alice",
//!  "config":{"enabled":"yes","message-filter":"active"},
//!  "webpush-subscriptions":{"<id>":"<stored JSON, secret included>"},
//!  "devicetokens":{"<key>":"<stored JSON>"}}
//! ```
//!
//! Stored values travel as the exact strings the plugin stored, so an
//! export and re-import leaves them byte for byte the same. The document
//! holds the validation secrets and push endpoints: it is as private as the
//! user's mail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `format` of every document.
pub const FORMAT: &str = "coi-export";
/// The only `version` so far.
pub const VERSION: u32 = 1;
/// Config keys a document may carry.
pub const CONFIG_KEYS: [&str; 2] = ["enabled", "message-filter"];

/// The document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportDocument {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The user it was exported from (informational).
    pub user: String,
    /// Stored config values (absent: NIL, the site default).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Subscription id -> stored value.
    #[serde(default, rename = "webpush-subscriptions")]
    pub subscriptions: BTreeMap<String, String>,
    /// Token key -> stored value.
    #[serde(default)]
    pub devicetokens: BTreeMap<String, String>,
}

/// The raw values of one user, as the shim read them.
#[derive(Debug, Default, Clone)]
pub struct RawState<'a> {
    /// Stored `enabled`.
    pub enabled: Option<&'a str>,
    /// Stored `message-filter`.
    pub message_filter: Option<&'a str>,
    /// (id, stored value) of each subscription.
    pub subscriptions: Vec<(&'a str, &'a str)>,
    /// (key, stored value) of each token.
    pub tokens: Vec<(&'a str, &'a str)>,
}

/// The export of `state` for `user`, one line of JSON.
pub fn export(user: &str, state: &RawState<'_>) -> String {
    let mut config = BTreeMap::new();
    for (name, value) in [("enabled", state.enabled), ("message-filter", state.message_filter)] {
        if let Some(v) = value {
            config.insert(name.to_string(), v.to_string());
        }
    }
    let doc = ExportDocument {
        format: FORMAT.to_string(),
        version: VERSION,
        user: user.to_string(),
        config,
        subscriptions: state.subscriptions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        devicetokens: state.tokens.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

/// One write of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportWrite {
    /// A config key (`enabled`, `message-filter`), set as a client would.
    Config {
        /// The key below `.../coi/config/`.
        name: String,
        /// The value.
        value: String,
    },
    /// A raw entry below `vendor/vendor.dovecot/pvt/coi/`.
    Raw {
        /// `webpush/<id>` or `devicetokens/<key>`.
        name: String,
        /// The stored value.
        value: String,
    },
}

/// The writes a document asks for, config first. Refuses a document that
/// is not one (wrong format or version, unknown fields or config keys,
/// names with `/`, NULs anywhere).
pub fn plan_import(json: &[u8]) -> Result<Vec<ImportWrite>, String> {
    let doc: ExportDocument =
        serde_json::from_slice(json).map_err(|e| format!("not a COI export document: {e}"))?;
    if doc.format != FORMAT || doc.version != VERSION {
        return Err(format!("not a COI export document of version {VERSION} (format {FORMAT:?})"));
    }
    let mut out = Vec::new();
    for (name, value) in &doc.config {
        if !CONFIG_KEYS.contains(&name.as_str()) {
            return Err(format!("unknown config key {name:?} (known: enabled, message-filter)"));
        }
        out.push(ImportWrite::Config { name: name.clone(), value: value.clone() });
    }
    for (prefix, entries) in [("webpush/", &doc.subscriptions), ("devicetokens/", &doc.devicetokens)] {
        for (name, value) in entries {
            if name.is_empty() || name.contains('/') {
                return Err(format!("entry names may not be empty or contain '/' ({prefix})"));
            }
            out.push(ImportWrite::Raw { name: format!("{prefix}{name}"), value: value.clone() });
        }
    }
    let has_nul = |s: &str| s.contains('\0');
    if out.iter().any(|w| match w {
        ImportWrite::Config { name, value } | ImportWrite::Raw { name, value } => has_nul(name) || has_nul(value),
    }) {
        return Err("NUL characters are not allowed".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_values_exactly() {
        let state = RawState {
            enabled: Some("yes"),
            message_filter: None,
            subscriptions: vec![("abcdefghij12", r#"{"public":{"b":1,"a":2},"secret":"s"}"#)],
            tokens: vec![("0123456789abcdef", r#"{"token":"t","seen_unix":1}"#)],
        };
        let doc = export("alice", &state);
        let plan = plan_import(doc.as_bytes()).unwrap();
        assert_eq!(
            plan,
            vec![
                ImportWrite::Config { name: "enabled".into(), value: "yes".into() },
                ImportWrite::Raw {
                    name: "webpush/abcdefghij12".into(),
                    value: r#"{"public":{"b":1,"a":2},"secret":"s"}"#.into()
                },
                ImportWrite::Raw {
                    name: "devicetokens/0123456789abcdef".into(),
                    value: r#"{"token":"t","seen_unix":1}"#.into()
                },
            ]
        );
    }

    #[test]
    fn refusals() {
        assert!(plan_import(b"{}").is_err());
        assert!(plan_import(b"junk").is_err());
        assert!(plan_import(br#"{"format":"coi-export","version":2,"user":"a"}"#).is_err());
        assert!(plan_import(br#"{"format":"coi-export","version":1,"user":"a","extra":1}"#).is_err());
        assert!(plan_import(br#"{"format":"coi-export","version":1,"user":"a","config":{"mailbox-root":"X"}}"#)
            .unwrap_err()
            .contains("unknown config key"));
        assert!(plan_import(br#"{"format":"coi-export","version":1,"user":"a","devicetokens":{"../x":"v"}}"#).is_err());
        assert!(plan_import(br#"{"format":"coi-export","version":1,"user":"a","config":{"enabled":"y\u0000es"}}"#)
            .unwrap_err()
            .contains("NUL"));
        assert_eq!(plan_import(br#"{"format":"coi-export","version":1,"user":"a"}"#), Ok(vec![]));
    }
}

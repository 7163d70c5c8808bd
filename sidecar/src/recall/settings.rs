//! The `[recall]` config section.
//!
//! - `index_retention_days` (default 90, 1..=3650): how long the index
//!   keeps a stored copy, and a finished recall's bookkeeping. A message
//!   older than that can no longer be recalled or reported read.
//!
//! Carrying recalls out and marking read messages needs the doveadm HTTP
//! API (`[dovecot] doveadm_url`); without it requests are counted as
//! `unavailable` and logged.

use serde::Deserialize;

/// Default `index_retention_days`.
pub const DEFAULT_RETENTION_DAYS: u64 = 90;

/// `[recall]` as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawRecall {
    /// See the module docs.
    #[serde(default = "default_retention")]
    pub index_retention_days: u64,
}

fn default_retention() -> u64 {
    DEFAULT_RETENTION_DAYS
}

impl Default for RawRecall {
    fn default() -> RawRecall {
        RawRecall { index_retention_days: DEFAULT_RETENTION_DAYS }
    }
}

/// `[recall]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecallSettings {
    /// Retention in milliseconds.
    pub retention_ms: u64,
}

impl Default for RecallSettings {
    fn default() -> RecallSettings {
        RecallSettings { retention_ms: DEFAULT_RETENTION_DAYS * 86_400_000 }
    }
}

impl RawRecall {
    /// Validates; the error names the key.
    pub fn validate(&self) -> Result<RecallSettings, String> {
        if !(1..=3650).contains(&self.index_retention_days) {
            return Err("recall.index_retention_days must be 1..=3650".into());
        }
        Ok(RecallSettings { retention_ms: self.index_retention_days * 86_400_000 })
    }
}

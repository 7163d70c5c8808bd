//! What the recall module queues: doveadm calls and webhook notices.
//!
//! - [`DoveadmSet`]: set one server METADATA key of one user through the
//!   doveadm HTTP API (`mailboxMetadataSet`), which runs the plugin's
//!   handler for that key inside Dovecot, as that user. Queued on the
//!   endpoint [`DOVEADM_ENDPOINT`] (a colon never appears in a webhook
//!   name), delivered by [`super::sink::DoveadmSetSink`] with retries and
//!   dead letters like every other queue row.
//! - Notices (`super::notice`): queued on the webhook endpoints that want
//!   them.
//!
//! Invariant: job ids are derived from the record that caused them
//! (`<record id>/exec/<user>`, `<record id>/state`, `<record id>/mark`,
//! `<record id>/notice/<endpoint>`... see `ingest`), so a record applied
//! twice never queues a job twice.

use serde::{Deserialize, Serialize};

/// The queue endpoint of doveadm calls.
pub const DOVEADM_ENDPOINT: &str = "recall:doveadm";
/// Its `kind` label in `coi_queue_depth_deliveries`.
pub const DEPTH_KIND: &str = "recall_doveadm";

/// A `mailboxMetadataSet` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoveadmSet {
    /// The Dovecot user.
    pub user: String,
    /// The full key, `/private/...` (server metadata).
    pub key: String,
    /// The value.
    pub value: String,
    /// What the call is for (a bounded metric label): `execute`, `state`
    /// or `mark`.
    pub purpose: String,
}

impl DoveadmSet {
    /// The queued payload.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The doveadm HTTP API request body.
pub fn request_body(job: &DoveadmSet, tag: &str) -> Vec<u8> {
    let body = serde_json::json!([[
        "mailboxMetadataSet",
        {"user": job.user, "mailbox": "", "key": job.key, "value": job.value, "allowEmptyMailboxName": true},
        tag
    ]]);
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_the_command_and_server_metadata() {
        let job = DoveadmSet { user: "bob".into(), key: "/private/k".into(), value: "{}".into(), purpose: "execute".into() };
        let v: serde_json::Value = serde_json::from_slice(&request_body(&job, "t")).unwrap();
        assert_eq!(
            v,
            serde_json::json!([["mailboxMetadataSet",
                {"user": "bob", "mailbox": "", "key": "/private/k", "value": "{}", "allowEmptyMailboxName": true}, "t"]])
        );
        let back: DoveadmSet = serde_json::from_str(&job.to_json()).unwrap();
        assert_eq!(back, job);
    }
}

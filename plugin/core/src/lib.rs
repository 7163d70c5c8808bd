//! `coi-core`: the Dovecot-free heart of the Chat over IMAP plugin.
//!
//! What this crate owns:
//! - [`mod@classify`]: deciding from a handful of header values whether a delivered
//!   message is ordinary mail, a chat, a group chat or a chat read receipt
//!   (DESIGN §3).
//! - [`settings`]: validating the plugin's `coi_*` settings once per user.
//! - [`route`]: combining those settings with the user's COI METADATA into a
//!   per-message routing decision (`$Chat` keyword, filing into `<root>/Chats`).
//! - [`imap_config`], [`folder_lifecycle`]: the IMAP side of COI (config
//!   keys clients set with SETMETADATA; what CREATE/DELETE/RENAME of the
//!   chats folder mean).
//! - [`push`]: Web Push subscriptions and Delta Chat tokens, and the push
//!   record of a delivered message.
//! - [`transfer`]: the document of `doveadm coi export` / `import`.
//! - [`wire`]: the event records and doorbell datagrams shared with
//!   `coi-sidecar` (docs/events.md), and [`spool`]: the plugin's append to
//!   the event spool. These two do file I/O; the invariants below about I/O
//!   hold for the other modules.
//!
//! Invariants that hold for every public function:
//! - pure Rust, no `unsafe`, no FFI, no threads, no I/O;
//! - never panics, whatever bytes come in (inputs are attacker-controlled mail
//!   headers; the property tests and the fuzzer hold us to this);
//! - bounded work per message: header values are looked at through a fixed
//!   window ([`classify::VALUE_SCAN_LIMIT`]), and nothing allocates on the hot
//!   path except the group id of a group chat.
//!
//! Callers: the plugin's FFI layer (`plugin/src/ops.rs`) on Dovecot's delivery
//! path, plus this crate's tests, benchmarks and the fuzz targets.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
pub mod event_settings;
pub mod fast_notify;
pub mod folder_lifecycle;
pub mod imap_config;
pub mod push;
pub mod recall;
pub mod route;
pub mod settings;
pub mod spool;
pub mod transfer;
pub mod wire;

pub use classify::{
    classify, classify_header_block, extract_headers, ChatHeaders, Kind, KindCode, VALUE_SCAN_LIMIT,
};
pub use route::{chats_folder, decide, resolve_policy, Decision, Policy, Source, UserMetadata};
pub use settings::{MessageFilter, PluginSettings, SettingsError};

//! Routing: what happens to a classified message for a given user.
//!
//! Two steps, both pure:
//! 1. [`resolve_policy`] merges the user's COI METADATA (`enabled`,
//!    `message-filter`) over the validated plugin settings, remembering where
//!    each value came from for the debug log.
//! 2. [`decide`] turns a message kind and that policy into a [`Decision`]:
//!    whether to add `$Chat` and whether to file into `<root>/Chats`
//!    ([`chats_folder`]).
//!
//! Invariants: no I/O, no panics; a METADATA value we do not understand falls
//! back to the configured default rather than failing delivery (fail open,
//! STYLE §4).
//!
//! Callers: the plugin's `decide` op, once per delivered chat message.

mod decision;
mod folder;
mod policy;

pub use decision::{decide, Decision};
pub use folder::chats_folder;
pub use policy::{resolve_policy, Policy, Source, UserMetadata};

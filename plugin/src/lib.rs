//! The coi Dovecot plugin (`lib95_coi_plugin.so`).
//!
//! Dovecot loads this cdylib into lmtp, dovecot-lda, imap and doveadm. The
//! C shim (`plugin/shim/`) owns every contact with Dovecot's structs; this
//! crate exports the loader symbols, hands the shim a table of callbacks,
//! and answers those callbacks with the pure logic of `coi-core`.
//!
//! Unsafe code is confined to the modules that touch the C boundary:
//! `ffi`, `exports`, `ops` (with `imap_ops`, `push_ops`, `transfer_ops`),
//! `guard` and `log`. Every callback runs inside
//! `guard::call`, so a panic never unwinds into Dovecot.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![warn(missing_docs)]

mod events;
mod exports;
mod ffi;
mod guard;
mod imap_ops;
mod log;
mod ops;
mod push_ops;
mod recall_ops;
mod transfer_ops;

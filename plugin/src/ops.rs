//! The callbacks the C shim calls (`struct coi_rs_ops`), each a thin
//! translation between C types and `coi-core`:
//!
//! - `user_new` / `user_free`: validate a user's plugin settings once and
//!   keep them in an owned handle;
//! - `classify`: header fields in, message kind out;
//! - `decide`: kind + the user's METADATA in, what to do with the message
//!   out, logged at debug level (`mail_debug = yes`) with the reason.
//!
//! All run on Dovecot's ioloop thread inside [`guard::call`]; pointers are
//! borrowed for one call, and Rust copies what it keeps.

use std::ffi::c_void;

use coi_core::classify::{classify as classify_headers, ChatHeaders, Kind, KindCode};
use coi_core::route::{chats_folder, decide as decide_route, resolve_policy, Source, UserMetadata};
use coi_core::settings::PluginSettings;

use crate::ffi;
use crate::guard;
use crate::log::LogEvent;

/// The table handed to the shim in `coi_plugin_init`.
pub(crate) static OPS: ffi::coi_rs_ops = ffi::coi_rs_ops {
    abi: ffi::COI_SHIM_ABI,
    user_new: Some(user_new),
    user_free: Some(user_free),
    classify: Some(classify),
    decide: Some(decide),
};

/// What the plugin keeps per mail user: validated settings and the chats
/// folder name for the user's namespace separator.
struct UserHandle {
    settings: PluginSettings,
    chats_folder: Option<(u8, String)>,
}

impl UserHandle {
    fn chats_folder(&mut self, separator: u8) -> &str {
        let stale = !matches!(&self.chats_folder, Some((sep, _)) if *sep == separator);
        if stale {
            let name = chats_folder(&self.settings.mailbox_root, char::from(separator));
            self.chats_folder = Some((separator, name));
        }
        self.chats_folder.as_ref().map(|(_, name)| name.as_str()).unwrap_or_default()
    }
}

unsafe extern "C" fn user_new(log_event: *mut c_void, settings: *const ffi::coi_user_settings) -> *mut c_void {
    let event = LogEvent::from_raw(log_event);
    guard::call("user_new", std::ptr::null_mut(), || {
        // SAFETY: the shim passes a valid settings struct for this call.
        let Some(settings) = (unsafe { settings.as_ref() }) else {
            return std::ptr::null_mut();
        };
        // SAFETY: each field is NULL or a NUL-free string from
        // mail_user_plugin_getenv(), alive during this call.
        let parsed = unsafe {
            PluginSettings::from_raw(
                settings.default_enabled.as_option(),
                settings.default_message_filter.as_option(),
                settings.mailbox_root.as_option(),
            )
        };
        match parsed {
            Ok(settings) => Box::into_raw(Box::new(UserHandle { settings, chats_folder: None })).cast(),
            Err(err) => {
                event.error(format_args!("invalid plugin settings: {err}; COI is inactive for this user"));
                std::ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn user_free(user: *mut c_void) {
    guard::call("user_free", (), || {
        if !user.is_null() {
            // SAFETY: `user` came from Box::into_raw in user_new and the
            // shim frees it exactly once.
            drop(unsafe { Box::from_raw(user.cast::<UserHandle>()) });
        }
    })
}

unsafe extern "C" fn classify(headers: *const ffi::coi_message_headers, kind_r: *mut i32) -> i32 {
    guard::call("classify", -1, || {
        // SAFETY: the shim passes valid pointers for this call.
        let (Some(headers), Some(kind_r)) = (unsafe { headers.as_ref() }, unsafe { kind_r.as_mut() }) else {
            return -1;
        };
        // SAFETY: every field is NULL or header bytes alive during the call.
        let view = unsafe {
            ChatHeaders {
                chat_version: headers.chat_version.as_option(),
                message_id: headers.message_id.as_option(),
                references: headers.references.as_option(),
                content_type: headers.content_type.as_option(),
            }
        };
        *kind_r = classify_headers(&view).code();
        0
    })
}

unsafe extern "C" fn decide(
    user: *mut c_void,
    log_event: *mut c_void,
    kind: i32,
    metadata: *const ffi::coi_user_metadata,
    separator: u8,
    decision_r: *mut ffi::coi_delivery_decision,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("decide", -1, || {
        // SAFETY: `user` is a live handle from user_new (the shim checks
        // for NULL); nothing else aliases it during this call.
        let (Some(handle), Some(decision_r)) =
            (unsafe { user.cast::<UserHandle>().as_mut() }, unsafe { decision_r.as_mut() })
        else {
            return -1;
        };
        let Some(kind) = Kind::from_code(kind) else {
            event.error(format_args!("shim passed unknown message kind {kind}"));
            return -1;
        };
        *decision_r = ffi::coi_delivery_decision {
            kind: kind_code(kind),
            add_chat_keyword: 0,
            file_into_chats: 0,
            chats_folder: ffi::coi_bytes::absent(),
        };
        if !kind.is_chat() {
            event.debug(format_args!("kind={}: delivering as usual", kind.name()));
            return 0;
        }
        // SAFETY: NULL (metadata unreadable) or a struct whose fields are
        // NULL or bytes alive during this call.
        let Some(metadata) = (unsafe { metadata.as_ref() }) else {
            event.debug(format_args!("kind={}: METADATA unreadable, delivering as usual", kind.name()));
            return 0;
        };
        // SAFETY: as above.
        let metadata = unsafe {
            UserMetadata { enabled: metadata.enabled.as_option(), message_filter: metadata.message_filter.as_option() }
        };
        let policy = resolve_policy(&handle.settings, &metadata);
        let decision = decide_route(kind, &policy);
        decision_r.add_chat_keyword = i32::from(decision.add_chat_keyword);
        let folder = if decision.file_into_chats {
            let folder = handle.chats_folder(separator);
            decision_r.file_into_chats = 1;
            decision_r.chats_folder = ffi::coi_bytes::borrowed(folder.as_bytes());
            folder
        } else {
            "default mailbox"
        };
        event.debug(format_args!(
            "kind={} enabled={} ({}) message-filter={} ({}): target={} keyword={}: {}",
            kind.name(),
            if policy.enabled { "yes" } else { "no" },
            source_name(policy.enabled_source),
            policy.filter.name(),
            source_name(policy.filter_source),
            folder,
            if decision.add_chat_keyword { "$Chat" } else { "none" },
            decision.reason,
        ));
        0
    })
}

fn kind_code(kind: KindCode) -> i32 {
    match kind {
        KindCode::NotChat => ffi::COI_KIND_NOT_CHAT as i32,
        KindCode::Chat => ffi::COI_KIND_CHAT as i32,
        KindCode::GroupChat => ffi::COI_KIND_GROUP_CHAT as i32,
        KindCode::ReadReceipt => ffi::COI_KIND_READ_RECEIPT as i32,
    }
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Metadata => "user METADATA",
        Source::Default => "plugin default",
    }
}

//! The IMAP-side callbacks of `struct coi_rs_ops`: capabilities, the COI
//! config keys clients read and set with METADATA, what CREATE/DELETE/
//! RENAME of the chats folder mean, and seen mode (a read chat moves from
//! INBOX to the chats folder; its event says so).
//!
//! Each is a thin translation to `coi-core` (imap_config, folder_lifecycle,
//! route); pointers are borrowed for one call, and anything handed back
//! lives in the handle's scratch buffers until the next call.

use std::ffi::c_void;

use coi_core::classify::{verdict as classify_verdict, Kind};
use coi_core::folder_lifecycle::{folder_action, FolderAction, FolderOp};
use coi_core::imap_config::{check_value, default_value, ConfigEffect, ConfigKey};
use coi_core::route::{resolve_policy, UserMetadata};
use coi_core::settings::MessageFilter;
use coi_core::wire::{new_event_id, MessageEventV1, MessageOrigin, Record};

use crate::events::now_ms;
use crate::ffi;
use crate::guard;
use crate::log::LogEvent;
use crate::ops::{chat_headers, handle, lossy};

pub(crate) unsafe extern "C" fn capabilities(user: *mut c_void) -> u32 {
    guard::call("capabilities", 0, || {
        // SAFETY: the shim passes a live handle.
        let Some(handle) = (unsafe { handle(user) }) else {
            return 0;
        };
        let mut caps = ffi::COI_CAPABILITY_COI;
        if let Some(push) = &handle.push {
            // WEBPUSH only while the sidecar's key is there to be served.
            if std::fs::File::open(&push.vapid_key).is_ok() {
                caps |= ffi::COI_CAPABILITY_WEBPUSH;
            }
            if push.deltachat {
                caps |= ffi::COI_CAPABILITY_XDELTAPUSH;
            }
        }
        caps
    })
}

pub(crate) unsafe extern "C" fn config_get(user: *mut c_void, key: i32, value_r: *mut ffi::coi_bytes) -> i32 {
    guard::call("config_get", -1, || {
        // SAFETY: the shim passes a live handle and a valid out-pointer.
        let (Some(handle), Some(value_r), Some(key)) =
            (unsafe { (handle(user), value_r.as_mut(), ConfigKey::from_code(key)) })
        else {
            return -1;
        };
        match default_value(key, &handle.settings) {
            Some(value) => {
                *value_r = handle.lend(0, value);
                1
            }
            None => 0,
        }
    })
}

pub(crate) unsafe extern "C" fn config_check(
    user: *mut c_void,
    key: i32,
    value: *const ffi::coi_bytes,
    error_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("config_check", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(value), Some(error_r), Some(key)) =
            (unsafe { (handle(user), value.as_ref(), error_r.as_mut(), ConfigKey::from_code(key)) })
        else {
            return -1;
        };
        // SAFETY: the value bytes are alive during this call.
        let value = unsafe { value.as_option() };
        match check_value(key, value) {
            Ok(ConfigEffect::TurnsOn) => 1,
            Ok(ConfigEffect::Stored) => 0,
            Err(message) => {
                *error_r = handle.lend(0, message);
                -1
            }
        }
    })
}

pub(crate) unsafe extern "C" fn folder_names(
    user: *mut c_void,
    separator: u8,
    chats_r: *mut ffi::coi_bytes,
    contacts_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("folder_names", -1, || {
        // SAFETY: the shim passes a live handle and valid out-pointers.
        let (Some(handle), Some(chats_r), Some(contacts_r)) =
            (unsafe { (handle(user), chats_r.as_mut(), contacts_r.as_mut()) })
        else {
            return -1;
        };
        let sep = char::from(separator);
        let chats = handle.chats_folder(separator).to_string();
        let contacts = format!("{}{sep}Contacts", handle.settings.mailbox_root);
        *chats_r = handle.lend(0, chats);
        *contacts_r = handle.lend(1, contacts);
        0
    })
}

pub(crate) unsafe extern "C" fn folder_change(
    user: *mut c_void,
    log_event: *mut c_void,
    change: *const ffi::coi_folder_change,
    error_r: *mut ffi::coi_bytes,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("folder_change", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(change), Some(error_r)) =
            (unsafe { (handle(user), change.as_ref(), error_r.as_mut()) })
        else {
            return -1;
        };
        // SAFETY: the names are alive during this call.
        let (name, new_name, trash) = unsafe {
            (
                lossy(change.name.as_option()).unwrap_or_default(),
                lossy(change.new_name.as_option()).unwrap_or_default(),
                lossy(change.trash_name.as_option()).unwrap_or_else(|| "Trash".to_string()),
            )
        };
        let op = match change.op as u32 {
            ffi::COI_FOLDER_CREATE => FolderOp::Create(&name),
            ffi::COI_FOLDER_DELETE => FolderOp::Delete(&name),
            ffi::COI_FOLDER_RENAME => FolderOp::Rename { from: &name, to: &new_name },
            _ => return -1,
        };
        let chats = handle.chats_folder(change.separator).to_string();
        let action = folder_action(op, &chats, &trash, char::from(change.separator));
        let verb = match op {
            FolderOp::Create(_) => "CREATE",
            FolderOp::Delete(_) => "DELETE",
            FolderOp::Rename { .. } => "RENAME",
        };
        match &action {
            FolderAction::None => {}
            FolderAction::Enable => event.info(format_args!("{verb} {name}: COI enabled")),
            FolderAction::Disable => event.info(format_args!("{verb} {name}: COI disabled")),
            FolderAction::Refuse(message) => {
                event.info(format_args!("{verb} {name} refused: {message}"));
                *error_r = handle.lend(0, message.clone());
            }
        }
        action.code()
    })
}

pub(crate) unsafe extern "C" fn seen_moves(user: *mut c_void, metadata: *const ffi::coi_user_metadata) -> i32 {
    guard::call("seen_moves", 0, || {
        // SAFETY: the shim passes a live handle; metadata is NULL or valid.
        let (Some(handle), Some(metadata)) = (unsafe { (handle(user), metadata.as_ref()) }) else {
            return 0;
        };
        // SAFETY: the fields are NULL or bytes alive during this call.
        let metadata = unsafe {
            UserMetadata { enabled: metadata.enabled.as_option(), message_filter: metadata.message_filter.as_option() }
        };
        let policy = resolve_policy(&handle.settings, &metadata);
        i32::from(policy.enabled && policy.filter == MessageFilter::Seen)
    })
}

pub(crate) unsafe extern "C" fn message_moved(
    user: *mut c_void,
    log_event: *mut c_void,
    headers: *const ffi::coi_message_headers,
    facts: *const ffi::coi_delivery_facts,
    message: *const ffi::coi_stored_message,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("message_moved", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(headers), Some(facts), Some(message)) =
            (unsafe { (handle(user), headers.as_ref(), facts.as_ref(), message.as_ref()) })
        else {
            return -1;
        };
        let Some(sink) = &handle.events else {
            return 0;
        };
        // SAFETY: every field is NULL or bytes alive during the call.
        let (verdict, folder, from, message_id, subject) = unsafe {
            let view = chat_headers(headers);
            (
                classify_verdict(&view),
                lossy(message.folder.as_option()).unwrap_or_default(),
                lossy(facts.from.as_option()),
                lossy(facts.message_id.as_option()),
                lossy(facts.subject.as_option()),
            )
        };
        // Seen mode moves only messages carrying $Chat, so a message whose
        // headers no longer classify (edited by hand?) is still a chat.
        let headers_protected = verdict.headers_protected();
        let kind = if verdict.kind == Kind::NotChat { Kind::Chat } else { verdict.kind };
        let record = Record::Message(MessageEventV1 {
            id: new_event_id(),
            ts_ms: now_ms(),
            user: handle.username.clone(),
            folder,
            uid: message.uid,
            uidvalidity: message.uid_validity,
            kind: kind.name().to_string(),
            group_id: kind.group_id().map(str::to_string),
            chat_keyword: true,
            routed: true,
            from,
            message_id,
            subject,
            pid: std::process::id(),
            dropped_before: 0,
            origin: MessageOrigin::SeenMove,
            headers_protected,
        });
        if sink.emit(event, record) {
            0
        } else {
            -1
        }
    })
}

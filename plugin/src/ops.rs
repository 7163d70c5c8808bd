//! The callbacks the C shim calls (`struct coi_rs_ops`), each a thin
//! translation between C types and `coi-core`:
//!
//! - `user_new` / `user_free`: validate a user's plugin settings once and
//!   keep them in an owned handle;
//! - `classify`: header fields in, message kind out; starts the handle's
//!   record of the delivery in progress;
//! - `decide`: the user's METADATA in, what to do with the message out,
//!   logged at debug level (`mail_debug = yes`) with the reason;
//! - `fallback`: the shim could not carry a decision out (counted);
//! - `message_stored`: a delivered copy was committed: emit its event.
//!
//! All run on Dovecot's ioloop thread inside [`guard::call`]; pointers are
//! borrowed for one call, and Rust copies what it keeps.

use std::ffi::c_void;

use coi_core::classify::{verdict as classify_verdict, ChatHeaders, Kind, KindCode};
use coi_core::event_settings::EventSettings;
use coi_core::fast_notify::FastNotify;
use coi_core::push::settings::PushSettings;
use coi_core::recall::settings::RecallSettings;
use coi_core::route::{chats_folder, decide as decide_route, resolve_policy, Source, UserMetadata};
use coi_core::settings::PluginSettings;
use coi_core::wire::{new_event_id, FallbackEventV1, FallbackReason, MessageEventV1, MessageOrigin, Record};

use crate::events::{now_ms, EventSink};
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
    fallback: Some(fallback),
    notify_scope: Some(notify_scope),
    wants_events: Some(wants_events),
    message_stored: Some(message_stored),
    capabilities: Some(crate::imap_ops::capabilities),
    config_get: Some(crate::imap_ops::config_get),
    config_check: Some(crate::imap_ops::config_check),
    folder_names: Some(crate::imap_ops::folder_names),
    folder_change: Some(crate::imap_ops::folder_change),
    seen_moves: Some(crate::imap_ops::seen_moves),
    message_moved: Some(crate::imap_ops::message_moved),
    webpush_check_id: Some(crate::push_ops::webpush_check_id),
    webpush_subscribe: Some(crate::push_ops::webpush_subscribe),
    webpush_validate: Some(crate::push_ops::webpush_validate),
    webpush_view: Some(crate::push_ops::webpush_view),
    vapid_key: Some(crate::push_ops::vapid_key),
    deltachat_max_smtp_recipients: Some(crate::push_ops::deltachat_max_smtp_recipients),
    devicetoken_set: Some(crate::push_ops::devicetoken_set),
    devicetoken_view: Some(crate::push_ops::devicetoken_view),
    wants_push: Some(crate::push_ops::wants_push),
    push: Some(crate::push_ops::push),
    recall_needs: Some(crate::recall_ops::recall_needs),
    trust_check: Some(crate::recall_ops::trust_check),
    mdn_seen: Some(crate::recall_ops::mdn_seen),
    recall_request: Some(crate::recall_ops::recall_request),
    recall_state_check: Some(crate::recall_ops::recall_state_check),
    recall_check_id: Some(crate::recall_ops::recall_check_id),
    recall_exec_begin: Some(crate::recall_ops::recall_exec_begin),
    recall_exec_copy: Some(crate::recall_ops::recall_exec_copy),
    recall_exec_matches: Some(crate::recall_ops::recall_exec_matches),
    recall_exec_result: Some(crate::recall_ops::recall_exec_result),
    recall_exec_finish: Some(crate::recall_ops::recall_exec_finish),
    read_consents: Some(crate::recall_ops::read_consents),
    read_consent_check: Some(crate::recall_ops::read_consent_check),
    read_consent_default: Some(crate::recall_ops::read_consent_default),
    message_read: Some(crate::recall_ops::message_read),
    read_mark_parse: Some(crate::recall_ops::read_mark_parse),
    read_push_prepare: Some(crate::recall_ops::read_push_prepare),
    stored_check: Some(crate::push_ops::stored_check),
    export_document: Some(crate::transfer_ops::export_document),
    import_plan: Some(crate::transfer_ops::import_plan),
};

/// What the plugin keeps per mail user.
pub(crate) struct UserHandle {
    pub(crate) username: String,
    pub(crate) settings: PluginSettings,
    fast_notify: FastNotify,
    pub(crate) events: Option<EventSink>,
    /// `None` when the push settings are invalid (logged at user_new).
    pub(crate) push: Option<PushSettings>,
    pub(crate) chats_folder: Option<(u8, String)>,
    pub(crate) delivery: Delivery,
    /// `None` when the recall/read-status settings are invalid (logged at
    /// user_new): both features are then off for the user.
    pub(crate) recall: Option<RecallSettings>,
    /// A recall being carried out in this account (doveadm).
    pub(crate) exec: Option<crate::recall_ops::Execution>,
    /// Out-parameters handed to the shim live here until the next call.
    scratch: [Vec<u8>; 2],
}

/// The delivery in progress for this user (lmtp and lda deliver one
/// message to one user at a time).
#[derive(Default)]
pub(crate) struct Delivery {
    pub(crate) kind: Option<Kind>,
    /// The classifier matched the header-protected Delta Chat form.
    pub(crate) headers_protected: bool,
    pub(crate) message_id: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) from: Option<String>,
    add_chat_keyword: bool,
    /// The shim made the chats folder the default mailbox.
    routed: bool,
    /// A push record was written for this delivery (Sieve may store
    /// several copies; the user hears about the message once).
    pub(crate) pushed: bool,
    /// Sender trust and MDN of this delivery (recall, read status).
    pub(crate) recall: crate::recall_ops::DeliveryRecall,
    /// A read-status push (recall_ops::read_push_prepare): Web Push only.
    pub(crate) webpush_only: bool,
}

impl UserHandle {
    /// Keeps `bytes` in scratch slot `slot` (0 or 1) and lends them to C
    /// until the next call on this handle.
    pub(crate) fn lend(&mut self, slot: usize, bytes: impl Into<Vec<u8>>) -> ffi::coi_bytes {
        let buf = &mut self.scratch[slot.min(1)];
        *buf = bytes.into();
        ffi::coi_bytes::borrowed(buf)
    }

    pub(crate) fn chats_folder(&mut self, separator: u8) -> &str {
        let stale = !matches!(&self.chats_folder, Some((sep, _)) if *sep == separator);
        if stale {
            let name = chats_folder(&self.settings.mailbox_root, char::from(separator));
            self.chats_folder = Some((separator, name));
        }
        self.chats_folder.as_ref().map(|(_, name)| name.as_str()).unwrap_or_default()
    }

    fn emit_fallback(&self, log: LogEvent, reason: FallbackReason) {
        if let Some(sink) = &self.events {
            let record = Record::Fallback(FallbackEventV1 {
                id: new_event_id(),
                ts_ms: now_ms(),
                reason,
                pid: std::process::id(),
                dropped_before: 0,
            });
            sink.emit(log, record);
        }
    }
}

pub(crate) fn lossy(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

unsafe extern "C" fn user_new(log_event: *mut c_void, settings: *const ffi::coi_user_settings) -> *mut c_void {
    let event = LogEvent::from_raw(log_event);
    guard::call("user_new", std::ptr::null_mut(), || {
        // SAFETY: the shim passes a valid settings struct for this call.
        let Some(raw) = (unsafe { settings.as_ref() }) else {
            return std::ptr::null_mut();
        };
        // SAFETY: each field is NULL or a string from Dovecot, alive during
        // this call.
        let push = unsafe {
            PushSettings::from_raw(
                raw.webpush_vapid_key.as_option(),
                raw.webpush_subscription_limit.as_option(),
                raw.webpush_validation_timeout.as_option(),
                raw.deltachat_push.as_option(),
                raw.webpush_allow_private_endpoints.as_option(),
            )
            .and_then(|p| p.with_max_smtp_recipients(raw.deltachat_max_smtp_recipients.as_option()))
        };
        // SAFETY: as above.
        let (username, routing, events, fast_notify) = unsafe {
            (
                lossy(raw.username.as_option()).unwrap_or_default(),
                PluginSettings::from_raw(
                    raw.default_enabled.as_option(),
                    raw.default_message_filter.as_option(),
                    raw.mailbox_root.as_option(),
                ),
                EventSettings::from_raw(
                    raw.spool_path.as_option(),
                    raw.spool_max_size.as_option(),
                    raw.sidecar_socket.as_option(),
                ),
                FastNotify::from_raw(raw.fast_notify.as_option()),
            )
        };
        let settings = match routing {
            Ok(settings) => settings,
            Err(err) => {
                event.error(format_args!("invalid plugin settings: {err}; COI is inactive for this user"));
                return std::ptr::null_mut();
            }
        };
        let events = match events {
            Ok(events) => EventSink::open(&events),
            Err(err) => {
                event.error(format_args!("invalid plugin settings: {err}; no events for this user"));
                None
            }
        };
        let fast_notify = fast_notify.unwrap_or_else(|err| {
            event.error(format_args!("invalid plugin settings: {err}; using stock change notifications"));
            FastNotify::No
        });
        let push = push
            .inspect_err(|err| event.error(format_args!("invalid plugin settings: {err}; no push for this user")))
            .ok();
        // SAFETY: each field is NULL or a string from Dovecot, alive during
        // this call.
        let recall = unsafe {
            RecallSettings::from_raw(
                raw.recall.as_option(),
                raw.sender_trust.as_option(),
                raw.read_status.as_option(),
                raw.default_read_status.as_option(),
            )
        }
        .inspect_err(|err| {
            event.error(format_args!("invalid plugin settings: {err}; no recall or read status for this user"))
        })
        .ok();
        let handle = UserHandle {
            username,
            settings,
            fast_notify,
            events,
            push,
            chats_folder: None,
            delivery: Delivery::default(),
            recall,
            exec: None,
            scratch: [Vec::new(), Vec::new()],
        };
        Box::into_raw(Box::new(handle)).cast()
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

/// # Safety
/// `user` must be NULL or a live handle from `user_new` that nothing else
/// borrows during the callback.
pub(crate) unsafe fn handle<'a>(user: *mut c_void) -> Option<&'a mut UserHandle> {
    // SAFETY: guaranteed by the caller.
    unsafe { user.cast::<UserHandle>().as_mut() }
}

/// The classifier's view of the shim's header fields.
///
/// # Safety
/// Every field of `headers` must be NULL or bytes alive for `'a`.
pub(crate) unsafe fn chat_headers(headers: &ffi::coi_message_headers) -> ChatHeaders<'_> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        ChatHeaders {
            chat_version: headers.chat_version.as_option(),
            message_id: headers.message_id.as_option(),
            references: headers.references.as_option(),
            content_type: headers.content_type.as_option(),
            from: headers.from.as_option(),
            to: headers.to.as_option(),
            subject: headers.subject.as_option(),
        }
    }
}

unsafe extern "C" fn classify(
    user: *mut c_void,
    headers: *const ffi::coi_message_headers,
    facts: *const ffi::coi_delivery_facts,
    kind_r: *mut i32,
) -> i32 {
    guard::call("classify", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers for
        // this call.
        let (Some(handle), Some(headers), Some(facts), Some(kind_r)) =
            (unsafe { (handle(user), headers.as_ref(), facts.as_ref(), kind_r.as_mut()) })
        else {
            return -1;
        };
        // SAFETY: every field is NULL or bytes alive during the call.
        let view = unsafe { chat_headers(headers) };
        let verdict = classify_verdict(&view);
        *kind_r = verdict.kind.code();
        handle.delivery = Delivery {
            headers_protected: verdict.headers_protected(),
            kind: Some(verdict.kind),
            ..Delivery::default()
        };
        // Only an event needs these; without a spool, copying them would be
        // three allocations per delivery for nothing.
        if handle.events.is_some() {
            // SAFETY: as above.
            unsafe {
                handle.delivery.message_id = lossy(facts.message_id.as_option());
                handle.delivery.subject = lossy(facts.subject.as_option());
                handle.delivery.from = lossy(facts.from.as_option());
            }
        }
        0
    })
}

unsafe extern "C" fn decide(
    user: *mut c_void,
    log_event: *mut c_void,
    metadata: *const ffi::coi_user_metadata,
    separator: u8,
    decision_r: *mut ffi::coi_delivery_decision,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("decide", -1, || {
        // SAFETY: the shim passes a live handle and a valid out-pointer.
        let (Some(handle), Some(decision_r)) = (unsafe { (handle(user), decision_r.as_mut()) }) else {
            return -1;
        };
        let kind = handle.delivery.kind.as_ref().map(KindCode::from).unwrap_or(KindCode::NotChat);
        *decision_r = ffi::coi_delivery_decision {
            kind: kind.code(),
            add_chat_keyword: 0,
            file_into_chats: 0,
            chats_folder: ffi::coi_bytes::absent(),
        };
        if !kind.is_chat() {
            event.debug(format_args!("kind={}: delivering as usual", kind.name()));
            return 0;
        }
        // SAFETY: NULL (METADATA unreadable) or a struct whose fields are
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
        handle.delivery.add_chat_keyword = decision.add_chat_keyword;
        handle.delivery.routed = decision.file_into_chats;
        let protected = handle.delivery.headers_protected;
        let target = if decision.file_into_chats {
            let folder = handle.chats_folder(separator);
            decision_r.file_into_chats = 1;
            // The handle owns the name until user_free; the shim copies it.
            decision_r.chats_folder = ffi::coi_bytes::borrowed(folder.as_bytes());
            folder
        } else {
            "default mailbox"
        };
        event.debug(format_args!(
            "kind={}{} enabled={} ({}) message-filter={} ({}): target={} keyword={}: {}",
            kind.name(),
            if protected { " (headers protected)" } else { "" },
            if policy.enabled { "yes" } else { "no" },
            source_name(policy.enabled_source),
            policy.filter.name(),
            source_name(policy.filter_source),
            target,
            if decision.add_chat_keyword { "$Chat" } else { "none" },
            decision.reason,
        ));
        0
    })
}

unsafe extern "C" fn fallback(user: *mut c_void, reason: i32) {
    guard::call("fallback", (), || {
        // SAFETY: the shim passes a live handle.
        let Some(handle) = (unsafe { handle(user) }) else {
            return;
        };
        let reason = match reason as u32 {
            ffi::COI_FALLBACK_HEADERS_UNREADABLE => FallbackReason::HeadersUnreadable,
            ffi::COI_FALLBACK_METADATA_UNREADABLE => FallbackReason::MetadataUnreadable,
            ffi::COI_FALLBACK_FOLDER_UNAVAILABLE => {
                handle.delivery.routed = false;
                FallbackReason::FolderUnavailable
            }
            _ => FallbackReason::InternalError,
        };
        handle.emit_fallback(LogEvent::process(), reason);
    })
}

unsafe extern "C" fn notify_scope(
    user: *mut c_void,
    log_event: *mut c_void,
    folder: *const ffi::coi_bytes,
    separator: u8,
    metadata: *const ffi::coi_user_metadata,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("notify_scope", 0, || {
        // SAFETY: the shim passes a live handle and a valid folder slice.
        let (Some(handle), Some(folder)) = (unsafe { (handle(user), folder.as_ref()) }) else {
            return 0;
        };
        // SAFETY: the folder bytes and the metadata fields are alive
        // during this call.
        let (folder, metadata) = unsafe {
            (
                lossy(folder.as_option()).unwrap_or_default(),
                metadata.as_ref().map(|m| UserMetadata {
                    enabled: m.enabled.as_option(),
                    message_filter: m.message_filter.as_option(),
                }),
            )
        };
        let policy = metadata.map(|m| resolve_policy(&handle.settings, &m));
        let mode = handle.fast_notify;
        let applies = mode.applies(&folder, handle.chats_folder(separator), policy.as_ref());
        event.debug(format_args!("IDLE on {folder}: fast notifications {}", if applies { "on" } else { "off" }));
        i32::from(applies)
    })
}

unsafe extern "C" fn wants_events(user: *mut c_void) -> i32 {
    guard::call("wants_events", 0, || {
        // SAFETY: the shim passes a live handle.
        let wants = unsafe { handle(user) }.is_some_and(|handle| handle.events.is_some());
        i32::from(wants)
    })
}

unsafe extern "C" fn message_stored(
    user: *mut c_void,
    log_event: *mut c_void,
    message: *const ffi::coi_stored_message,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("message_stored", -1, || {
        // SAFETY: the shim passes a live handle and a valid message.
        let (Some(handle), Some(message)) = (unsafe { (handle(user), message.as_ref()) }) else {
            return -1;
        };
        let Some(sink) = &handle.events else {
            return 0;
        };
        // SAFETY: the folder name is alive during this call.
        let folder = unsafe { lossy(message.folder.as_option()) }.unwrap_or_default();
        let folder_name = folder.clone();
        let delivery = &handle.delivery;
        let kind = delivery.kind.clone().unwrap_or(Kind::NotChat);
        let record = Record::Message(MessageEventV1 {
            id: new_event_id(),
            ts_ms: now_ms(),
            user: handle.username.clone(),
            // routed into the chats folder, not a copy Sieve filed elsewhere
            routed: delivery.routed
                && handle.chats_folder.as_ref().is_some_and(|(_, chats)| *chats == folder),
            folder,
            uid: message.uid,
            uidvalidity: message.uid_validity,
            kind: kind.name().to_string(),
            group_id: kind.group_id().map(str::to_string),
            chat_keyword: delivery.add_chat_keyword,
            from: delivery.from.clone(),
            message_id: delivery.message_id.clone(),
            subject: delivery.subject.clone(),
            pid: std::process::id(),
            dropped_before: 0,
            origin: MessageOrigin::Delivery,
            headers_protected: delivery.headers_protected,
        });
        let stored = sink.emit(event, record);
        crate::recall_ops::after_stored(handle, event, message, &folder_name);
        if stored {
            0
        } else {
            -1
        }
    })
}

pub(crate) fn source_name(source: Source) -> &'static str {
    match source {
        Source::Metadata => "user METADATA",
        Source::Default => "plugin default",
    }
}

//! The recall and read-status callbacks of `struct coi_rs_ops`
//! (docs/recall.md): the sender trust check and MDN reading at delivery,
//! the sender's recall request over IMAP, carrying a recall out in a
//! recipient's account (inside doveadm), read-status consent, and the
//! `read` event when a consenting user first reads a message.
//!
//! Each is a thin translation to `coi_core::recall`; the records they
//! write are `local_copy`, `mdn`, `recall_request`, `recall_outcome` and
//! `read` (docs/events.md). Pointers are borrowed for one call; anything
//! handed back lives in the handle's scratch buffers until the next call.

use std::ffi::c_void;

use coi_core::recall::exec::{CopyOutcome, ExecRequest};
use coi_core::recall::mdn::{self, Mdn};
use coi_core::recall::read::{check_consent_value, consents, ReadMark};
use coi_core::recall::request::{
    check_request_id, message_id_from_header, normalize_message_id, RecallState,
};
use coi_core::recall::settings::SenderTrust;
use coi_core::recall::trust;
use coi_core::wire::{
    new_event_id, CopyResultV1, LocalCopyV1, MdnV1, MessageReadV1, RecallOutcomeV1, RecallRequestV1, Record,
};

use crate::events::now_ms;
use crate::ffi;
use crate::guard;
use crate::log::LogEvent;
use crate::ops::{handle, lossy, Delivery, UserHandle};
use coi_core::classify::Kind;

/// What recall and read status remember about the delivery in progress.
#[derive(Default)]
pub(crate) struct DeliveryRecall {
    /// The authenticated local sender, when the trust check passed.
    trusted_sender: Option<String>,
    /// A displayed MDN and who sent it, until its event is written.
    mdn: Option<(Mdn, Option<String>)>,
}

/// A recall being carried out in this (recipient's) account.
pub(crate) struct Execution {
    request: ExecRequest,
    outcomes: Vec<Option<CopyOutcome>>,
}

fn emit(handle: &UserHandle, event: LogEvent, record: Record) -> bool {
    handle.events.as_ref().is_some_and(|sink| sink.emit(event, record))
}

/// Called by `message_stored` after the copy's message record: the
/// `local_copy` record when the sender is trusted, and (once per
/// delivery) the `mdn` record.
pub(crate) fn after_stored(handle: &mut UserHandle, event: LogEvent, message: &ffi::coi_stored_message, folder: &str) {
    let message_id = handle.delivery.message_id.as_deref().and_then(|m| message_id_from_header(m.as_bytes()));
    if let (Some(sender), Some(message_id)) = (handle.delivery.recall.trusted_sender.clone(), message_id) {
        let record = Record::LocalCopy(LocalCopyV1 {
            id: new_event_id(),
            ts_ms: now_ms(),
            user: handle.username.clone(),
            folder: folder.to_string(),
            uid: message.uid,
            uidvalidity: message.uid_validity,
            message_id,
            sender,
            pid: std::process::id(),
            dropped_before: 0,
        });
        emit(handle, event, record);
    }
    if let Some((mdn, reporter)) = handle.delivery.recall.mdn.take() {
        let record = Record::Mdn(MdnV1 {
            id: new_event_id(),
            ts_ms: now_ms(),
            user: handle.username.clone(),
            original_message_id: mdn.original_message_id,
            reporter,
            disposition: mdn.disposition,
            pid: std::process::id(),
            dropped_before: 0,
        });
        emit(handle, event, record);
    }
}

pub(crate) unsafe extern "C" fn recall_needs(user: *mut c_void) -> u32 {
    guard::call("recall_needs", 0, || {
        // SAFETY: the shim passes a live handle.
        let Some(handle) = (unsafe { handle(user) }) else {
            return 0;
        };
        let Some(s) = handle.recall else {
            return 0;
        };
        // Nothing to record without a spool (no sidecar).
        if handle.events.is_none() {
            return 0;
        }
        let mut needs = 0;
        if (s.recall || s.read_status) && s.sender_trust != SenderTrust::None {
            needs |= ffi::COI_RECALL_NEED_TRUST;
        }
        if s.read_status {
            needs |= ffi::COI_RECALL_NEED_MDN | ffi::COI_RECALL_NEED_READ_STATUS;
        }
        if s.recall {
            needs |= ffi::COI_RECALL_NEED_REQUESTS;
        }
        needs
    })
}

pub(crate) unsafe extern "C" fn trust_check(
    user: *mut c_void,
    log_event: *mut c_void,
    received: *const ffi::coi_bytes,
    received_count: u32,
    from: *const ffi::coi_bytes,
    envelope_from: *const ffi::coi_bytes,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("trust_check", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(from), Some(envelope)) =
            (unsafe { (handle(user), from.as_ref(), envelope_from.as_ref()) })
        else {
            return -1;
        };
        let Some(settings) = handle.recall else {
            return 0;
        };
        let count = (received_count as usize).min(trust::MAX_RECEIVED_HEADERS);
        let headers: Vec<&[u8]> = if received.is_null() || count == 0 {
            Vec::new()
        } else {
            // SAFETY: the shim passes `received_count` slices, alive
            // during this call.
            let slices = unsafe { std::slice::from_raw_parts(received, count) };
            // SAFETY: as above, for each slice's bytes.
            slices.iter().filter_map(|b| unsafe { b.as_option() }).collect()
        };
        // SAFETY: alive during this call.
        let verdict = unsafe { trust::check(settings.sender_trust, &headers, from.as_option(), envelope.as_option()) };
        event.debug(format_args!(
            "sender trust: {}{}",
            verdict.reason(),
            verdict.sender().map(|s| format!(" ({s})")).unwrap_or_default()
        ));
        handle.delivery.recall.trusted_sender = verdict.sender().map(str::to_string);
        0
    })
}

pub(crate) unsafe extern "C" fn mdn_seen(
    user: *mut c_void,
    content_type: *const ffi::coi_bytes,
    body: *const ffi::coi_bytes,
    reporter: *const ffi::coi_bytes,
) -> i32 {
    guard::call("mdn_seen", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(content_type), Some(body), Some(reporter)) =
            (unsafe { (handle(user), content_type.as_ref(), body.as_ref(), reporter.as_ref()) })
        else {
            return -1;
        };
        // SAFETY: alive during this call.
        let parsed = unsafe {
            match (content_type.as_option(), body.as_option()) {
                (Some(ct), Some(body)) => mdn::parse(ct, body),
                _ => None,
            }
        };
        if let Some(m) = parsed.filter(Mdn::displayed) {
            // SAFETY: alive during this call.
            let reporter = unsafe { lossy(reporter.as_option()) }.map(|r| r.to_ascii_lowercase());
            handle.delivery.recall.mdn = Some((m, reporter));
        }
        0
    })
}

pub(crate) unsafe extern "C" fn recall_request(
    user: *mut c_void,
    log_event: *mut c_void,
    request_id: *const ffi::coi_bytes,
    message_id: *const ffi::coi_bytes,
    stored_r: *mut ffi::coi_bytes,
    error_r: *mut ffi::coi_bytes,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("recall_request", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(request_id), Some(message_id), Some(stored_r), Some(error_r)) = (unsafe {
            (handle(user), request_id.as_ref(), message_id.as_ref(), stored_r.as_mut(), error_r.as_mut())
        }) else {
            return -1;
        };
        if !handle.recall.is_some_and(|s| s.recall) || handle.events.is_none() {
            *error_r = handle.lend(0, "Recall is not available on this server");
            return -1;
        }
        // SAFETY: alive during this call.
        let (request_id, message_id) = unsafe { (request_id.as_option(), message_id.as_option()) };
        let Some(request_id) = request_id.and_then(check_request_id) else {
            *error_r = handle.lend(0, "Recall ids are 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'");
            return -1;
        };
        let Some(message_id) = message_id.and_then(normalize_message_id) else {
            *error_r = handle.lend(0, "The value of a recall entry is the Message-ID of a message you sent, <left@right>");
            return -1;
        };
        let now = now_ms();
        let record = Record::RecallRequest(RecallRequestV1 {
            id: new_event_id(),
            ts_ms: now,
            user: handle.username.clone(),
            request_id: request_id.clone(),
            message_id: message_id.clone(),
            pid: std::process::id(),
            dropped_before: 0,
        });
        if !emit(handle, event, record) {
            *error_r = handle.lend(0, "Recall is temporarily unavailable: try again later");
            return -1;
        }
        event.info(format_args!("recall {request_id} of {message_id} requested"));
        *stored_r = handle.lend(0, RecallState::pending(message_id, now).to_json());
        0
    })
}

pub(crate) unsafe extern "C" fn recall_state_check(
    user: *mut c_void,
    json: *const ffi::coi_bytes,
    stored_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("recall_state_check", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(json), Some(stored_r)) = (unsafe { (handle(user), json.as_ref(), stored_r.as_mut()) })
        else {
            return -1;
        };
        // SAFETY: alive during this call.
        match unsafe { json.as_option() }.and_then(RecallState::parse) {
            Some(state) => {
                *stored_r = handle.lend(0, state.to_json());
                0
            }
            None => -1,
        }
    })
}

pub(crate) unsafe extern "C" fn recall_check_id(user: *mut c_void, id: *const ffi::coi_bytes) -> i32 {
    guard::call("recall_check_id", 0, || {
        // SAFETY: the shim passes valid pointers alive during this call.
        let id = unsafe { id.as_ref().and_then(|i| i.as_option()) };
        let _ = user;
        i32::from(id.and_then(check_request_id).is_some_and(|lower| id == Some(lower.as_bytes())))
    })
}

pub(crate) unsafe extern "C" fn recall_exec_begin(user: *mut c_void, json: *const ffi::coi_bytes) -> i32 {
    guard::call("recall_exec_begin", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(json)) = (unsafe { (handle(user), json.as_ref()) }) else {
            return -1;
        };
        // SAFETY: alive during this call.
        let Some(request) = unsafe { json.as_option() }.and_then(ExecRequest::parse) else {
            handle.exec = None;
            return -1;
        };
        let count = request.copies.len();
        handle.exec = Some(Execution { request, outcomes: vec![None; count] });
        count as i32
    })
}

pub(crate) unsafe extern "C" fn recall_exec_copy(
    user: *mut c_void,
    index: u32,
    folder_r: *mut ffi::coi_bytes,
    uidvalidity_r: *mut u32,
    uid_r: *mut u32,
) -> i32 {
    guard::call("recall_exec_copy", -1, || {
        // SAFETY: the shim passes a live handle and valid out-pointers.
        let (Some(handle), Some(folder_r), Some(uidvalidity_r), Some(uid_r)) =
            (unsafe { (handle(user), folder_r.as_mut(), uidvalidity_r.as_mut(), uid_r.as_mut()) })
        else {
            return -1;
        };
        let Some(copy) = handle.exec.as_ref().and_then(|e| e.request.copies.get(index as usize)).cloned() else {
            return -1;
        };
        *uidvalidity_r = copy.uidvalidity;
        *uid_r = copy.uid;
        *folder_r = handle.lend(0, copy.folder);
        0
    })
}

pub(crate) unsafe extern "C" fn recall_exec_matches(
    user: *mut c_void,
    message_id_header: *const ffi::coi_bytes,
    from: *const ffi::coi_bytes,
) -> i32 {
    guard::call("recall_exec_matches", 0, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(mid), Some(from)) = (unsafe { (handle(user), message_id_header.as_ref(), from.as_ref()) })
        else {
            return 0;
        };
        let Some(exec) = &handle.exec else {
            return 0;
        };
        // SAFETY: alive during this call.
        let (mid, from) = unsafe { (mid.as_option(), from.as_option()) };
        let same_id = mid.and_then(message_id_from_header).as_deref() == Some(exec.request.message_id.as_str());
        let same_sender = from.is_some_and(|f| f.trim_ascii().eq_ignore_ascii_case(exec.request.sender.as_bytes()));
        i32::from(same_id && same_sender)
    })
}

pub(crate) unsafe extern "C" fn recall_exec_result(user: *mut c_void, index: u32, outcome: i32) {
    guard::call("recall_exec_result", (), || {
        // SAFETY: the shim passes a live handle.
        let Some(handle) = (unsafe { handle(user) }) else {
            return;
        };
        if let Some(slot) = handle.exec.as_mut().and_then(|e| e.outcomes.get_mut(index as usize)) {
            *slot = Some(CopyOutcome::from_code(outcome));
        }
    })
}

pub(crate) unsafe extern "C" fn recall_exec_finish(user: *mut c_void, log_event: *mut c_void) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("recall_exec_finish", -1, || {
        // SAFETY: the shim passes a live handle.
        let Some(handle) = (unsafe { handle(user) }) else {
            return -1;
        };
        let Some(exec) = handle.exec.take() else {
            return -1;
        };
        let copies: Vec<CopyResultV1> = exec
            .request
            .copies
            .iter()
            .zip(&exec.outcomes)
            .map(|(c, o)| CopyResultV1 {
                folder: c.folder.clone(),
                uidvalidity: c.uidvalidity,
                uid: c.uid,
                outcome: o.unwrap_or(CopyOutcome::Failed),
            })
            .collect();
        let summary: Vec<&str> = copies.iter().map(|c| c.outcome.name()).collect();
        event.info(format_args!(
            "recall of {} from {}: {}",
            exec.request.message_id,
            exec.request.sender,
            summary.join(", ")
        ));
        let record = Record::RecallOutcome(RecallOutcomeV1 {
            id: new_event_id(),
            ts_ms: now_ms(),
            user: handle.username.clone(),
            request: exec.request.request,
            sender: exec.request.sender,
            message_id: exec.request.message_id,
            copies,
            pid: std::process::id(),
            dropped_before: 0,
        });
        if emit(handle, event, record) {
            0
        } else {
            -1
        }
    })
}

pub(crate) unsafe extern "C" fn read_consents(user: *mut c_void, stored: *const ffi::coi_bytes) -> i32 {
    guard::call("read_consents", 0, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(stored)) = (unsafe { (handle(user), stored.as_ref()) }) else {
            return 0;
        };
        let Some(s) = handle.recall.filter(|s| s.read_status) else {
            return 0;
        };
        // SAFETY: alive during this call.
        i32::from(consents(unsafe { stored.as_option() }, s.default_read_status))
    })
}

pub(crate) unsafe extern "C" fn read_consent_check(
    user: *mut c_void,
    value: *const ffi::coi_bytes,
    error_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("read_consent_check", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(value), Some(error_r)) = (unsafe { (handle(user), value.as_ref(), error_r.as_mut()) })
        else {
            return -1;
        };
        if !handle.recall.is_some_and(|s| s.read_status) {
            *error_r = handle.lend(0, "Read status is not available on this server");
            return -1;
        }
        // SAFETY: alive during this call.
        match check_consent_value(unsafe { value.as_option() }) {
            Ok(()) => 0,
            Err(message) => {
                *error_r = handle.lend(0, message);
                -1
            }
        }
    })
}

pub(crate) unsafe extern "C" fn read_consent_default(user: *mut c_void, value_r: *mut ffi::coi_bytes) -> i32 {
    guard::call("read_consent_default", 0, || {
        // SAFETY: the shim passes a live handle and a valid out-pointer.
        let (Some(handle), Some(value_r)) = (unsafe { (handle(user), value_r.as_mut()) }) else {
            return 0;
        };
        match handle.recall.filter(|s| s.read_status) {
            Some(s) => {
                *value_r = handle.lend(0, if s.default_read_status { "yes" } else { "no" });
                1
            }
            None => 0,
        }
    })
}

pub(crate) unsafe extern "C" fn message_read(
    user: *mut c_void,
    log_event: *mut c_void,
    message: *const ffi::coi_stored_message,
    message_id_header: *const ffi::coi_bytes,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("message_read", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(message), Some(mid)) =
            (unsafe { (handle(user), message.as_ref(), message_id_header.as_ref()) })
        else {
            return -1;
        };
        // SAFETY: alive during this call.
        let (folder, mid) = unsafe { (lossy(message.folder.as_option()), mid.as_option()) };
        // Without a Message-ID nothing could find the sender's copy.
        let Some(message_id) = mid.and_then(message_id_from_header) else {
            return 0;
        };
        let record = Record::MessageRead(MessageReadV1 {
            id: new_event_id(),
            ts_ms: now_ms(),
            user: handle.username.clone(),
            folder: folder.unwrap_or_default(),
            uid: message.uid,
            uidvalidity: message.uid_validity,
            message_id,
            pid: std::process::id(),
            dropped_before: 0,
        });
        if emit(handle, event, record) {
            0
        } else {
            -1
        }
    })
}

pub(crate) unsafe extern "C" fn read_mark_parse(
    user: *mut c_void,
    json: *const ffi::coi_bytes,
    message_id_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("read_mark_parse", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(json), Some(message_id_r)) =
            (unsafe { (handle(user), json.as_ref(), message_id_r.as_mut()) })
        else {
            return -1;
        };
        // SAFETY: alive during this call.
        match unsafe { json.as_option() }.and_then(ReadMark::parse) {
            Some(mark) => {
                *message_id_r = handle.lend(0, mark.message_id);
                0
            }
            None => -1,
        }
    })
}

pub(crate) unsafe extern "C" fn read_push_prepare(user: *mut c_void, json: *const ffi::coi_bytes) -> i32 {
    guard::call("read_push_prepare", 0, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(json)) = (unsafe { (handle(user), json.as_ref()) }) else {
            return 0;
        };
        // SAFETY: alive during this call.
        let Some(mark) = (unsafe { json.as_option() }).and_then(ReadMark::parse) else {
            return 0;
        };
        let webpush = handle.push.as_ref().is_some_and(|p| std::fs::metadata(&p.vapid_key).is_ok());
        if !webpush || handle.events.is_none() {
            return 0;
        }
        // The push tells the sender's devices about their own message: its
        // msg-id is theirs, from-email is the reader (docs/recall.md).
        let mut delivery = Delivery::default();
        delivery.kind = Some(Kind::Chat);
        delivery.message_id = Some(mark.message_id);
        delivery.from = (!mark.reader.is_empty()).then_some(mark.reader);
        delivery.webpush_only = true;
        handle.delivery = delivery;
        1
    })
}

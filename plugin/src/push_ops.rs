//! The push callbacks of `struct coi_rs_ops`: Web Push subscriptions set
//! and read over IMAP METADATA, the VAPID key served to clients, Delta Chat
//! device tokens, the `push` record of a delivered message, and the checks
//! for entries that dsync or an import bring in.
//!
//! Decisions live in `coi_core::push`; this file translates C to Rust,
//! reads the clock and the VAPID key file, and appends records to the
//! spool (the sidecar encrypts and sends, docs/webpush.md).

use std::ffi::c_void;
use std::io::Read as _;
use std::time::{SystemTime, UNIX_EPOCH};

use coi_core::classify::Kind;
use coi_core::push::devicetoken::{accept_token, parse_stored};
use coi_core::push::imported::{check_stored, ImportRules};
use coi_core::push::message::{
    build_push, deltachat_targets, is_self_sent, webpush_targets, StoredSubscriptionRef, StoredTokenRef,
};
use coi_core::push::subscription::{is_valid_id, new_secret, parse_client_json, StoredSubscription};
use coi_core::wire::{
    new_event_id, PushMessageV1, Record, WebPushValidationV1, PUSH_CONTENT_MAX_BYTES,
};

use crate::events::now_ms;
use crate::ffi;
use crate::guard;
use crate::log::LogEvent;
use crate::ops::{handle, lossy};

/// Largest VAPID key file served, bytes (a P-256 PEM is under 200).
const MAX_VAPID_PEM_BYTES: u64 = 4096;

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Reads the sidecar's public key file if it holds a PEM public key.
fn read_vapid_pem(path: &std::path::Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(MAX_VAPID_PEM_BYTES).read_to_string(&mut text).ok()?;
    text.contains("-----BEGIN PUBLIC KEY-----").then_some(text)
}

pub(crate) unsafe extern "C" fn webpush_check_id(_user: *mut c_void, id: *const ffi::coi_bytes) -> i32 {
    guard::call("webpush_check_id", 0, || {
        // SAFETY: the shim passes a valid slice alive during the call.
        let id = unsafe { id.as_ref().and_then(|id| id.as_option()) };
        i32::from(id.is_some_and(is_valid_id))
    })
}

pub(crate) unsafe extern "C" fn webpush_subscribe(
    user: *mut c_void,
    log_event: *mut c_void,
    id: *const ffi::coi_bytes,
    json: *const ffi::coi_bytes,
    others: u32,
    stored_r: *mut ffi::coi_bytes,
    error_r: *mut ffi::coi_bytes,
) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("webpush_subscribe", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(id), Some(json), Some(stored_r), Some(error_r)) =
            (unsafe { (handle(user), id.as_ref(), json.as_ref(), stored_r.as_mut(), error_r.as_mut()) })
        else {
            return -1;
        };
        // SAFETY: the bytes are alive during this call.
        let (id, json) = unsafe { (lossy(id.as_option()).unwrap_or_default(), json.as_option().unwrap_or_default()) };
        let refusal = |message: String| -> Result<StoredSubscription, String> { Err(message) };
        let outcome = match (&handle.push, &handle.events) {
            (None, _) | (_, None) => refusal("Web Push is not available on this server".to_string()),
            (Some(push), _) if read_vapid_pem(&push.vapid_key).is_none() => {
                refusal("Web Push is not available on this server".to_string())
            }
            (Some(push), _) if others >= push.subscription_limit => refusal(format!(
                "too many Web Push subscriptions (at most {}); remove one first",
                push.subscription_limit
            )),
            (Some(_), _) => {
                let now = now_unix();
                parse_client_json(json, now).map(|public| StoredSubscription::new(public, now, new_secret()))
            }
        };
        let subscription = match outcome {
            Ok(s) => s,
            Err(message) => {
                *error_r = handle.lend(0, message);
                return -1;
            }
        };
        let record = Record::WebPushValidation(WebPushValidationV1 {
            id: new_event_id(),
            ts_ms: now_ms(),
            user: handle.username.clone(),
            target: subscription.target(&id),
            secret: subscription.secret.clone(),
            pid: std::process::id(),
            dropped_before: 0,
        });
        let queued = handle.events.as_ref().is_some_and(|sink| sink.emit(event, record));
        if !queued {
            *error_r = handle.lend(0, "Web Push is temporarily unavailable: try again later");
            return -1;
        }
        event.debug(format_args!("Web Push subscription {id} accepted, validation push queued"));
        *stored_r = handle.lend(0, subscription.to_json());
        0
    })
}

pub(crate) unsafe extern "C" fn webpush_validate(
    user: *mut c_void,
    stored: *const ffi::coi_bytes,
    secret: *const ffi::coi_bytes,
    stored_r: *mut ffi::coi_bytes,
    error_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("webpush_validate", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(stored), Some(secret), Some(stored_r), Some(error_r)) =
            (unsafe { (handle(user), stored.as_ref(), secret.as_ref(), stored_r.as_mut(), error_r.as_mut()) })
        else {
            return -1;
        };
        let timeout = handle.push.as_ref().map(|p| p.validation_timeout_secs).unwrap_or(0);
        // SAFETY: the bytes are alive during this call.
        let (stored, secret) = unsafe { (stored.as_option(), secret.as_option()) };
        let result = match stored.and_then(StoredSubscription::parse) {
            None => Err("no such Web Push subscription".to_string()),
            Some(mut s) => s.validate(secret.unwrap_or_default(), now_unix(), timeout).map(|()| s),
        };
        match result {
            Ok(s) => {
                *stored_r = handle.lend(0, s.to_json());
                0
            }
            Err(message) => {
                *error_r = handle.lend(1, message);
                -1
            }
        }
    })
}

pub(crate) unsafe extern "C" fn webpush_view(
    user: *mut c_void,
    stored: *const ffi::coi_bytes,
    public_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("webpush_view", 0, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(stored), Some(public_r)) =
            (unsafe { (handle(user), stored.as_ref(), public_r.as_mut()) })
        else {
            return 0;
        };
        let timeout = handle.push.as_ref().map(|p| p.validation_timeout_secs).unwrap_or(0);
        // SAFETY: the bytes are alive during this call.
        let parsed = unsafe { stored.as_option() }.and_then(StoredSubscription::parse);
        match parsed {
            Some(s) if !s.is_expired(now_unix(), timeout) => {
                *public_r = handle.lend(0, s.public_json());
                1
            }
            _ => 0,
        }
    })
}

pub(crate) unsafe extern "C" fn vapid_key(user: *mut c_void, pem_r: *mut ffi::coi_bytes) -> i32 {
    guard::call("vapid_key", 0, || {
        // SAFETY: the shim passes a live handle and a valid out-pointer.
        let (Some(handle), Some(pem_r)) = (unsafe { (handle(user), pem_r.as_mut()) }) else {
            return 0;
        };
        match handle.push.as_ref().and_then(|p| read_vapid_pem(&p.vapid_key)) {
            Some(pem) => {
                *pem_r = handle.lend(0, pem);
                1
            }
            None => 0,
        }
    })
}

pub(crate) unsafe extern "C" fn deltachat_max_smtp_recipients(user: *mut c_void, value_r: *mut ffi::coi_bytes) -> i32 {
    guard::call("deltachat_max_smtp_recipients", 0, || {
        // SAFETY: the shim passes a live handle and a valid out-pointer.
        let (Some(handle), Some(value_r)) = (unsafe { (handle(user), value_r.as_mut()) }) else {
            return 0;
        };
        match handle.push.as_ref().and_then(|p| p.deltachat_max_smtp_recipients) {
            Some(n) => {
                *value_r = handle.lend(0, n.to_string());
                1
            }
            None => 0,
        }
    })
}

pub(crate) unsafe extern "C" fn devicetoken_set(
    user: *mut c_void,
    token: *const ffi::coi_bytes,
    others: u32,
    key_r: *mut ffi::coi_bytes,
    stored_r: *mut ffi::coi_bytes,
    error_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("devicetoken_set", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(token), Some(key_r), Some(stored_r), Some(error_r)) =
            (unsafe { (handle(user), token.as_ref(), key_r.as_mut(), stored_r.as_mut(), error_r.as_mut()) })
        else {
            return -1;
        };
        // SAFETY: the bytes are alive during this call.
        let token = unsafe { token.as_option() }.unwrap_or_default();
        match accept_token(token, others, now_unix()) {
            Ok((key, stored)) => {
                *key_r = handle.lend(0, key);
                *stored_r = handle.lend(1, stored);
                0
            }
            Err(message) => {
                *error_r = handle.lend(0, message);
                -1
            }
        }
    })
}

pub(crate) unsafe extern "C" fn devicetoken_view(
    user: *mut c_void,
    stored: *const ffi::coi_bytes,
    token_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("devicetoken_view", 0, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(stored), Some(token_r)) = (unsafe { (handle(user), stored.as_ref(), token_r.as_mut()) })
        else {
            return 0;
        };
        // SAFETY: the bytes are alive during this call.
        match unsafe { stored.as_option() }.and_then(parse_stored) {
            Some(t) => {
                *token_r = handle.lend(0, t.token);
                1
            }
            None => 0,
        }
    })
}

pub(crate) unsafe extern "C" fn wants_push(user: *mut c_void) -> i32 {
    guard::call("wants_push", 0, || {
        // SAFETY: the shim passes a live handle.
        let Some(handle) = (unsafe { handle(user) }) else {
            return 0;
        };
        let configured = handle
            .push
            .as_ref()
            .is_some_and(|p| p.deltachat || std::fs::metadata(&p.vapid_key).is_ok());
        let pushable = !matches!(handle.delivery.kind, None | Some(Kind::ReadReceipt));
        i32::from(configured && handle.events.is_some() && pushable && !handle.delivery.pushed)
    })
}

/// # Safety
/// `ptr` must be NULL or point to `count` valid `coi_bytes` whose bytes
/// stay alive for `'a`.
unsafe fn slices<'a>(ptr: *const ffi::coi_bytes, count: u32) -> Vec<&'a [u8]> {
    if ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    let items = unsafe { std::slice::from_raw_parts(ptr, count as usize) };
    // SAFETY: guaranteed by the caller.
    items.iter().map(|b| unsafe { b.as_option() }.unwrap_or_default()).collect()
}

pub(crate) unsafe extern "C" fn push(user: *mut c_void, log_event: *mut c_void, input: *const ffi::coi_push_input) -> i32 {
    let event = LogEvent::from_raw(log_event);
    guard::call("push", -1, || {
        // SAFETY: the shim passes a live handle and a valid input.
        let (Some(handle), Some(input)) = (unsafe { (handle(user), input.as_ref()) }) else {
            return -1;
        };
        let (Some(settings), Some(sink)) = (&handle.push, &handle.events) else {
            return 0;
        };
        handle.delivery.pushed = true;
        let kind = handle.delivery.kind.clone().unwrap_or(Kind::NotChat);
        // SAFETY: the arrays and every slice in them are alive during the
        // call (the shim's data stack).
        let (sub_values, token_keys, token_values, from_name, recipient, content, folder) = unsafe {
            (
                slices(input.subscriptions, input.subscription_count),
                slices(input.token_keys, input.token_count),
                slices(input.tokens, input.token_count),
                lossy(input.from_name.as_option()),
                lossy(input.recipient.as_option()),
                input.content.as_option(),
                lossy(input.message.folder.as_option()).unwrap_or_default(),
            )
        };
        // Subscription values carry their id first: "<id>\0<stored>".
        let subs: Vec<StoredSubscriptionRef<'_>> = sub_values
            .iter()
            .filter_map(|v| {
                let nul = v.iter().position(|b| *b == 0)?;
                Some(StoredSubscriptionRef { id: std::str::from_utf8(&v[..nul]).ok()?, stored: &v[nul + 1..] })
            })
            .collect();
        let tokens: Vec<StoredTokenRef<'_>> = token_keys
            .iter()
            .zip(&token_values)
            .filter_map(|(k, v)| Some(StoredTokenRef { key: std::str::from_utf8(k).ok()?, stored: v }))
            .collect();
        let from_email = handle.delivery.from.clone();
        let self_sent = is_self_sent(from_email.as_deref(), recipient.as_deref())
            || is_self_sent(from_email.as_deref(), Some(&handle.username));
        let webpush = webpush_targets(&subs, kind.name(), now_unix(), settings.validation_timeout_secs);
        let deltachat = if settings.deltachat && !handle.delivery.webpush_only {
            deltachat_targets(&tokens, kind.name(), self_sent)
        } else {
            Vec::new()
        };
        // Content goes only if it is UTF-8 that fits; a cut body is useless.
        let content = content
            .filter(|c| c.len() <= PUSH_CONTENT_MAX_BYTES)
            .and_then(|c| std::str::from_utf8(c).ok())
            .map(str::to_string);
        let message = PushMessageV1 {
            from_email,
            from_name,
            subject: handle.delivery.subject.clone(),
            date_unix: (input.has_date == 1).then_some(input.date_unix),
            message_id: handle.delivery.message_id.clone(),
            uid: input.message.uid,
            uidvalidity: input.message.uid_validity,
            folder,
            group_id: kind.group_id().map(str::to_string),
            kind: kind.name().to_string(),
            content,
        };
        let Some(push) = build_push(new_event_id(), now_ms(), &handle.username, message, webpush, deltachat) else {
            event.debug(format_args!("no push targets for this message"));
            return 0;
        };
        event.debug(format_args!(
            "push queued: {} Web Push, {} Delta Chat",
            push.webpush.len(),
            push.deltachat.len()
        ));
        if sink.emit(event, Record::Push(push)) {
            0
        } else {
            -1
        }
    })
}

pub(crate) unsafe extern "C" fn stored_check(
    user: *mut c_void,
    name: *const ffi::coi_bytes,
    value: *const ffi::coi_bytes,
    others: u32,
    error_r: *mut ffi::coi_bytes,
    reason_r: *mut i32,
) -> i32 {
    guard::call("stored_check", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(name), Some(value), Some(error_r), Some(reason_r)) =
            (unsafe { (handle(user), name.as_ref(), value.as_ref(), error_r.as_mut(), reason_r.as_mut()) })
        else {
            return -1;
        };
        // SAFETY: the bytes are alive during this call.
        let (name, value) = unsafe { (lossy(name.as_option()).unwrap_or_default(), value.as_option().unwrap_or_default()) };
        let push = handle.push.clone().unwrap_or_default();
        let rules =
            ImportRules { subscription_limit: push.subscription_limit, allow_private_endpoints: push.allow_private_endpoints };
        match check_stored(&name, value, others, &rules, now_unix()) {
            Ok(()) => 0,
            Err(refusal) => {
                *reason_r = refusal.reason.code();
                *error_r = handle.lend(0, refusal.message);
                -1
            }
        }
    })
}

//! The `doveadm coi export` / `import` callbacks of `struct coi_rs_ops`:
//! C hands over raw stored values or a document, `coi_core::transfer`
//! builds or reads it. Validation of what an import writes happens in the
//! attribute callbacks, as for clients and dsync.

use std::ffi::c_void;

use coi_core::transfer::{export, plan_import, ImportWrite, RawState};

use crate::ffi;
use crate::guard;
use crate::ops::handle;

/// # Safety
/// `ptr` must be NULL or point to `count` valid `coi_bytes` whose bytes
/// stay alive for `'a`.
unsafe fn strings<'a>(ptr: *const ffi::coi_bytes, count: u32) -> Vec<&'a str> {
    if ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    let items = unsafe { std::slice::from_raw_parts(ptr, count as usize) };
    items
        .iter()
        // SAFETY: guaranteed by the caller.
        .map(|b| std::str::from_utf8(unsafe { b.as_option() }.unwrap_or_default()).unwrap_or_default())
        .collect()
}

pub(crate) unsafe extern "C" fn export_document(
    user: *mut c_void,
    state: *const ffi::coi_raw_state,
    json_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("export_document", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(state), Some(json_r)) = (unsafe { (handle(user), state.as_ref(), json_r.as_mut()) })
        else {
            return -1;
        };
        // SAFETY: every slice and array is alive during this call.
        let (enabled, filter, sub_ids, sub_values, token_keys, token_values) = unsafe {
            (
                state.enabled.as_option().and_then(|b| std::str::from_utf8(b).ok()),
                state.message_filter.as_option().and_then(|b| std::str::from_utf8(b).ok()),
                strings(state.sub_ids, state.sub_count),
                strings(state.sub_values, state.sub_count),
                strings(state.token_keys, state.token_count),
                strings(state.token_values, state.token_count),
            )
        };
        let raw = RawState {
            enabled,
            message_filter: filter,
            subscriptions: sub_ids.into_iter().zip(sub_values).collect(),
            tokens: token_keys.into_iter().zip(token_values).collect(),
        };
        let doc = export(&handle.username, &raw);
        *json_r = handle.lend(0, doc);
        0
    })
}

pub(crate) unsafe extern "C" fn import_plan(
    user: *mut c_void,
    json: *const ffi::coi_bytes,
    plan_r: *mut ffi::coi_bytes,
    error_r: *mut ffi::coi_bytes,
) -> i32 {
    guard::call("import_plan", -1, || {
        // SAFETY: the shim passes a live handle and valid pointers.
        let (Some(handle), Some(json), Some(plan_r), Some(error_r)) =
            (unsafe { (handle(user), json.as_ref(), plan_r.as_mut(), error_r.as_mut()) })
        else {
            return -1;
        };
        // SAFETY: the bytes are alive during this call.
        let json = unsafe { json.as_option() }.unwrap_or_default();
        match plan_import(json) {
            Ok(writes) => {
                let mut buf = Vec::new();
                for w in writes {
                    let (tag, name, value) = match w {
                        ImportWrite::Config { name, value } => (b'c', name, value),
                        ImportWrite::Raw { name, value } => (b'r', name, value),
                    };
                    buf.push(tag);
                    buf.extend_from_slice(name.as_bytes());
                    buf.push(0);
                    buf.extend_from_slice(value.as_bytes());
                    buf.push(0);
                }
                *plan_r = handle.lend(0, buf);
                0
            }
            Err(message) => {
                *error_r = handle.lend(1, message);
                -1
            }
        }
    })
}

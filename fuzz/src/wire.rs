//! Targets `wire_decode` and `wire_roundtrip`: the event wire format
//! (`coi_core::wire`, docs/events.md).
//!
//! `wire_decode` feeds arbitrary bytes to every reader of the format:
//! - `decode_record` never panics; a record it accepts re-encodes within
//!   `MAX_RECORD_BYTES` and decodes again to a truncation of itself (see
//!   [`assert_truncation_of`]);
//! - `scan` never panics, never consumes past the buffer, leaves unconsumed
//!   only a possible in-flight record (starting with RS), and finds the same
//!   valid records when the buffer arrives in two reads split anywhere (the
//!   sidecar reads the spool in chunks while the plugin appends);
//! - `decode_doorbell` never panics; an accepted doorbell round-trips.
//!
//! `wire_roundtrip` builds an arbitrary [`Record`] (through the wrapper types
//! below: coi-core does not depend on `arbitrary`) and checks
//! `encode_record` -> `scan`:
//! - the frame is RS + JSON + LF, one RS and one LF, at most
//!   `MAX_RECORD_BYTES`;
//! - `scan` returns exactly one valid record and consumes the whole frame;
//! - when the record fits after the documented per-field limits
//!   (docs/events.md), the record read back is exactly the record with those
//!   limits applied; otherwise it is a truncation of it;
//! - encoding what was read back gives the same bytes (encoding is
//!   idempotent, so a replayed record is byte-identical).

use arbitrary::{Arbitrary, Unstructured};
use coi_core::wire::{
    decode_doorbell, decode_record, encode_doorbell, encode_record, scan, truncate_utf8,
    DeltaChatTargetV1, FallbackEventV1, FallbackReason, MessageEventV1, MessageOrigin,
    PushEventV1, PushMessageV1, Record, ScanItem, WebPushTargetV1, WebPushValidationV1,
    KIND_MAX_BYTES, LINE_FEED, MAX_RECORD_BYTES, MESSAGE_ID_MAX_BYTES, NAME_MAX_BYTES,
    PUSH_CONTENT_MAX_BYTES, RECORD_SEPARATOR, SUBJECT_MAX_BYTES,
};

// ------------------------------------------------------------ wire_decode

/// Runs every wire reader on `data` (target `wire_decode`).
pub fn check_decode(data: &[u8]) {
    if let Ok(record) = decode_record(data) {
        let frame = encode_record(&record);
        check_frame(&frame);
        if !is_legit_unencodable(&frame, &record) {
            let again = decode_record(&frame[1..frame.len() - 1])
                .unwrap_or_else(|e| panic!("re-encoded record does not decode: {e}"));
            assert_truncation_of(&again, &record);
        }
    }

    let (items, used) = scan(data);
    assert!(used <= data.len());
    if used < data.len() {
        assert_eq!(data[used], RECORD_SEPARATOR, "unconsumed tail must start a record");
        assert!(data.len() - used <= MAX_RECORD_BYTES, "a too-long tail must be consumed");
    }
    let whole = valid_records(items);
    // Split point from the data itself, so the fuzzer can steer it.
    let split = match data.first() {
        Some(&b) if !data.is_empty() => (usize::from(b) * 131 + data.len() / 2) % (data.len() + 1),
        _ => 0,
    };
    let (first, used1) = scan(&data[..split]);
    let (second, used2) = scan(&data[used1..]);
    assert_eq!(used1 + used2, used, "two reads consumed a different amount than one");
    let mut parts = valid_records(first);
    parts.extend(valid_records(second));
    assert_eq!(parts, whole, "split at {split} changed the valid records");

    if let Ok(doorbell) = decode_doorbell(data) {
        assert_eq!(decode_doorbell(&encode_doorbell(&doorbell)), Ok(doorbell));
    }
}

fn valid_records(items: Vec<ScanItem>) -> Vec<Record> {
    items
        .into_iter()
        .filter_map(|i| match i {
            ScanItem::Record(r) => Some(r),
            ScanItem::Rejected(_) => None,
        })
        .collect()
}

/// RS + one JSON object + LF, within the limit.
fn check_frame(frame: &[u8]) {
    assert!(frame.len() <= MAX_RECORD_BYTES, "encoded record of {} bytes", frame.len());
    assert!(frame.len() >= 2);
    assert_eq!(frame[0], RECORD_SEPARATOR);
    assert_eq!(frame[frame.len() - 1], LINE_FEED);
    assert_eq!(frame.iter().filter(|&&b| b == RECORD_SEPARATOR).count(), 1);
    assert_eq!(frame.iter().filter(|&&b| b == LINE_FEED).count(), 1);
}

// --------------------------------------------------------- wire_roundtrip

/// Checks `encode_record` -> `scan` for one arbitrary record (target
/// `wire_roundtrip`).
pub fn check_roundtrip(data: &[u8]) {
    let Ok(input) = ArbRecord::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let record = input.into_record();
    let frame = encode_record(&record);
    check_frame(&frame);
    if is_legit_unencodable(&frame, &record) {
        return;
    }

    let (items, used) = scan(&frame);
    assert_eq!(used, frame.len(), "scan did not consume the whole frame");
    let got = match &items[..] {
        [ScanItem::Record(r)] => r.clone(),
        other => panic!("scan of one frame gave {other:?}"),
    };

    let limited = with_documented_limits(&record);
    if framed_len(&limited) <= MAX_RECORD_BYTES {
        assert_eq!(got, limited, "record changed beyond the documented field limits");
    } else {
        assert_truncation_of(&got, &record);
    }
    assert_eq!(encode_record(&got), frame, "encoding is not idempotent");

    // Two frames back to back come back as two records.
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    let (items, used) = scan(&two);
    assert_eq!(used, two.len());
    assert_eq!(valid_records(items), vec![got.clone(), got]);
}

/// The frame `encode_record` writes when nothing it may cut makes the
/// record fit; the reader rejects and counts it (docs/events.md).
pub const UNENCODABLE_FRAME: &[u8] = b"\x1e{\"v\":1,\"type\":\"unencodable\"}\n";

/// True if `frame` is [`UNENCODABLE_FRAME`]; then asserts that the record
/// really cannot fit: even with every field `encode_record` may cut cut to
/// nothing (and push content and every target dropped), its frame exceeds
/// `MAX_RECORD_BYTES`. The fields it never cuts are the identity fields
/// (ids, users, message folders, push targets, the validation secret).
fn is_legit_unencodable(frame: &[u8], record: &Record) -> bool {
    if frame != UNENCODABLE_FRAME {
        return false;
    }
    let smallest = fully_cut(record);
    assert!(
        framed_len(&smallest) > MAX_RECORD_BYTES,
        "record replaced by the unencodable marker although it fits when cut: {record:?}"
    );
    true
}

/// The smallest record `encode` can make: every descriptive string cut to
/// nothing, push content and every push target dropped, identity whole.
fn fully_cut(record: &Record) -> Record {
    let mut r = record.clone();
    match &mut r {
        Record::Message(m) => {
            m.kind.clear();
            for s in [&mut m.group_id, &mut m.from, &mut m.message_id, &mut m.subject] {
                cut_opt(s, 0);
            }
        }
        Record::Fallback(_) | Record::WebPushValidation(_) => {}
        Record::Push(p) => {
            let m = &mut p.message;
            m.content = None;
            for s in [&mut m.from_email, &mut m.from_name, &mut m.subject, &mut m.message_id, &mut m.group_id] {
                cut_opt(s, 0);
            }
            m.kind.clear();
            let n = p.webpush.len() + p.deltachat.len();
            p.webpush.clear();
            p.deltachat.clear();
            p.targets_dropped = p.targets_dropped.saturating_add(n as u32);
        }
        // recall and read-status records are never cut (docs/events.md)
        Record::LocalCopy(_) | Record::RecallRequest(_) | Record::RecallOutcome(_) | Record::MessageRead(_) | Record::Mdn(_) => {}
    }
    r
}

/// Length of the frame `encode_record` writes for a record that needs no
/// further cutting: RS + `{"v":1,"type":"<t>",` + the body's fields + `}` + LF.
fn framed_len(record: &Record) -> usize {
    let (tag, body) = match record {
        Record::Message(m) => ("message", serde_json::to_vec(m)),
        Record::Fallback(f) => ("fallback", serde_json::to_vec(f)),
        Record::Push(p) => ("push", serde_json::to_vec(p)),
        Record::WebPushValidation(w) => ("webpush_validation", serde_json::to_vec(w)),
        Record::LocalCopy(r) => ("local_copy", serde_json::to_vec(r)),
        Record::RecallRequest(r) => ("recall_request", serde_json::to_vec(r)),
        Record::RecallOutcome(r) => ("recall_outcome", serde_json::to_vec(r)),
        Record::MessageRead(r) => ("read", serde_json::to_vec(r)),
        Record::Mdn(r) => ("mdn", serde_json::to_vec(r)),
    };
    let body = body.expect("wire structs always serialise");
    let head = format!("{{\"v\":1,\"type\":\"{tag}\",");
    // `body` is `{...}`: its `{` is replaced by `head`.
    1 + head.len() + body.len() - 1 + 1
}

fn cut(s: &mut String, max: usize) {
    let keep = truncate_utf8(s, max).len();
    s.truncate(keep);
}

fn cut_opt(s: &mut Option<String>, max: usize) {
    if let Some(v) = s {
        cut(v, max);
    }
}

/// The record with the per-field limits of docs/events.md applied (what
/// `encode_record` writes when that is enough to fit).
fn with_documented_limits(record: &Record) -> Record {
    let mut r = record.clone();
    match &mut r {
        Record::Message(m) => {
            cut(&mut m.kind, KIND_MAX_BYTES);
            cut_opt(&mut m.group_id, NAME_MAX_BYTES);
            cut_opt(&mut m.from, NAME_MAX_BYTES);
            cut_opt(&mut m.message_id, MESSAGE_ID_MAX_BYTES);
            cut_opt(&mut m.subject, SUBJECT_MAX_BYTES);
        }
        Record::Fallback(_) | Record::WebPushValidation(_) => {}
        Record::Push(p) => {
            let m = &mut p.message;
            cut_opt(&mut m.content, PUSH_CONTENT_MAX_BYTES);
            cut_opt(&mut m.from_email, NAME_MAX_BYTES);
            cut_opt(&mut m.from_name, NAME_MAX_BYTES);
            cut_opt(&mut m.subject, SUBJECT_MAX_BYTES);
            cut_opt(&mut m.message_id, MESSAGE_ID_MAX_BYTES);
            cut_opt(&mut m.group_id, NAME_MAX_BYTES);
            cut(&mut m.kind, KIND_MAX_BYTES);
        }
        Record::LocalCopy(_) | Record::RecallRequest(_) | Record::RecallOutcome(_) | Record::MessageRead(_) | Record::Mdn(_) => {}
    }
    r
}

fn prefix(got: &str, orig: &str, what: &str) {
    assert!(orig.starts_with(got), "{what}: {got:?} is not a prefix of {orig:?}");
}

fn prefix_opt(got: &Option<String>, orig: &Option<String>, what: &str) {
    match (got, orig) {
        (None, None) => {}
        (Some(g), Some(o)) => prefix(g, o, what),
        _ => panic!("{what}: presence changed ({got:?} vs {orig:?})"),
    }
}

fn prefix_list<T: PartialEq + std::fmt::Debug>(got: &[T], orig: &[T], what: &str) {
    assert!(
        got.len() <= orig.len() && got == &orig[..got.len()],
        "{what}: not a prefix of the original list"
    );
}

/// `got` is `orig` with descriptive strings cut (never changed otherwise),
/// optional push content dropped and push targets dropped from the end and
/// counted: what `encode_record` may do to make a record fit. Identity
/// fields (ids, users, message folders, targets, secrets), numbers, flags
/// and enums are always kept.
pub fn assert_truncation_of(got: &Record, orig: &Record) {
    match (got, orig) {
        (Record::Message(g), Record::Message(o)) => {
            assert_eq!((&g.id, &g.user, &g.folder), (&o.id, &o.user, &o.folder), "identity cut");
            prefix(&g.kind, &o.kind, "kind");
            prefix_opt(&g.group_id, &o.group_id, "group_id");
            prefix_opt(&g.from, &o.from, "from");
            prefix_opt(&g.message_id, &o.message_id, "message_id");
            prefix_opt(&g.subject, &o.subject, "subject");
            assert_eq!(
                (g.ts_ms, g.uid, g.uidvalidity, g.chat_keyword, g.routed, g.pid, g.dropped_before, g.origin),
                (o.ts_ms, o.uid, o.uidvalidity, o.chat_keyword, o.routed, o.pid, o.dropped_before, o.origin)
            );
        }
        (Record::Fallback(g), Record::Fallback(o)) => {
            assert_eq!(g.id, o.id, "identity cut");
            assert_eq!((g.ts_ms, g.reason, g.pid, g.dropped_before), (o.ts_ms, o.reason, o.pid, o.dropped_before));
        }
        (Record::Push(g), Record::Push(o)) => {
            assert_eq!((&g.id, &g.user, &g.message.folder), (&o.id, &o.user, &o.message.folder), "identity cut");
            let (gm, om) = (&g.message, &o.message);
            if gm.content.is_some() {
                prefix_opt(&gm.content, &om.content, "content");
            }
            prefix_opt(&gm.from_email, &om.from_email, "from_email");
            prefix_opt(&gm.from_name, &om.from_name, "from_name");
            prefix_opt(&gm.subject, &om.subject, "subject");
            prefix_opt(&gm.message_id, &om.message_id, "message_id");
            prefix_opt(&gm.group_id, &om.group_id, "group_id");
            prefix(&gm.kind, &om.kind, "kind");
            assert_eq!((gm.date_unix, gm.uid, gm.uidvalidity), (om.date_unix, om.uid, om.uidvalidity));
            prefix_list(&g.webpush, &o.webpush, "webpush");
            prefix_list(&g.deltachat, &o.deltachat, "deltachat");
            let left_out = (o.webpush.len() + o.deltachat.len()) - (g.webpush.len() + g.deltachat.len());
            assert_eq!(
                u64::from(g.targets_dropped),
                (u64::from(o.targets_dropped) + left_out as u64).min(u64::from(u32::MAX)),
                "targets left out are counted"
            );
            assert_eq!((g.ts_ms, g.pid, g.dropped_before), (o.ts_ms, o.pid, o.dropped_before));
        }
        (Record::WebPushValidation(g), Record::WebPushValidation(o)) => {
            assert_eq!((&g.id, &g.user), (&o.id, &o.user), "identity cut");
            assert_eq!(
                (&g.target, &g.secret, g.ts_ms, g.pid, g.dropped_before),
                (&o.target, &o.secret, o.ts_ms, o.pid, o.dropped_before)
            );
        }
        _ => panic!("record type changed: {got:?} from {orig:?}"),
    }
}

// ------------------------------------------------- arbitrary wrapper types

/// An arbitrary [`Record`], plus a way to make one string field long
/// (repeated up to 4,095 times) so that small fuzz inputs still reach the
/// "halve the limits until it fits" path of `encode_record`.
#[derive(Debug, Arbitrary)]
pub struct ArbRecord {
    shape: ArbShape,
    amplify: Option<(u8, u16)>,
}

#[derive(Debug, Arbitrary)]
enum ArbShape {
    Message(ArbMessage),
    Fallback(ArbFallback),
    Push(ArbPush),
    WebPushValidation(ArbValidation),
}

#[derive(Debug, Arbitrary)]
struct ArbMessage {
    id: String,
    ts_ms: u64,
    user: String,
    folder: String,
    uid: u32,
    uidvalidity: u32,
    kind: String,
    group_id: Option<String>,
    chat_keyword: bool,
    routed: bool,
    from: Option<String>,
    message_id: Option<String>,
    subject: Option<String>,
    pid: u32,
    dropped_before: u64,
    seen_move: bool,
    headers_protected: bool,
}

#[derive(Debug, Arbitrary)]
struct ArbFallback {
    id: String,
    ts_ms: u64,
    reason: u8,
    pid: u32,
    dropped_before: u64,
}

#[derive(Debug, Arbitrary)]
struct ArbPushMessage {
    from_email: Option<String>,
    from_name: Option<String>,
    subject: Option<String>,
    date_unix: Option<i64>,
    message_id: Option<String>,
    uid: u32,
    uidvalidity: u32,
    folder: String,
    group_id: Option<String>,
    kind: String,
    content: Option<String>,
}

#[derive(Debug, Arbitrary)]
struct ArbWebPushTarget {
    subscription_id: String,
    endpoint: String,
    p256dh: String,
    auth: String,
}

#[derive(Debug, Arbitrary)]
struct ArbDeltaChatTarget {
    token_key: String,
    token: String,
}

#[derive(Debug, Arbitrary)]
struct ArbPush {
    id: String,
    ts_ms: u64,
    user: String,
    message: ArbPushMessage,
    webpush: Vec<ArbWebPushTarget>,
    deltachat: Vec<ArbDeltaChatTarget>,
    pid: u32,
    dropped_before: u64,
}

#[derive(Debug, Arbitrary)]
struct ArbValidation {
    id: String,
    ts_ms: u64,
    user: String,
    target: ArbWebPushTarget,
    secret: String,
    pid: u32,
    dropped_before: u64,
}

impl ArbWebPushTarget {
    fn into_target(self) -> WebPushTargetV1 {
        WebPushTargetV1 {
            subscription_id: self.subscription_id,
            endpoint: self.endpoint,
            p256dh: self.p256dh,
            auth: self.auth,
        }
    }
}

impl ArbRecord {
    /// The coi-core record this input describes.
    pub fn into_record(self) -> Record {
        let mut record = match self.shape {
            ArbShape::Message(m) => Record::Message(MessageEventV1 {
                id: m.id,
                ts_ms: m.ts_ms,
                user: m.user,
                folder: m.folder,
                uid: m.uid,
                uidvalidity: m.uidvalidity,
                kind: m.kind,
                group_id: m.group_id,
                chat_keyword: m.chat_keyword,
                routed: m.routed,
                from: m.from,
                message_id: m.message_id,
                subject: m.subject,
                pid: m.pid,
                dropped_before: m.dropped_before,
                origin: if m.seen_move { MessageOrigin::SeenMove } else { MessageOrigin::Delivery },
                headers_protected: m.headers_protected,
            }),
            ArbShape::Fallback(f) => Record::Fallback(FallbackEventV1 {
                id: f.id,
                ts_ms: f.ts_ms,
                reason: FallbackReason::ALL[usize::from(f.reason) % FallbackReason::ALL.len()],
                pid: f.pid,
                dropped_before: f.dropped_before,
            }),
            ArbShape::Push(p) => Record::Push(PushEventV1 {
                id: p.id,
                ts_ms: p.ts_ms,
                user: p.user,
                message: PushMessageV1 {
                    from_email: p.message.from_email,
                    from_name: p.message.from_name,
                    subject: p.message.subject,
                    date_unix: p.message.date_unix,
                    message_id: p.message.message_id,
                    uid: p.message.uid,
                    uidvalidity: p.message.uidvalidity,
                    folder: p.message.folder,
                    group_id: p.message.group_id,
                    kind: p.message.kind,
                    content: p.message.content,
                },
                webpush: p.webpush.into_iter().map(ArbWebPushTarget::into_target).collect(),
                deltachat: p
                    .deltachat
                    .into_iter()
                    .map(|d| DeltaChatTargetV1 { token_key: d.token_key, token: d.token })
                    .collect(),
                pid: p.pid,
                dropped_before: p.dropped_before,
                targets_dropped: 0,
            }),
            ArbShape::WebPushValidation(w) => Record::WebPushValidation(WebPushValidationV1 {
                id: w.id,
                ts_ms: w.ts_ms,
                user: w.user,
                target: w.target.into_target(),
                secret: w.secret,
                pid: w.pid,
                dropped_before: w.dropped_before,
            }),
        };
        if let Some((which, times)) = self.amplify {
            amplify(&mut record, which, usize::from(times % 4096));
        }
        record
    }
}

/// Repeats one string field of `record` `times` times (field chosen by `which`).
fn amplify(record: &mut Record, which: u8, times: usize) {
    let grow = |s: &mut String| {
        if !s.is_empty() {
            *s = s.repeat(times.max(1));
        }
    };
    let grow_opt = |s: &mut Option<String>| {
        if let Some(v) = s {
            grow(v);
        }
    };
    match record {
        Record::Message(m) => match which % 8 {
            0 => grow(&mut m.id),
            1 => grow(&mut m.user),
            2 => grow(&mut m.folder),
            3 => grow(&mut m.kind),
            4 => grow_opt(&mut m.group_id),
            5 => grow_opt(&mut m.from),
            6 => grow_opt(&mut m.message_id),
            _ => grow_opt(&mut m.subject),
        },
        Record::Fallback(f) => grow(&mut f.id),
        Record::Push(p) => match which % 6 {
            0 => grow(&mut p.id),
            1 => grow_opt(&mut p.message.content),
            2 => grow_opt(&mut p.message.subject),
            3 => grow(&mut p.message.folder),
            4 => {
                // Many targets: targets are never cut, only dropped.
                if let Some(t) = p.webpush.first().cloned() {
                    p.webpush = vec![t; times.clamp(1, 64)];
                }
            }
            _ => grow_opt(&mut p.message.from_name),
        },
        Record::WebPushValidation(w) => match which % 2 {
            0 => grow(&mut w.user),
            _ => grow(&mut w.target.endpoint),
        },
        // generated inputs are of the four kinds above only
        Record::LocalCopy(_) | Record::RecallRequest(_) | Record::RecallOutcome(_) | Record::MessageRead(_) | Record::Mdn(_) => {}
    }
}

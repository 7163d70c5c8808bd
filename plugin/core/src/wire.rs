//! The event wire format between the plugin and `coi-sidecar` (docs/events.md).
//!
//! What this module owns:
//! - the versioned record shapes ([`MessageEventV1`], [`FallbackEventV1`],
//!   wrapped in [`Record`]) and their JSON form `{"v":1,"type":...,...}`;
//! - the RFC 7464 framing of the spool file: every record is `RS` (0x1E) +
//!   one compact JSON object + `LF` (0x0A), at most [`MAX_RECORD_BYTES`] in
//!   all ([`encode_record`], [`decode_record`], [`scan`]);
//! - the doorbell datagram `{"v":1,"type":"ring","dropped":N}`
//!   ([`encode_doorbell`], [`decode_doorbell`]).
//!
//! Invariants:
//! - [`encode`] and [`encode_record`] never panic and their output never
//!   exceeds [`MAX_RECORD_BYTES`]: descriptive strings are cut on UTF-8
//!   boundaries to fixed limits first, and if JSON escaping still makes the
//!   record too large those limits are halved until it fits.
//! - Identity fields are never cut: the event `id`, the `user`, the message
//!   `folder`, and every push target (an endpoint, key or token) and
//!   validation secret; a cut user made push jobs and clean-ups name the
//!   wrong user. When descriptive strings at zero still do not fit (many
//!   large push targets), trailing push targets are dropped, counted in the
//!   record's `targets_dropped` and reported by [`encode`], and the strings
//!   get back as much room as is left. A record whose identity alone does
//!   not fit is not written at all ([`EncodeError`]; the plugin counts it as
//!   a dropped event).
//! - An encoded record contains exactly one RS (the first byte) and one LF
//!   (the last): serde_json escapes every control character inside strings
//!   and writes compact JSON, so a reader can always resynchronise on RS.
//! - [`scan`] never panics on any bytes, consumes only complete records
//!   (an unterminated tail may be a write still in flight) and loses only the
//!   damaged record when a record is torn (RS seen again before its LF).
//! - Shapes never change meaning: a new shape gets a new `type` or `v`
//!   (STYLE §6). Unknown fields are ignored by the reader.
//!
//! Callers: the plugin (encode, doorbell) through `coi_core::spool`, and the
//! sidecar's spool reader and doorbell listener (decode, scan).

use serde::{Deserialize, Serialize};

/// First byte of every record (RFC 7464 "RS").
pub const RECORD_SEPARATOR: u8 = 0x1E;
/// Last byte of every record.
pub const LINE_FEED: u8 = 0x0A;
/// Largest record, RS and LF included.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
/// Largest doorbell datagram.
pub const MAX_DOORBELL_BYTES: usize = 512;
/// The only wire version this code reads and writes.
pub const WIRE_VERSION: u64 = 1;

/// Longest `message_id` kept, in bytes (RFC 5322 line limit).
pub const MESSAGE_ID_MAX_BYTES: usize = 998;
/// Longest `subject` kept, in bytes.
pub const SUBJECT_MAX_BYTES: usize = 256;
/// Longest `from`, `group_id` and push `from_email`/`from_name` kept, in
/// bytes (identity fields such as `user` and `folder` are never cut).
pub const NAME_MAX_BYTES: usize = 512;
/// Longest `kind` kept, in bytes (the real ones are at most 12).
pub const KIND_MAX_BYTES: usize = 32;

/// One message stored through delivery (`type: "message"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEventV1 {
    /// Unique event id (UUID v7); the webhook's `webhook-id`.
    pub id: String,
    /// Unix time of the delivery commit, milliseconds.
    pub ts_ms: u64,
    /// Dovecot username of the recipient.
    pub user: String,
    /// Folder the message was stored in.
    pub folder: String,
    /// IMAP UID of the stored message.
    pub uid: u32,
    /// IMAP UIDVALIDITY of the folder.
    pub uidvalidity: u32,
    /// `not-chat`, `chat`, `group-chat` or `read-receipt`.
    pub kind: String,
    /// COI group id of a group chat.
    pub group_id: Option<String>,
    /// The stored copy carries `$Chat`.
    pub chat_keyword: bool,
    /// The plugin filed the message into the chats folder.
    pub routed: bool,
    /// Sender address.
    pub from: Option<String>,
    /// Message-ID header as sent.
    pub message_id: Option<String>,
    /// Decoded Subject.
    pub subject: Option<String>,
    /// Pid of the writing Dovecot process.
    pub pid: u32,
    /// Events this process failed to append since its previous append.
    pub dropped_before: u64,
    /// How the message came to be stored; absent in records written before
    /// this field existed, which were all deliveries.
    #[serde(default)]
    pub origin: MessageOrigin,
    /// The chat's own headers are end-to-end encrypted (Delta Chat 2.x
    /// header protection, docs/deltachat.md): the server cannot know whether
    /// it is a group chat (`group_id` stays null), a read receipt or what
    /// its subject says. Written only when true; absent reads as false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_protected: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How a message came to be stored in `folder`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageOrigin {
    /// Stored by LMTP or dovecot-lda.
    #[default]
    Delivery,
    /// Moved from INBOX to the chats folder by `message-filter = seen` once
    /// the user read it (an IMAP session stored it).
    SeenMove,
}

impl MessageOrigin {
    /// The snake_case wire name; a bounded metric label.
    pub fn name(self) -> &'static str {
        match self {
            MessageOrigin::Delivery => "delivery",
            MessageOrigin::SeenMove => "seen_move",
        }
    }
}

/// Longest push `content` kept, in bytes: the whole encrypted Web Push
/// record must stay within 4096 bytes (DESIGN §3), so anything longer could
/// never be sent and is left out by the plugin.
pub const PUSH_CONTENT_MAX_BYTES: usize = 4000;
/// Longest Web Push endpoint (DESIGN §3).
pub const PUSH_ENDPOINT_MAX_BYTES: usize = 512;
/// Longest Delta Chat device token kept, in bytes.
pub const PUSH_TOKEN_MAX_BYTES: usize = 1024;

/// What a push says about the new message (the sidecar builds the Web Push
/// payload from it, truncating strings as DESIGN §3 asks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushMessageV1 {
    /// Sender address (`from-email`).
    pub from_email: Option<String>,
    /// Sender display name, decoded (`from-name`).
    pub from_name: Option<String>,
    /// Decoded Subject.
    pub subject: Option<String>,
    /// The Date header as unix seconds (`date`, sent as RFC 3339).
    pub date_unix: Option<i64>,
    /// Message-ID header as sent (`msg-id`).
    pub message_id: Option<String>,
    /// IMAP UID in `folder`.
    pub uid: u32,
    /// IMAP UIDVALIDITY of `folder`.
    pub uidvalidity: u32,
    /// Folder the message was stored in.
    pub folder: String,
    /// COI group id of a group chat.
    pub group_id: Option<String>,
    /// `not-chat`, `chat` or `group-chat` (read receipts are never pushed).
    pub kind: String,
    /// The body as stored (still end-to-end encrypted for chats), only when
    /// it is at most [`PUSH_CONTENT_MAX_BYTES`] of UTF-8.
    pub content: Option<String>,
}

/// A validated Web Push subscription of the user (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebPushTargetV1 {
    /// The subscription id (`.../webpush/subscriptions/<id>`).
    pub subscription_id: String,
    /// Push service URL.
    pub endpoint: String,
    /// Client public key, base64url (uncompressed P-256 point).
    pub p256dh: String,
    /// Client auth secret, base64url (16 octets).
    pub auth: String,
}

/// A Delta Chat device token of the user (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaChatTargetV1 {
    /// The token's METADATA key below
    /// `/private/vendor/vendor.dovecot/coi/devicetokens/` (the sidecar
    /// unsets it when the proxy answers 410).
    pub token_key: String,
    /// The opaque token, POSTed as is to the notification proxy.
    pub token: String,
}

/// A new message the user's push targets should hear about
/// (`type: "push"`). Written after the message event of the same delivery;
/// never for read receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEventV1 {
    /// Unique event id (UUID v7).
    pub id: String,
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    /// Dovecot username of the recipient.
    pub user: String,
    /// The message.
    pub message: PushMessageV1,
    /// Web Push subscriptions whose msgtype matches this message.
    pub webpush: Vec<WebPushTargetV1>,
    /// Delta Chat tokens (empty for mail the user sent themself).
    pub deltachat: Vec<DeltaChatTargetV1>,
    /// Pid of the writing Dovecot process.
    pub pid: u32,
    /// Events this process failed to append since its previous append.
    pub dropped_before: u64,
    /// Targets the encoder left out because the record would have exceeded
    /// [`MAX_RECORD_BYTES`] (set by [`encode`]; absent when 0, and in
    /// records written before the field existed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub targets_dropped: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A new Web Push subscription to validate (`type: "webpush_validation"`):
/// the sidecar pushes `{"validation":"<secret>"}` with a
/// `WebPush-Validation` header (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebPushValidationV1 {
    /// Unique event id (UUID v7).
    pub id: String,
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    /// Dovecot username of the subscriber.
    pub user: String,
    /// Where to push.
    pub target: WebPushTargetV1,
    /// The secret the client must send back to `.../<id>/validate`.
    pub secret: String,
    /// Pid of the writing Dovecot process.
    pub pid: u32,
    /// Events this process failed to append since its previous append.
    pub dropped_before: u64,
}

/// Why the plugin fell back to ordinary delivery. The names are a closed set,
/// usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// The message's headers could not be read.
    HeadersUnreadable,
    /// The user's METADATA could not be read.
    MetadataUnreadable,
    /// The chats folder could not be opened or created.
    FolderUnavailable,
    /// A bug (a caught panic, an unexpected state).
    InternalError,
    /// The plugin settings of the user are invalid.
    InvalidSettings,
}

impl FallbackReason {
    /// Every reason, for pre-registering metric label values.
    pub const ALL: [FallbackReason; 5] = [
        FallbackReason::HeadersUnreadable,
        FallbackReason::MetadataUnreadable,
        FallbackReason::FolderUnavailable,
        FallbackReason::InternalError,
        FallbackReason::InvalidSettings,
    ];

    /// The snake_case wire name; a bounded metric label.
    pub fn name(self) -> &'static str {
        match self {
            FallbackReason::HeadersUnreadable => "headers_unreadable",
            FallbackReason::MetadataUnreadable => "metadata_unreadable",
            FallbackReason::FolderUnavailable => "folder_unavailable",
            FallbackReason::InternalError => "internal_error",
            FallbackReason::InvalidSettings => "invalid_settings",
        }
    }
}

/// The plugin fell back to ordinary delivery (`type: "fallback"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackEventV1 {
    /// Unique event id (UUID v7).
    pub id: String,
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    /// What went wrong.
    pub reason: FallbackReason,
    /// Pid of the writing Dovecot process.
    pub pid: u32,
    /// Events this process failed to append since its previous append.
    pub dropped_before: u64,
}

/// A stored copy of a message that delivery took as authored by an
/// authenticated local user (`type: "local_copy"`, docs/recall.md): written
/// after the copy's message record, only when `coi_recall` or
/// `coi_read_status` is on and the sender trust check passed. The sidecar
/// keeps these in its index of stored copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalCopyV1 {
    /// Unique event id (UUID v7).
    pub id: String,
    /// Unix time of the delivery commit, milliseconds.
    pub ts_ms: u64,
    /// Dovecot username of the recipient.
    pub user: String,
    /// Folder the copy was stored in.
    pub folder: String,
    /// UID of the copy.
    pub uid: u32,
    /// UIDVALIDITY of the folder.
    pub uidvalidity: u32,
    /// Message-ID, normalized (`<left@right>`).
    pub message_id: String,
    /// The authenticated sender (login = From = envelope sender), lowercased.
    pub sender: String,
    /// Pid of the writing Dovecot process.
    pub pid: u32,
    /// Events this process failed to append since its previous append.
    pub dropped_before: u64,
}

/// A user asked to recall a message they sent (`type: "recall_request"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallRequestV1 {
    /// Unique event id (UUID v7); ties the outcomes to the request.
    pub id: String,
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    /// Dovecot username of the (authenticated) requester.
    pub user: String,
    /// The client's id of the request (its METADATA key's last part).
    pub request_id: String,
    /// Message-ID to recall, normalized.
    pub message_id: String,
    /// Pid of the writing Dovecot process.
    pub pid: u32,
    /// Events this process failed to append since its previous append.
    pub dropped_before: u64,
}

/// What happened to one copy in a recipient's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyResultV1 {
    /// Folder as recorded.
    pub folder: String,
    /// UIDVALIDITY as recorded.
    pub uidvalidity: u32,
    /// UID as recorded.
    pub uid: u32,
    /// The outcome.
    pub outcome: crate::recall::exec::CopyOutcome,
}

/// A recipient's account carried out a recall (`type: "recall_outcome"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallOutcomeV1 {
    /// Unique event id (UUID v7).
    pub id: String,
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    /// Dovecot username of the recipient.
    pub user: String,
    /// Event id of the request record.
    pub request: String,
    /// The requester.
    pub sender: String,
    /// The Message-ID.
    pub message_id: String,
    /// One result per copy asked about.
    pub copies: Vec<CopyResultV1>,
    /// Pid of the writing Dovecot process.
    pub pid: u32,
    /// Events this process failed to append since its previous append.
    pub dropped_before: u64,
}

/// A user who consents to read status set `\Seen` on a message for the
/// first time (`type: "read"`); never for replication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReadV1 {
    /// Unique event id (UUID v7).
    pub id: String,
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    /// Dovecot username of the reader.
    pub user: String,
    /// Folder of the message.
    pub folder: String,
    /// UID of the message.
    pub uid: u32,
    /// UIDVALIDITY of the folder.
    pub uidvalidity: u32,
    /// Message-ID, normalized.
    pub message_id: String,
    /// Pid of the writing Dovecot process.
    pub pid: u32,
    /// Events this process failed to append since its previous append.
    pub dropped_before: u64,
}

/// An unencrypted MDN (RFC 8098) was delivered to a local user
/// (`type: "mdn"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdnV1 {
    /// Unique event id (UUID v7).
    pub id: String,
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    /// Dovecot username of the MDN's recipient (the original sender).
    pub user: String,
    /// The `Original-Message-ID`, normalized.
    pub original_message_id: String,
    /// The MDN's From address (who read it).
    pub reporter: Option<String>,
    /// The disposition type (`displayed`, `deleted`, ...).
    pub disposition: String,
    /// Pid of the writing Dovecot process.
    pub pid: u32,
    /// Events this process failed to append since its previous append.
    pub dropped_before: u64,
}

/// Any record of the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `{"v":1,"type":"message",...}`
    Message(MessageEventV1),
    /// `{"v":1,"type":"fallback",...}`
    Fallback(FallbackEventV1),
    /// `{"v":1,"type":"push",...}`
    Push(PushEventV1),
    /// `{"v":1,"type":"webpush_validation",...}`
    WebPushValidation(WebPushValidationV1),
    /// `{"v":1,"type":"local_copy",...}`
    LocalCopy(LocalCopyV1),
    /// `{"v":1,"type":"recall_request",...}`
    RecallRequest(RecallRequestV1),
    /// `{"v":1,"type":"recall_outcome",...}`
    RecallOutcome(RecallOutcomeV1),
    /// `{"v":1,"type":"read",...}`
    MessageRead(MessageReadV1),
    /// `{"v":1,"type":"mdn",...}`
    Mdn(MdnV1),
}

impl Record {
    /// The event id.
    pub fn id(&self) -> &str {
        match self {
            Record::Message(m) => &m.id,
            Record::Fallback(f) => &f.id,
            Record::Push(p) => &p.id,
            Record::WebPushValidation(w) => &w.id,
            Record::LocalCopy(r) => &r.id,
            Record::RecallRequest(r) => &r.id,
            Record::RecallOutcome(r) => &r.id,
            Record::MessageRead(r) => &r.id,
            Record::Mdn(r) => &r.id,
        }
    }

    /// Events the writer dropped before this one.
    pub fn dropped_before(&self) -> u64 {
        match self {
            Record::Message(m) => m.dropped_before,
            Record::Fallback(f) => f.dropped_before,
            Record::Push(p) => p.dropped_before,
            Record::WebPushValidation(w) => w.dropped_before,
            Record::LocalCopy(r) => r.dropped_before,
            Record::RecallRequest(r) => r.dropped_before,
            Record::RecallOutcome(r) => r.dropped_before,
            Record::MessageRead(r) => r.dropped_before,
            Record::Mdn(r) => r.dropped_before,
        }
    }

    /// Unix time of the event, milliseconds.
    pub fn ts_ms(&self) -> u64 {
        match self {
            Record::Message(m) => m.ts_ms,
            Record::Fallback(f) => f.ts_ms,
            Record::Push(p) => p.ts_ms,
            Record::WebPushValidation(w) => w.ts_ms,
            Record::LocalCopy(r) => r.ts_ms,
            Record::RecallRequest(r) => r.ts_ms,
            Record::RecallOutcome(r) => r.ts_ms,
            Record::MessageRead(r) => r.ts_ms,
            Record::Mdn(r) => r.ts_ms,
        }
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Bytes that are not a record: no RS, not UTF-8 JSON, not an object.
    #[error("garbage: {0}")]
    Garbage(String),
    /// A record longer than [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes exceeds the limit")]
    Oversized(usize),
    /// A `v` or `type` this code does not know.
    #[error("unsupported version or type: {0}")]
    Version(String),
    /// A known shape with missing or mistyped fields.
    #[error("invalid record: {0}")]
    Json(String),
    /// A record cut short: the next RS came before its LF.
    #[error("torn record of {0} bytes")]
    Torn(usize),
}

impl WireError {
    /// Bounded metric label.
    pub fn error_type(&self) -> &'static str {
        match self {
            WireError::Garbage(_) => "garbage",
            WireError::Oversized(_) => "oversized",
            WireError::Version(_) => "version",
            WireError::Json(_) => "json",
            WireError::Torn(_) => "torn",
        }
    }

    /// A record error never heals by reading the same bytes again.
    pub fn is_retriable(&self) -> bool {
        false
    }

    /// Every label [`WireError::error_type`] can return.
    pub const ERROR_TYPES: [&'static str; 5] = ["garbage", "oversized", "version", "json", "torn"];
}

/// Serialises `{"v":1,"type":T, ...fields of body}`.
#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    v: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

/// Only the envelope, read first to dispatch on `v` and `type`.
#[derive(Deserialize)]
struct Envelope<'a> {
    v: Option<serde_json::Value>,
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// Returns the longest prefix of `s` of at most `max_bytes` bytes that ends
/// on a UTF-8 character boundary.
pub fn truncate_utf8(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn cut(s: &mut String, max_bytes: usize) {
    let keep = truncate_utf8(s, max_bytes).len();
    s.truncate(keep);
}

fn cut_opt(s: &mut Option<String>, max_bytes: usize) {
    if let Some(v) = s.as_mut() {
        cut(v, max_bytes);
    }
}

/// Applies the limits of the descriptive fields divided by `2^shift`;
/// identity fields (see the module docs) are never touched.
fn limit_fields(record: &mut Record, shift: u32) {
    let lim = |max: usize| max >> shift;
    match record {
        Record::Message(m) => {
            cut(&mut m.kind, lim(KIND_MAX_BYTES));
            cut_opt(&mut m.group_id, lim(NAME_MAX_BYTES));
            cut_opt(&mut m.from, lim(NAME_MAX_BYTES));
            cut_opt(&mut m.message_id, lim(MESSAGE_ID_MAX_BYTES));
            cut_opt(&mut m.subject, lim(SUBJECT_MAX_BYTES));
        }
        Record::Fallback(_) | Record::WebPushValidation(_) => {}
        Record::Push(p) => {
            let m = &mut p.message;
            // Content is optional in the payload: drop it rather than cut
            // it, a cut ciphertext is useless to the client.
            if shift > 0 {
                m.content = None;
            }
            cut_opt(&mut m.content, PUSH_CONTENT_MAX_BYTES);
            cut_opt(&mut m.from_email, lim(NAME_MAX_BYTES));
            cut_opt(&mut m.from_name, lim(NAME_MAX_BYTES));
            cut_opt(&mut m.subject, lim(SUBJECT_MAX_BYTES));
            cut_opt(&mut m.message_id, lim(MESSAGE_ID_MAX_BYTES));
            cut_opt(&mut m.group_id, lim(NAME_MAX_BYTES));
            cut(&mut m.kind, lim(KIND_MAX_BYTES));
        }
        // Recall and read records carry names that must match exactly
        // (folders, Message-IDs): they are never cut, only checked for size
        // before they are written (plugin/src/recall_ops.rs).
        Record::LocalCopy(_) | Record::RecallRequest(_) | Record::RecallOutcome(_) | Record::MessageRead(_) | Record::Mdn(_) => {}
    }
}

/// Halvings after which every descriptive limit is 0.
const LAST_SHIFT: u32 = 10;

/// Keeps the first `keep` push targets (Web Push first, then Delta Chat)
/// and records how many went.
fn keep_targets(p: &mut PushEventV1, keep: usize) {
    let before = p.webpush.len() + p.deltachat.len();
    p.webpush.truncate(keep);
    p.deltachat.truncate(keep.saturating_sub(p.webpush.len()));
    let dropped = before - (p.webpush.len() + p.deltachat.len());
    p.targets_dropped = p.targets_dropped.saturating_add(u32::try_from(dropped).unwrap_or(u32::MAX));
}

/// The framed record if it fits.
fn fitting(record: &Record) -> Option<Vec<u8>> {
    to_framed_json(record).ok().filter(|b| b.len() <= MAX_RECORD_BYTES)
}

/// The first of the limit steps `0..=LAST_SHIFT` at which `record` fits.
fn shrink_text(record: &Record) -> Option<Vec<u8>> {
    let mut working = record.clone();
    (0..=LAST_SHIFT).find_map(|shift| {
        limit_fields(&mut working, shift);
        fitting(&working)
    })
}

/// Why a record cannot be written at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Even with every descriptive field empty and every push target
    /// dropped, the identity fields (never cut) exceed the limit.
    #[error("the record's identity fields alone exceed {MAX_RECORD_BYTES} bytes")]
    IdentityTooLarge,
}

impl EncodeError {
    /// Bounded label for logs and counters.
    pub fn error_type(&self) -> &'static str {
        "identity_too_large"
    }

    /// The same record never fits later.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// An encoded record and what had to go to make it fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// RS + JSON + LF, at most [`MAX_RECORD_BYTES`].
    pub bytes: Vec<u8>,
    /// Push targets left out (also in the record's `targets_dropped`).
    pub targets_dropped: u32,
}

fn to_framed_json(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    out.push(RECORD_SEPARATOR);
    match record {
        Record::Message(m) => serde_json::to_writer(
            &mut out,
            &Tagged { v: WIRE_VERSION, kind: "message", body: m },
        )?,
        Record::Fallback(f) => serde_json::to_writer(
            &mut out,
            &Tagged { v: WIRE_VERSION, kind: "fallback", body: f },
        )?,
        Record::Push(p) => serde_json::to_writer(
            &mut out,
            &Tagged { v: WIRE_VERSION, kind: "push", body: p },
        )?,
        Record::WebPushValidation(w) => serde_json::to_writer(
            &mut out,
            &Tagged { v: WIRE_VERSION, kind: "webpush_validation", body: w },
        )?,
        Record::LocalCopy(r) => serde_json::to_writer(&mut out, &Tagged { v: WIRE_VERSION, kind: "local_copy", body: r })?,
        Record::RecallRequest(r) => serde_json::to_writer(&mut out, &Tagged { v: WIRE_VERSION, kind: "recall_request", body: r })?,
        Record::RecallOutcome(r) => serde_json::to_writer(&mut out, &Tagged { v: WIRE_VERSION, kind: "recall_outcome", body: r })?,
        Record::MessageRead(r) => serde_json::to_writer(&mut out, &Tagged { v: WIRE_VERSION, kind: "read", body: r })?,
        Record::Mdn(r) => serde_json::to_writer(&mut out, &Tagged { v: WIRE_VERSION, kind: "mdn", body: r })?,
    }
    out.push(LINE_FEED);
    Ok(out)
}

/// Encodes `record` as one spool record: RS + JSON + LF, never longer than
/// [`MAX_RECORD_BYTES`]. Descriptive strings are cut on UTF-8 boundaries,
/// push targets dropped from the end when they alone do not fit; identity
/// fields are never cut (see the module docs). Never panics.
pub fn encode(record: &Record) -> Result<Encoded, EncodeError> {
    // Shift 0 applies the documented limits; each further step halves them.
    if let Some(bytes) = shrink_text(record) {
        return Ok(Encoded { bytes, targets_dropped: 0 });
    }
    let Record::Push(push) = record else {
        return Err(EncodeError::IdentityTooLarge);
    };
    // The targets do not fit even with every string empty: keep as many as
    // fit then (a binary search over how many), and give the strings back
    // what room is left.
    let mut bare = Record::Push(push.clone());
    limit_fields(&mut bare, LAST_SHIFT);
    let with = |keep: usize| {
        let mut r = bare.clone();
        if let Record::Push(p) = &mut r {
            keep_targets(p, keep);
        }
        r
    };
    let (mut fits, mut too_many) = (0usize, push.webpush.len() + push.deltachat.len());
    if fitting(&with(0)).is_none() {
        return Err(EncodeError::IdentityTooLarge);
    }
    while too_many - fits > 1 {
        let mid = fits + (too_many - fits) / 2;
        if fitting(&with(mid)).is_some() {
            fits = mid;
        } else {
            too_many = mid;
        }
    }
    let mut kept = push.clone();
    keep_targets(&mut kept, fits);
    let targets_dropped = kept.targets_dropped - push.targets_dropped;
    let bytes = shrink_text(&Record::Push(kept)).ok_or(EncodeError::IdentityTooLarge)?;
    Ok(Encoded { bytes, targets_dropped })
}

/// [`encode`], writing a record the reader rejects and counts (type
/// `unencodable`) when the record cannot be written at all.
pub fn encode_record(record: &Record) -> Vec<u8> {
    encode(record).map_or_else(|_| UNENCODABLE.to_vec(), |e| e.bytes)
}

/// What [`encode_record`] writes for a record that cannot fit.
pub const UNENCODABLE: &[u8] = b"\x1e{\"v\":1,\"type\":\"unencodable\"}\n";

/// Decodes one record body (the bytes between RS and LF, neither included).
pub fn decode_record(body: &[u8]) -> Result<Record, WireError> {
    if body.len() + 2 > MAX_RECORD_BYTES {
        return Err(WireError::Oversized(body.len() + 2));
    }
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            WireError::Json(e.to_string())
        } else {
            WireError::Garbage(e.to_string())
        }
    })?;
    match envelope.v.as_ref().and_then(serde_json::Value::as_u64) {
        Some(WIRE_VERSION) => {}
        Some(other) => return Err(WireError::Version(format!("v={other}"))),
        None => return Err(WireError::Version("missing or non-integer v".into())),
    }
    match envelope.kind.as_deref() {
        Some("message") => serde_json::from_slice::<MessageEventV1>(body)
            .map(Record::Message)
            .map_err(|e| WireError::Json(e.to_string())),
        Some("fallback") => serde_json::from_slice::<FallbackEventV1>(body)
            .map(Record::Fallback)
            .map_err(|e| WireError::Json(e.to_string())),
        Some("push") => serde_json::from_slice::<PushEventV1>(body)
            .map(Record::Push)
            .map_err(|e| WireError::Json(e.to_string())),
        Some("webpush_validation") => serde_json::from_slice::<WebPushValidationV1>(body)
            .map(Record::WebPushValidation)
            .map_err(|e| WireError::Json(e.to_string())),
        Some("local_copy") => serde_json::from_slice::<LocalCopyV1>(body)
            .map(Record::LocalCopy)
            .map_err(|e| WireError::Json(e.to_string())),
        Some("recall_request") => serde_json::from_slice::<RecallRequestV1>(body)
            .map(Record::RecallRequest)
            .map_err(|e| WireError::Json(e.to_string())),
        Some("recall_outcome") => serde_json::from_slice::<RecallOutcomeV1>(body)
            .map(Record::RecallOutcome)
            .map_err(|e| WireError::Json(e.to_string())),
        Some("read") => serde_json::from_slice::<MessageReadV1>(body)
            .map(Record::MessageRead)
            .map_err(|e| WireError::Json(e.to_string())),
        Some("mdn") => serde_json::from_slice::<MdnV1>(body)
            .map(Record::Mdn)
            .map_err(|e| WireError::Json(e.to_string())),
        Some(other) => Err(WireError::Version(format!(
            "type={}",
            truncate_utf8(other, 32)
        ))),
        None => Err(WireError::Version("missing type".into())),
    }
}

/// One result of [`scan`].
#[derive(Debug)]
// A push record made Record large; items are moved once from the scan into
// the queue, so boxing would cost an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
pub enum ScanItem {
    /// A complete, valid record.
    Record(Record),
    /// Bytes that were consumed but did not form a valid record.
    Rejected(WireError),
}

fn find(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
    buf.get(from..)?
        .iter()
        .position(|&b| b == byte)
        .map(|p| p + from)
}

/// Scans a buffer read from a spool file starting at a record boundary.
///
/// Returns the complete records and rejections, and how many bytes were
/// consumed. An incomplete final record (RS without LF yet, and shorter than
/// [`MAX_RECORD_BYTES`]) is not consumed: a write may still be in flight.
/// Garbage before an RS is skipped and reported once as
/// [`WireError::Garbage`]; a record whose LF never came before the next RS
/// is reported as [`WireError::Torn`]; an unterminated tail longer than the
/// record limit is consumed as [`WireError::Oversized`] (it can never become
/// valid). Never panics.
pub fn scan(buf: &[u8]) -> (Vec<ScanItem>, usize) {
    let mut items = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        if buf[pos] != RECORD_SEPARATOR {
            let next = find(buf, pos, RECORD_SEPARATOR).unwrap_or(buf.len());
            items.push(ScanItem::Rejected(WireError::Garbage(format!(
                "{} bytes outside any record",
                next - pos
            ))));
            pos = next;
            continue;
        }
        let body_start = pos + 1;
        let lf = find(buf, body_start, LINE_FEED);
        let next_rs = find(buf, body_start, RECORD_SEPARATOR);
        match (lf, next_rs) {
            (Some(lf), rs) if rs.is_none_or(|rs| lf < rs) => {
                let body = &buf[body_start..lf];
                items.push(match decode_record(body) {
                    Ok(record) => ScanItem::Record(record),
                    Err(e) => ScanItem::Rejected(e),
                });
                pos = lf + 1;
            }
            (_, Some(rs)) => {
                items.push(ScanItem::Rejected(WireError::Torn(rs - pos)));
                pos = rs;
            }
            (_, None) => {
                let pending = buf.len() - pos;
                if pending > MAX_RECORD_BYTES {
                    items.push(ScanItem::Rejected(WireError::Oversized(pending)));
                    pos = buf.len();
                }
                break;
            }
        }
    }
    (items, pos)
}

/// The doorbell datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doorbell {
    /// Events the sending process dropped and has reported nowhere else
    /// (docs/events.md); the sidecar adds it to its dropped counter.
    pub dropped: u64,
}

/// Why a datagram is not a doorbell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoorbellError {
    /// Longer than [`MAX_DOORBELL_BYTES`].
    #[error("datagram of {0} bytes exceeds the doorbell limit")]
    Oversized(usize),
    /// Not a JSON doorbell object.
    #[error("not a doorbell: {0}")]
    Garbage(String),
    /// A `v` this code does not know.
    #[error("unsupported doorbell version {0}")]
    Version(String),
}

impl DoorbellError {
    /// Bounded metric label.
    pub fn error_type(&self) -> &'static str {
        match self {
            DoorbellError::Oversized(_) => "oversized",
            DoorbellError::Garbage(_) => "garbage",
            DoorbellError::Version(_) => "version",
        }
    }

    /// A bad datagram stays bad.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

#[derive(Serialize, Deserialize)]
struct DoorbellWire<'a> {
    v: serde_json::Value,
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    dropped: u64,
}

/// Encodes `{"v":1,"type":"ring","dropped":N}`.
pub fn encode_doorbell(doorbell: &Doorbell) -> Vec<u8> {
    format!(
        "{{\"v\":{WIRE_VERSION},\"type\":\"ring\",\"dropped\":{}}}",
        doorbell.dropped
    )
    .into_bytes()
}

/// Decodes a doorbell datagram.
pub fn decode_doorbell(datagram: &[u8]) -> Result<Doorbell, DoorbellError> {
    if datagram.len() > MAX_DOORBELL_BYTES {
        return Err(DoorbellError::Oversized(datagram.len()));
    }
    let wire: DoorbellWire<'_> =
        serde_json::from_slice(datagram).map_err(|e| DoorbellError::Garbage(e.to_string()))?;
    if wire.v.as_u64() != Some(WIRE_VERSION) {
        let shown = wire.v.to_string();
        return Err(DoorbellError::Version(truncate_utf8(&shown, 32).to_string()));
    }
    if wire.kind != "ring" {
        return Err(DoorbellError::Garbage(format!(
            "type {}",
            truncate_utf8(&wire.kind, 32)
        )));
    }
    Ok(Doorbell {
        dropped: wire.dropped,
    })
}

/// A new event id: a UUID v7 (time-ordered), hyphenated lowercase.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recall_and_read_records_round_trip_uncut() {
        use crate::recall::exec::CopyOutcome;
        let long_folder = "F".repeat(512);
        let records = [
            Record::LocalCopy(LocalCopyV1 {
                id: "e1".into(), ts_ms: 1, user: "bob".into(), folder: long_folder.clone(), uid: 7, uidvalidity: 9,
                message_id: "<m@x>".into(), sender: "alice@x".into(), pid: 1, dropped_before: 0,
            }),
            Record::RecallRequest(RecallRequestV1 {
                id: "e2".into(), ts_ms: 2, user: "alice@x".into(), request_id: "r1".into(), message_id: "<m@x>".into(),
                pid: 1, dropped_before: 0,
            }),
            Record::RecallOutcome(RecallOutcomeV1 {
                id: "e3".into(), ts_ms: 3, user: "bob".into(), request: "e2".into(), sender: "alice@x".into(),
                message_id: "<m@x>".into(),
                copies: (0..crate::recall::exec::MAX_COPIES as u32)
                    .map(|uid| CopyResultV1 { folder: long_folder.clone(), uidvalidity: 9, uid: uid + 1, outcome: CopyOutcome::AlreadyRead })
                    .collect(),
                pid: 1, dropped_before: 0,
            }),
            Record::MessageRead(MessageReadV1 {
                id: "e4".into(), ts_ms: 4, user: "bob".into(), folder: "INBOX".into(), uid: 7, uidvalidity: 9,
                message_id: "<m@x>".into(), pid: 1, dropped_before: 0,
            }),
            Record::Mdn(MdnV1 {
                id: "e5".into(), ts_ms: 5, user: "alice@x".into(), original_message_id: "<m@x>".into(),
                reporter: Some("carol@remote".into()), disposition: "displayed".into(), pid: 1, dropped_before: 0,
            }),
        ];
        for record in records {
            let bytes = encode_record(&record);
            assert!(bytes.len() <= MAX_RECORD_BYTES);
            let (items, used) = scan(&bytes);
            assert_eq!(used, bytes.len());
            match &items[..] {
                [ScanItem::Record(back)] => assert_eq!(back, &record),
                other => panic!("{other:?}"),
            }
        }
    }

    fn message(id: &str) -> MessageEventV1 {
        MessageEventV1 {
            id: id.to_string(),
            ts_ms: 1_700_000_000_000,
            user: "alice@example.org".into(),
            folder: "COI/Chats".into(),
            uid: 7,
            uidvalidity: 1_234,
            kind: "group-chat".into(),
            group_id: Some("abcdefghijkl".into()),
            chat_keyword: true,
            routed: true,
            from: Some("bob@example.org".into()),
            message_id: Some("<chat$group.abcdefghijkl.x@example.org>".into()),
            subject: Some("Grüße".into()),
            pid: 4242,
            dropped_before: 0,
        origin: Default::default(),
        headers_protected: false,
        }
    }

    fn body(encoded: &[u8]) -> &[u8] {
        &encoded[1..encoded.len() - 1]
    }

    #[test]
    fn headers_protected_is_optional_on_the_wire() {
        // false is not written, so records of chats with readable headers
        // (and every record from before the field) stay byte-identical.
        let plain = encode_record(&Record::Message(message("0190b1d2-0000-7000-8000-0000000000a1")));
        assert!(!std::str::from_utf8(&plain).unwrap().contains("headers_protected"));
        let mut m = message("0190b1d2-0000-7000-8000-0000000000a2");
        m.kind = "chat".into();
        m.group_id = None;
        m.headers_protected = true;
        let bytes = encode_record(&Record::Message(m.clone()));
        assert!(std::str::from_utf8(&bytes).unwrap().contains("\"headers_protected\":true"));
        assert_eq!(decode_record(body(&bytes)).unwrap(), Record::Message(m));
        let old = br#"{"v":1,"type":"message","id":"x","ts_ms":1,"user":"u","folder":"INBOX","uid":1,"uidvalidity":1,"kind":"chat","group_id":null,"chat_keyword":true,"routed":false,"from":null,"message_id":null,"subject":null,"pid":1,"dropped_before":0}"#;
        match decode_record(old).unwrap() {
            Record::Message(m) => assert!(!m.headers_protected),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn message_round_trips_with_v_and_type() {
        let rec = Record::Message(message("0190b1d2-0000-7000-8000-000000000001"));
        let bytes = encode_record(&rec);
        assert_eq!(bytes[0], RECORD_SEPARATOR);
        assert_eq!(*bytes.last().unwrap(), LINE_FEED);
        let text = std::str::from_utf8(body(&bytes)).unwrap();
        assert!(text.starts_with(r#"{"v":1,"type":"message","id":"#), "{text}");
        assert_eq!(decode_record(body(&bytes)).unwrap(), rec);
    }

    #[test]
    fn fallback_round_trips_with_snake_case_reason() {
        let rec = Record::Fallback(FallbackEventV1 {
            id: new_event_id(),
            ts_ms: 5,
            reason: FallbackReason::MetadataUnreadable,
            pid: 1,
            dropped_before: 3,
        });
        let bytes = encode_record(&rec);
        let text = std::str::from_utf8(body(&bytes)).unwrap();
        assert!(text.contains(r#""type":"fallback""#));
        assert!(text.contains(r#""reason":"metadata_unreadable""#));
        assert_eq!(decode_record(body(&bytes)).unwrap(), rec);
        assert_eq!(rec.dropped_before(), 3);
        for r in FallbackReason::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.name()));
        }
    }

    #[test]
    fn decode_classifies_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "garbage"),
            (b"[1,2]", "json"),
            (br#"{"v":2,"type":"message"}"#, "version"),
            (br#"{"type":"message"}"#, "version"),
            (br#"{"v":1,"type":"party"}"#, "version"),
            (br#"{"v":1,"type":"message","id":"x"}"#, "json"),
            (b"\xff\xfe", "garbage"),
        ];
        for (input, want) in cases {
            let err = decode_record(input).unwrap_err();
            assert_eq!(err.error_type(), *want, "{:?}: {err}", String::from_utf8_lossy(input));
            assert!(!err.is_retriable());
        }
        let big = vec![b' '; MAX_RECORD_BYTES];
        assert_eq!(decode_record(&big).unwrap_err().error_type(), "oversized");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let rec = Record::Message(message("id-1"));
        let bytes = encode_record(&rec);
        let text = std::str::from_utf8(body(&bytes)).unwrap();
        let extended = text.replacen("{", r#"{"future":{"x":[1]},"#, 1);
        assert_eq!(decode_record(extended.as_bytes()).unwrap(), rec);
    }

    #[test]
    fn scan_keeps_incomplete_tail_and_resyncs_after_garbage() {
        let a = encode_record(&Record::Message(message("a")));
        let b = encode_record(&Record::Message(message("b")));
        let mut buf = b"junk".to_vec();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&b[..b.len() - 1]);
        let (items, used) = scan(&buf);
        assert_eq!(used, 4 + a.len());
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0], ScanItem::Rejected(e) if e.error_type() == "garbage"));
        assert!(matches!(&items[1], ScanItem::Record(r) if r.id() == "a"));
    }

    #[test]
    fn scan_consumes_an_endless_unterminated_record_as_oversized() {
        let mut buf = vec![RECORD_SEPARATOR];
        buf.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
        let (items, used) = scan(&buf);
        assert_eq!(used, buf.len());
        assert!(matches!(&items[..], [ScanItem::Rejected(e)] if e.error_type() == "oversized"));
    }

    #[test]
    fn doorbell_round_trip_and_errors() {
        let d = Doorbell { dropped: 17 };
        let bytes = encode_doorbell(&d);
        assert_eq!(bytes, br#"{"v":1,"type":"ring","dropped":17}"#);
        assert_eq!(decode_doorbell(&bytes).unwrap(), d);
        let cases: &[(&[u8], &str)] = &[
            (b"hello", "garbage"),
            (br#"{"v":1,"type":"knock","dropped":0}"#, "garbage"),
            (br#"{"v":2,"type":"ring","dropped":0}"#, "version"),
            (br#"{"v":"1","type":"ring","dropped":0}"#, "version"),
            (br#"{"v":1,"type":"ring"}"#, "garbage"),
        ];
        for (input, want) in cases {
            assert_eq!(decode_doorbell(input).unwrap_err().error_type(), *want);
        }
        let big = vec![b'{'; MAX_DOORBELL_BYTES + 1];
        assert_eq!(decode_doorbell(&big).unwrap_err().error_type(), "oversized");
    }

    #[test]
    fn event_ids_are_uuid_v7_lowercase_and_time_ordered() {
        let a = new_event_id();
        let b = new_event_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert_eq!(a, a.to_lowercase());
        assert!(a < b || a[..13] == b[..13]);
    }

    #[test]
    fn truncate_utf8_cuts_on_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
        assert_eq!(truncate_utf8("€", 0), "");
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,40}",
            "[\\x00-\\x1f\"\\\\]{0,40}",
            proptest::collection::vec(any::<char>(), 0..60).prop_map(|v| v.into_iter().collect()),
        ]
    }

    fn arb_message() -> impl Strategy<Value = MessageEventV1> {
        (
            (arb_text(), any::<u64>(), arb_text(), arb_text(), any::<u32>(), any::<u32>()),
            (arb_text(), proptest::option::of(arb_text()), any::<bool>(), any::<bool>()),
            (
                proptest::option::of(arb_text()),
                proptest::option::of(arb_text()),
                proptest::option::of(arb_text()),
                any::<u32>(),
                any::<u64>(),
            ),
        )
            .prop_map(
                |(
                    (id, ts_ms, user, folder, uid, uidvalidity),
                    (kind, group_id, chat_keyword, routed),
                    (from, message_id, subject, pid, dropped_before),
                )| MessageEventV1 {
                    id,
                    ts_ms,
                    user,
                    folder,
                    uid,
                    uidvalidity,
                    kind,
                    group_id,
                    chat_keyword,
                    routed,
                    from,
                    message_id,
                    subject,
                    pid,
                    dropped_before,
                origin: Default::default(),
                headers_protected: false,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn encode_then_scan_round_trips(msgs in proptest::collection::vec(arb_message(), 1..8)) {
            let mut buf = Vec::new();
            let records: Vec<Record> = msgs.into_iter().map(Record::Message).collect();
            for r in &records {
                buf.extend_from_slice(&encode_record(r));
            }
            let (items, used) = scan(&buf);
            prop_assert_eq!(used, buf.len());
            prop_assert_eq!(items.len(), records.len());
            for (item, want) in items.iter().zip(&records) {
                // Field limits apply on encode; compare with the limited form.
                let mut want = want.clone();
                limit_fields(&mut want, 0);
                let want = &want;
                match item {
                    ScanItem::Record(got) => prop_assert_eq!(got, want),
                    ScanItem::Rejected(e) => prop_assert!(false, "rejected: {}", e),
                }
            }
        }

        #[test]
        fn scan_never_panics_and_never_overruns(buf in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let (items, used) = scan(&buf);
            prop_assert!(used <= buf.len());
            // Whatever is left must be a possible in-flight record.
            if used < buf.len() {
                prop_assert_eq!(buf[used], RECORD_SEPARATOR);
            }
            let _ = items;
        }

        #[test]
        fn scan_resumes_where_it_stopped(msgs in proptest::collection::vec(arb_message(), 1..5), split in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            for m in msgs.iter().cloned() {
                buf.extend_from_slice(&encode_record(&Record::Message(m)));
            }
            let cut_at = split.index(buf.len() + 1);
            let (mut first, used) = scan(&buf[..cut_at]);
            let (second, used2) = scan(&buf[used..]);
            prop_assert_eq!(used + used2, buf.len());
            first.extend(second);
            prop_assert_eq!(first.len(), msgs.len());
            prop_assert!(first.iter().all(|i| matches!(i, ScanItem::Record(_))));
        }

        #[test]
        fn torn_record_loses_only_itself(a in arb_message(), b in arb_message(), c in arb_message(), frac in 0.0f64..1.0) {
            let ea = encode_record(&Record::Message(a.clone()));
            let eb = encode_record(&Record::Message(b));
            let ec = encode_record(&Record::Message(c.clone()));
            // b is torn: only a prefix of it (RS included, its LF missing) was written.
            let keep = 1 + ((eb.len() - 2) as f64 * frac) as usize;
            let mut buf = ea.clone();
            buf.extend_from_slice(&eb[..keep]);
            buf.extend_from_slice(&ec);
            let (items, used) = scan(&buf);
            prop_assert_eq!(used, buf.len());
            prop_assert_eq!(items.len(), 3);
            let limited = |m: MessageEventV1| {
                let mut r = Record::Message(m);
                limit_fields(&mut r, 0);
                r
            };
            let (a, c) = (limited(a), limited(c));
            prop_assert!(matches!(&items[0], ScanItem::Record(r) if *r == a));
            prop_assert!(matches!(&items[1], ScanItem::Rejected(WireError::Torn(_))));
            prop_assert!(matches!(&items[2], ScanItem::Record(r) if *r == c));
        }

        #[test]
        fn encoded_record_never_exceeds_the_limit(
            ctl in any::<bool>(),
            len in 0usize..40_000,
            ch in any::<char>(),
            identity_len in 0usize..6_000,
        ) {
            let fill: String = if ctl { "\u{1}".repeat(len) } else { std::iter::repeat_n(ch, len).collect() };
            let ident: String = if ctl { "\u{1}".repeat(identity_len) } else { std::iter::repeat_n(ch, identity_len).collect() };
            let m = MessageEventV1 {
                id: ident.clone(), ts_ms: u64::MAX, user: ident.clone(), folder: ident.clone(),
                uid: u32::MAX, uidvalidity: u32::MAX, kind: fill.clone(),
                group_id: Some(fill.clone()), chat_keyword: true, routed: true,
                from: Some(fill.clone()), message_id: Some(fill.clone()), subject: Some(fill),
                pid: u32::MAX, dropped_before: u64::MAX,
                origin: Default::default(),
                headers_protected: false,
            };
            let rec = Record::Message(m.clone());
            let bytes = encode_record(&rec);
            prop_assert!(bytes.len() <= MAX_RECORD_BYTES, "{} bytes", bytes.len());
            prop_assert_eq!(bytes.iter().filter(|&&b| b == RECORD_SEPARATOR).count(), 1);
            prop_assert_eq!(bytes.iter().filter(|&&b| b == LINE_FEED).count(), 1);
            match encode(&rec) {
                Ok(_) => {
                    let Ok(Record::Message(back)) = decode_record(body(&bytes)) else {
                        return Err(TestCaseError::fail("not a message"));
                    };
                    // Identity is kept whole, or the record is not written.
                    prop_assert_eq!((&back.id, &back.user, &back.folder), (&m.id, &m.user, &m.folder));
                }
                Err(EncodeError::IdentityTooLarge) => {
                    prop_assert_eq!(&bytes[..], UNENCODABLE);
                    let mut bare = m.clone();
                    bare.kind.clear();
                    bare.group_id = None;
                    bare.from = None;
                    bare.message_id = None;
                    bare.subject = None;
                    prop_assert!(to_framed_json(&Record::Message(bare)).unwrap().len() > MAX_RECORD_BYTES);
                }
            }
        }
    }

    fn big_push(user: &str, tokens: usize, token_bytes: usize) -> PushEventV1 {
        PushEventV1 {
            id: new_event_id(),
            ts_ms: 1,
            user: user.into(),
            message: PushMessageV1 {
                from_email: Some("bob@example.org".into()),
                from_name: Some("Bob".into()),
                subject: Some("hello there".into()),
                message_id: Some("<chat$x@example.org>".into()),
                uid: 3,
                uidvalidity: 4,
                folder: "COI/Chats".into(),
                kind: "chat".into(),
                content: Some("x".repeat(3000)),
                ..Default::default()
            },
            webpush: vec![],
            deltachat: (0..tokens)
                .map(|i| DeltaChatTargetV1 { token_key: format!("{i:016x}"), token: format!("{i:04}").repeat(token_bytes / 4) })
                .collect(),
            pid: 1,
            dropped_before: 0,
            targets_dropped: 0,
        }
    }

    #[test]
    fn identity_is_never_cut_targets_are_dropped_and_counted() {
        // Issue 12 item 11: 32 tokens of 1 KiB overflow a 16 KiB record.
        // The user (here longer than any halved limit) must stay whole.
        let user = format!("{}@example.org", "a-rather-long-user-name".repeat(8));
        let p = big_push(&user, 32, PUSH_TOKEN_MAX_BYTES);
        let enc = encode(&Record::Push(p.clone())).unwrap();
        assert!(enc.bytes.len() <= MAX_RECORD_BYTES);
        let Record::Push(back) = decode_record(body(&enc.bytes)).unwrap() else { panic!("not a push") };
        assert_eq!(back.user, user, "the user is never cut");
        assert_eq!(back.id, p.id);
        assert_eq!(back.message.folder, "COI/Chats");
        assert!(enc.targets_dropped > 0 && (enc.targets_dropped as usize) < 32, "{}", enc.targets_dropped);
        assert_eq!(back.targets_dropped, enc.targets_dropped, "the record carries the count");
        assert_eq!(back.deltachat.len() + enc.targets_dropped as usize, 32);
        assert_eq!(back.deltachat[..], p.deltachat[..back.deltachat.len()], "targets kept whole, in order");
        // As many targets as fit: one more would not.
        let mut one_more = back.clone();
        one_more.deltachat.push(p.deltachat[back.deltachat.len()].clone());
        one_more.message = PushMessageV1 { content: None, subject: None, from_name: None, from_email: None, message_id: None, group_id: None, ..one_more.message };
        assert!(to_framed_json(&Record::Push(one_more)).unwrap().len() > MAX_RECORD_BYTES);
        // The room left goes back to the strings.
        assert_eq!(back.message.subject.as_deref(), Some("hello there"));
    }

    #[test]
    fn small_push_records_are_untouched_and_carry_no_count() {
        let p = big_push("alice@example.org", 2, 64);
        let enc = encode(&Record::Push(p.clone())).unwrap();
        assert_eq!(enc.targets_dropped, 0);
        assert!(!std::str::from_utf8(&enc.bytes).unwrap().contains("targets_dropped"));
        assert_eq!(decode_record(body(&enc.bytes)).unwrap(), Record::Push(p));
    }

    #[test]
    fn a_record_whose_identity_cannot_fit_is_not_written() {
        let p = big_push(&"u".repeat(MAX_RECORD_BYTES), 1, 64);
        assert_eq!(encode(&Record::Push(p.clone())), Err(EncodeError::IdentityTooLarge));
        assert_eq!(encode_record(&Record::Push(p)), UNENCODABLE);
        let mut m = message("x");
        m.user = "u".repeat(600);
        let Record::Message(back) = decode_record(body(&encode_record(&Record::Message(m.clone())))).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(back.user, m.user, "longer than the old 512-byte limit, kept whole");
    }

    #[test]
    fn limits_are_applied_as_documented() {
        let mut m = message("x");
        m.subject = Some("é".repeat(200)); // 400 bytes
        m.message_id = Some("m".repeat(2000));
        let bytes = encode_record(&Record::Message(m));
        let Record::Message(back) = decode_record(body(&bytes)).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(back.subject.unwrap().len(), 256);
        assert_eq!(back.message_id.unwrap().len(), MESSAGE_ID_MAX_BYTES);
    }
}

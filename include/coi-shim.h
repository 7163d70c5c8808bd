/*
 * coi-shim.h - the only contract between the C shim (plugin/shim/) and the
 * Rust side of the coi plugin (plugin/src/). bindgen reads this file and
 * nothing else: Dovecot's own structs never cross into Rust, because their
 * layout changes with the Dovecot ABI version and only C compiled against the
 * target headers may touch them.
 *
 * Rules for everything declared here:
 *  - plain C types only: fixed-width integers, (ptr, len) byte slices,
 *    integer codes and opaque `void *` handles;
 *  - all calls happen on the Dovecot process's single ioloop thread;
 *  - byte slices passed shim -> Rust are borrowed for the duration of one
 *    call (they live in Dovecot pools or on its data stack); Rust copies what
 *    it keeps;
 *  - int32_t returns: 0 = OK, -1 = error (already logged by the callee).
 */
#ifndef COI_SHIM_H
#define COI_SHIM_H

#include <stddef.h>
#include <stdint.h>

/* Bumped whenever a struct or function below changes shape. Rust refuses to
   start the plugin when the shim reports another version. */
#define COI_SHIM_ABI 7

/* A borrowed byte slice. ptr == NULL means "absent" (a header that is not
   there, a metadata entry that is NIL), which is different from an empty
   value (ptr != NULL, len == 0). */
struct coi_bytes {
	const uint8_t *ptr;
	size_t len;
};

/* Log levels understood by coi_shim_log(). */
enum coi_log_level {
	COI_LOG_DEBUG = 0,
	COI_LOG_INFO = 1,
	COI_LOG_WARNING = 2,
	COI_LOG_ERROR = 3,
};

/* Message kinds, as decided by the classifier (coi-core). */
enum coi_kind {
	COI_KIND_NOT_CHAT = 0,
	COI_KIND_CHAT = 1,
	COI_KIND_GROUP_CHAT = 2,
	COI_KIND_READ_RECEIPT = 3,
};

/* The header fields the classifier looks at, each the first occurrence of
   that field in the message, as Dovecot returns it from
   mail_get_first_header(). */
struct coi_message_headers {
	struct coi_bytes chat_version;
	struct coi_bytes message_id;
	struct coi_bytes references;
	struct coi_bytes content_type;
	/* raw, undecoded: the header-protected Delta Chat rule reads them */
	struct coi_bytes from;
	struct coi_bytes to;
	struct coi_bytes subject;
};

/* Why the plugin fell back to ordinary delivery (counted via the sidecar). */
enum coi_fallback_reason {
	COI_FALLBACK_HEADERS_UNREADABLE = 1,
	COI_FALLBACK_METADATA_UNREADABLE = 2,
	COI_FALLBACK_FOLDER_UNAVAILABLE = 3,
};

/* The plugin settings of one user, raw strings from the `plugin {}` block
   (absent = not set), plus the username. Validated by Rust once per user. */
struct coi_user_settings {
	struct coi_bytes username;
	struct coi_bytes default_enabled;        /* coi_default_enabled */
	struct coi_bytes default_message_filter; /* coi_default_message_filter */
	struct coi_bytes mailbox_root;           /* coi_mailbox_root */
	struct coi_bytes spool_path;             /* coi_spool_path */
	struct coi_bytes spool_max_size;         /* coi_spool_max_size */
	struct coi_bytes sidecar_socket;         /* coi_sidecar_socket */
	struct coi_bytes fast_notify;            /* coi_fast_notify */
	struct coi_bytes webpush_vapid_key;      /* coi_webpush_vapid_key */
	struct coi_bytes webpush_subscription_limit; /* coi_webpush_subscription_limit */
	struct coi_bytes webpush_validation_timeout; /* coi_webpush_validation_timeout */
	struct coi_bytes deltachat_push;         /* coi_deltachat_push */
	struct coi_bytes webpush_allow_private_endpoints; /* coi_webpush_allow_private_endpoints */
	struct coi_bytes deltachat_max_smtp_recipients; /* coi_deltachat_max_smtp_recipients */
	struct coi_bytes recall;                 /* coi_recall */
	struct coi_bytes sender_trust;           /* coi_sender_trust */
	struct coi_bytes read_status;            /* coi_read_status */
	struct coi_bytes default_read_status;    /* coi_default_read_status */
};

/* What Dovecot already knows about the message being delivered, for the
   event (mail_deliver_context's fields; absent when unknown). */
struct coi_delivery_facts {
	struct coi_bytes message_id;
	struct coi_bytes subject;  /* decoded to UTF-8 */
	struct coi_bytes from;     /* sender address */
};

/* One message stored by a delivery transaction, after its commit. */
struct coi_stored_message {
	struct coi_bytes folder;   /* UTF-8 mailbox name */
	uint32_t uid;
	uint32_t uid_validity;
};

/* The user's COI server METADATA, read by the shim only for chats. */
struct coi_user_metadata {
	struct coi_bytes enabled;        /* .../coi/config/enabled */
	struct coi_bytes message_filter; /* .../coi/config/message-filter */
};

/* What Rust decided for one delivered message. */
struct coi_delivery_decision {
	int32_t kind;            /* enum coi_kind */
	int32_t add_chat_keyword; /* 1 = every stored copy gets $Chat */
	int32_t file_into_chats;  /* 1 = make <root>/Chats the default mailbox */
	/* Name of the chats folder (UTF-8, namespace separator applied).
	   Owned by the user handle; valid until user_free(). */
	struct coi_bytes chats_folder;
};

/* Capabilities an IMAP session of the user gets after login (bit set). */
enum coi_capability {
	COI_CAPABILITY_COI = 1,
	COI_CAPABILITY_WEBPUSH = 2,
	COI_CAPABILITY_XDELTAPUSH = 4,
};

/* The per-user COI config keys below
   /private/vendor/vendor.dovecot/coi/config/ (DESIGN §3). */
enum coi_config_key {
	COI_CONFIG_MAILBOX_ROOT = 0,
	COI_CONFIG_ENABLED = 1,
	COI_CONFIG_MESSAGE_FILTER = 2,
};

/* A mailbox operation of an IMAP (or doveadm) session, seen before it is
   carried out. */
enum coi_folder_op {
	COI_FOLDER_CREATE = 0,
	COI_FOLDER_DELETE = 1,
	COI_FOLDER_RENAME = 2,
};

/* What a folder operation means for COI (folder_change()). */
enum coi_folder_action {
	COI_FOLDER_ACTION_NONE = 0,    /* not about COI: carry on */
	COI_FOLDER_ACTION_ENABLE = 1,  /* carry on, then set enabled=yes */
	COI_FOLDER_ACTION_DISABLE = 2, /* carry on, then set enabled=NIL */
	COI_FOLDER_ACTION_REFUSE = 3,  /* refuse with *error_r */
};

struct coi_folder_change {
	int32_t op;                  /* enum coi_folder_op */
	struct coi_bytes name;       /* CREATE/DELETE: the mailbox; RENAME: source */
	struct coi_bytes new_name;   /* RENAME: destination; else absent */
	struct coi_bytes trash_name; /* the \Trash mailbox, absent if none */
	uint8_t separator;           /* the namespace's hierarchy separator */
};

/* Why a raw COI entry from dsync or an import was refused (stored_check). */
enum coi_refusal {
	COI_REFUSAL_INVALID = 1,          /* fails the client's validation */
	COI_REFUSAL_PRIVATE_ENDPOINT = 2, /* Web Push endpoint on a private address */
	COI_REFUSAL_LIMIT = 3,            /* over the per-user limit */
	COI_REFUSAL_UNKNOWN_KEY = 4,      /* no entry the plugin writes */
	COI_REFUSAL_INACTIVE = 5,         /* COI is not active for the user */
};

/* A message about to be pushed (after its delivery commit). Lists are
   parallel arrays borrowed for the call. */
struct coi_push_input {
	/* stored values of the user's Web Push subscriptions */
	const struct coi_bytes *subscriptions;
	uint32_t subscription_count;
	/* the user's Delta Chat tokens: METADATA key names and stored values */
	const struct coi_bytes *token_keys;
	const struct coi_bytes *tokens;
	uint32_t token_count;
	struct coi_bytes from_name;   /* decoded display name of From */
	struct coi_bytes recipient;   /* envelope recipient address */
	int64_t date_unix;            /* Date header, when has_date == 1 */
	int32_t has_date;
	struct coi_bytes content;     /* the body, absent when too large */
	struct coi_stored_message message;
};

/* What recall and read status need from the shim for a user
   (recall_needs(), a bit set; docs/recall.md). */
enum coi_recall_need {
	/* delivery: run the sender trust check (Received headers, From,
	   envelope sender) for local_copy records */
	COI_RECALL_NEED_TRUST = 1,
	/* delivery: read unencrypted MDNs (read status) */
	COI_RECALL_NEED_MDN = 2,
	/* IMAP: the user may request recalls */
	COI_RECALL_NEED_REQUESTS = 4,
	/* IMAP/doveadm: read status is offered (consent key, \Seen notes) */
	COI_RECALL_NEED_READ_STATUS = 8,
};

/* What happened to one copy a recall asked about (coi_core::recall::exec). */
enum coi_recall_outcome {
	COI_RECALL_RECALLED = 0,
	COI_RECALL_ALREADY_READ = 1,
	COI_RECALL_NOT_FOUND = 2,
	COI_RECALL_FAILED = 3,
};

/* A user's stored COI values, read raw for `doveadm coi export` (absent =
   not stored). Lists are parallel arrays borrowed for the call. */
struct coi_raw_state {
	struct coi_bytes enabled;
	struct coi_bytes message_filter;
	const struct coi_bytes *sub_ids;
	const struct coi_bytes *sub_values;
	uint32_t sub_count;
	const struct coi_bytes *token_keys;
	const struct coi_bytes *token_values;
	uint32_t token_count;
};

/*
 * Callbacks the shim calls into Rust. Rust hands the shim a pointer to a
 * static table in coi_shim_init(); the table outlives the plugin.
 * Every function is wrapped by Rust's panic guard: a panic is caught, logged,
 * poisons the plugin for this process (every later call returns -1 / NULL at
 * once) and is reported as -1. The shim treats -1 as "leave delivery alone".
 */
struct coi_rs_ops {
	/* Must equal COI_SHIM_ABI. */
	uint32_t abi;

	/* Called from the mail_user_created hook. `log_event` is the user's
	   struct event * (used for log lines only, during this call).
	   Returns an owned handle, or NULL when the settings are invalid (the
	   reason was logged as an error): the plugin then stays inactive for
	   this user. */
	void *(*user_new)(void *log_event,
			  const struct coi_user_settings *settings);
	/* Releases a handle from user_new(). NULL is ignored. */
	void (*user_free)(void *user);

	/* Starts a delivery to `user`: classifies the message and remembers
	   the kind and `facts` in the handle for decide() and
	   message_stored(). Returns 0 and sets *kind_r, or -1. */
	int32_t (*classify)(void *user,
			    const struct coi_message_headers *headers,
			    const struct coi_delivery_facts *facts,
			    int32_t *kind_r);

	/* Decides routing for the message classify() just saw. `metadata` is
	   NULL when the message is not a chat (not read) or when the user's
	   METADATA could not be read (then Rust leaves a chat alone).
	   `separator` is the hierarchy separator of the user's INBOX
	   namespace. `log_event` is the user's struct event *, so debug lines
	   carry the session prefix. Returns 0 and fills *decision_r, or -1. */
	int32_t (*decide)(void *user, void *log_event,
			  const struct coi_user_metadata *metadata,
			  uint8_t separator,
			  struct coi_delivery_decision *decision_r);

	/* The shim could not carry out the decision, or could not even
	   classify: records a fallback (enum coi_fallback_reason) for the
	   plugin's counters. The delivery proceeds as without the plugin. */
	void (*fallback)(void *user, int32_t reason);

	/* An IMAP client started IDLE/NOTIFY on `folder` (UTF-8 name, in a
	   namespace with hierarchy separator `separator`). Returns 1 when the
	   folder gets fast change notifications (coi_fast_notify), 0 when
	   Dovecot's own delayed watcher is left alone. `metadata` is the
	   user's COI METADATA for INBOX, NULL for other folders or when it
	   could not be read. */
	int32_t (*notify_scope)(void *user, void *log_event,
				const struct coi_bytes *folder,
				uint8_t separator,
				const struct coi_user_metadata *metadata);

	/* 1 when this user's stored messages should be reported through
	   message_stored() (an event spool is configured and present), 0 if
	   not; the shim then skips the per-commit work entirely. */
	int32_t (*wants_events)(void *user);

	/* A delivery transaction of this user committed `message` (called
	   once per stored message, after the commit, so UIDs are final).
	   Rust appends the event to the spool and rings the sidecar; it never
	   blocks on the sidecar. Returns 0, or -1 if the event was dropped
	   (counted and logged by Rust). */
	int32_t (*message_stored)(void *user, void *log_event,
				  const struct coi_stored_message *message);

	/*
	 * IMAP side. Out-parameters of type struct coi_bytes point into a
	 * scratch buffer of the user handle: valid until the next call on the
	 * same handle, so the shim copies them at once.
	 */

	/* enum coi_capability bits for an IMAP session of this user. */
	uint32_t (*capabilities)(void *user);

	/* The value GETMETADATA shows for a config key when none is stored
	   (mailbox-root: always the configured root; the others: the plugin
	   default). Returns 1 with *value_r, 0 for NIL. */
	int32_t (*config_get)(void *user, int32_t key, struct coi_bytes *value_r);
	/* Validates a SETMETADATA value for a config key (value->ptr NULL =
	   NIL). Returns 1 when allowed and the value turns COI on (`enabled`
	   yes: the shim creates the folders first), 0 when allowed, -1 with
	   *error_r (a message for the client) when not. */
	int32_t (*config_check)(void *user, int32_t key,
				const struct coi_bytes *value,
				struct coi_bytes *error_r);
	/* The user's COI folder names for a namespace separator. */
	int32_t (*folder_names)(void *user, uint8_t separator,
				struct coi_bytes *chats_r,
				struct coi_bytes *contacts_r);
	/* What a CREATE, DELETE or RENAME means for COI. Returns an enum
	   coi_folder_action (REFUSE with *error_r), or -1. */
	int32_t (*folder_change)(void *user, void *log_event,
				 const struct coi_folder_change *change,
				 struct coi_bytes *error_r);
	/* 1 when read chats in INBOX move to the chats folder (enabled and
	   message-filter seen, METADATA over defaults), else 0. */
	int32_t (*seen_moves)(void *user, const struct coi_user_metadata *metadata);
	/* A read chat was moved from INBOX to `message` by seen mode: emit its
	   event (origin seen_move). */
	int32_t (*message_moved)(void *user, void *log_event,
				 const struct coi_message_headers *headers,
				 const struct coi_delivery_facts *facts,
				 const struct coi_stored_message *message);

	/* Web Push (IMAP WebPush extension). 1 when `id` is a valid
	   subscription id, else 0. */
	int32_t (*webpush_check_id)(void *user, const struct coi_bytes *id);
	/* SETMETADATA of a subscription: validates `json` (the client's
	   value), given `others` live subscriptions besides this id; returns
	   0 with *stored_r (what to store) after queueing the validation push,
	   or -1 with *error_r for the client. */
	int32_t (*webpush_subscribe)(void *user, void *log_event,
				     const struct coi_bytes *id,
				     const struct coi_bytes *json,
				     uint32_t others,
				     struct coi_bytes *stored_r,
				     struct coi_bytes *error_r);
	/* The client answered the validation push with `secret`: returns 0
	   with the new *stored_r, or -1 with *error_r. */
	int32_t (*webpush_validate)(void *user, const struct coi_bytes *stored,
				    const struct coi_bytes *secret,
				    struct coi_bytes *stored_r,
				    struct coi_bytes *error_r);
	/* What GETMETADATA shows for a stored subscription: 1 with
	   *public_r, 0 when it is expired (unvalidated too long) or
	   unreadable, which the shim then deletes. */
	int32_t (*webpush_view)(void *user, const struct coi_bytes *stored,
				struct coi_bytes *public_r);
	/* The sidecar's VAPID public key (PEM): 1 with *pem_r, 0 if none. */
	int32_t (*vapid_key)(void *user, struct coi_bytes *pem_r);
	/* GETMETADATA "" /shared/vendor/deltachat/maxsmtprecipients: 1 with
	   the decimal value in *value_r (valid until the next call on the
	   handle), 0 when not served (coi_deltachat_max_smtp_recipients
	   unset, or Delta Chat push settings invalid). */
	int32_t (*deltachat_max_smtp_recipients)(void *user,
						 struct coi_bytes *value_r);
	/* SETMETADATA INBOX /private/devicetoken, the user having `others`
	   other tokens: returns 0 with the key name to store it under and the
	   stored value, or -1 with *error_r. */
	int32_t (*devicetoken_set)(void *user, const struct coi_bytes *token,
				   uint32_t others,
				   struct coi_bytes *key_r,
				   struct coi_bytes *stored_r,
				   struct coi_bytes *error_r);
	/* The token inside a stored value: 1 with *token_r, 0 if unreadable. */
	int32_t (*devicetoken_view)(void *user, const struct coi_bytes *stored,
				    struct coi_bytes *token_r);
	/* 1 when the delivery classify() just saw should be pushed (Web Push
	   or Delta Chat configured, an event spool present, not a read
	   receipt, not pushed yet), so the shim collects push_input. */
	int32_t (*wants_push)(void *user);
	/* Emits the push record for the delivery in progress. */
	int32_t (*push)(void *user, void *log_event,
			const struct coi_push_input *input);
	/*
	 * Recall and read status (docs/recall.md). Out-parameters of type
	 * struct coi_bytes point into the handle's scratch buffers, as for the
	 * IMAP side above.
	 */

	/* enum coi_recall_need bits for this user. */
	uint32_t (*recall_needs)(void *user);
	/* Delivery: the message classify() just saw has these Received header
	   values (topmost first), From address (local@domain) and envelope
	   sender. Rust decides whether it was submitted by an authenticated
	   local user and, if so, records a local_copy event for each stored
	   copy (in message_stored()). Returns 0, or -1. */
	int32_t (*trust_check)(void *user, void *log_event,
			       const struct coi_bytes *received,
			       uint32_t received_count,
			       const struct coi_bytes *from,
			       const struct coi_bytes *envelope_from);
	/* Delivery: the message is a multipart/report; `body` is its body
	   (absent when too large), `reporter` the From address. An MDN that
	   says "displayed" is recorded (an mdn event with the first stored
	   copy). Returns 0, or -1. */
	int32_t (*mdn_seen)(void *user, const struct coi_bytes *content_type,
			    const struct coi_bytes *body,
			    const struct coi_bytes *reporter);
	/* IMAP: SETMETADATA .../coi/recall/<id> "<message-id>" by the user.
	   Returns 0 with *stored_r (the pending state to store) after the
	   request event was written, or -1 with *error_r for the client. */
	int32_t (*recall_request)(void *user, void *log_event,
				  const struct coi_bytes *request_id,
				  const struct coi_bytes *message_id,
				  struct coi_bytes *stored_r,
				  struct coi_bytes *error_r);
	/* doveadm (the sidecar): the final state of a request. Returns 0 with
	   *stored_r (checked JSON), or -1 when malformed. */
	int32_t (*recall_state_check)(void *user, const struct coi_bytes *json,
				      struct coi_bytes *stored_r);
	/* 1 when `id` is a valid request id (lowercase), else 0. */
	int32_t (*recall_check_id)(void *user, const struct coi_bytes *id);
	/* doveadm (the sidecar): .../coi/recall-execute. Parses the request
	   into the handle and returns the number of copies (> 0), or -1 when
	   malformed. */
	int32_t (*recall_exec_begin)(void *user, const struct coi_bytes *json);
	/* Copy `index` of the parsed request: its folder (slot 0). */
	int32_t (*recall_exec_copy)(void *user, uint32_t index,
				    struct coi_bytes *folder_r,
				    uint32_t *uidvalidity_r, uint32_t *uid_r);
	/* 1 when a copy's Message-ID header value and From address are those
	   of the parsed request, else 0. */
	int32_t (*recall_exec_matches)(void *user,
				       const struct coi_bytes *message_id_header,
				       const struct coi_bytes *from);
	/* The outcome of copy `index` (enum coi_recall_outcome). */
	void (*recall_exec_result)(void *user, uint32_t index, int32_t outcome);
	/* Writes the recall_outcome event of the parsed request. */
	int32_t (*recall_exec_finish)(void *user, void *log_event);
	/* 1 when the user consents to read status: `stored` is the stored
	   .../coi/config/read-status value (absent = NIL). */
	int32_t (*read_consents)(void *user, const struct coi_bytes *stored);
	/* SETMETADATA .../coi/config/read-status: 0 when allowed, -1 with
	   *error_r. */
	int32_t (*read_consent_check)(void *user, const struct coi_bytes *value,
				      struct coi_bytes *error_r);
	/* What GETMETADATA shows for read-status when nothing is stored:
	   1 with *value_r (the site default), 0 when read status is off. */
	int32_t (*read_consent_default)(void *user, struct coi_bytes *value_r);
	/* A consenting user set \Seen on a message for the first time (not
	   replication): writes the read event. Returns 0, or -1. */
	int32_t (*message_read)(void *user, void *log_event,
				const struct coi_stored_message *message,
				const struct coi_bytes *message_id_header);
	/* doveadm (the sidecar): .../coi/read-mark. Returns 0 with the
	   Message-ID to mark (slot 0), or -1 when malformed. */
	int32_t (*read_mark_parse)(void *user, const struct coi_bytes *json,
				   struct coi_bytes *message_id_r);
	/* doveadm: the sender's copies of a read mark (`json`) were marked.
	   Prepares the handle's delivery state so push() writes a Web Push
	   for the sender (msgtype chat, no Delta Chat token): returns 1 when
	   the shim should collect the push targets (coi_push_collect()),
	   0 when the user has no push. */
	int32_t (*read_push_prepare)(void *user, const struct coi_bytes *json);

	/* A raw value that dsync or `doveadm coi import` is about to store
	   below vendor/vendor.dovecot/pvt/coi/: `name` relative to that
	   prefix ("webpush/<id>" or "devicetokens/<key>"), the user having
	   `others` other live entries of that kind. Applies the checks a
	   client's SETMETADATA gets (and, for a subscription, which arrives
	   already validated, the private-endpoint rule). Returns 0 when it
	   may be stored, or -1 with *error_r and *reason_r (enum
	   coi_refusal). */
	int32_t (*stored_check)(void *user, const struct coi_bytes *name,
				const struct coi_bytes *value, uint32_t others,
				struct coi_bytes *error_r, int32_t *reason_r);

	/* `doveadm coi export`: the document (one line of JSON) of `state`. */
	int32_t (*export_document)(void *user, const struct coi_raw_state *state,
				   struct coi_bytes *json_r);
	/* `doveadm coi import`: the writes the document `json` asks for, as
	   records "c<name>\0<value>\0" (a config key, set as a client would)
	   or "r<name>\0<value>\0" (a raw entry below
	   vendor/vendor.dovecot/pvt/coi/), config first. Returns 0 with
	   *plan_r, or -1 with *error_r when it is no COI export document. */
	int32_t (*import_plan)(void *user, const struct coi_bytes *json,
			       struct coi_bytes *plan_r,
			       struct coi_bytes *error_r);
};

/* Rust -> shim. Called from coi_plugin_init(). `module` is Dovecot's struct
   module * for this plugin. Installs the hooks that exist in this process.
   Returns 0, or -1 when the ops table is unusable (nothing installed). */
int32_t coi_shim_init(void *module, const struct coi_rs_ops *ops);

/* Rust -> shim. Called from coi_plugin_deinit(): removes every hook in the
   reverse order of installation. */
void coi_shim_deinit(void);

/* Rust -> shim. Called from doveadm_coi_plugin_init() when the same .so is
   loaded as a doveadm plugin (<moduledir>/doveadm/lib10_doveadm_coi_plugin.so,
   a symlink): registers the `doveadm coi` commands. Does nothing outside
   doveadm. */
void coi_shim_doveadm_init(void);
void coi_shim_doveadm_deinit(void);

/* Rust -> shim. Logs `msg[0..len]` through Dovecot's logger on `event`
   (a struct event *, or NULL for the process's default logger). The shim
   uses a constant "%.*s" format, so the text is never interpreted. */
void coi_shim_log(void *event, int32_t level, const uint8_t *msg, size_t len);

/* Rust -> shim. 1 when debug logging is on for `event` (mail_debug = yes),
   so Rust can skip formatting debug lines nobody will see. */
int32_t coi_shim_debug_enabled(void *event);

#endif

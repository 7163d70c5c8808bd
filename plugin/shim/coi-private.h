/* coi-private.h - what the shim's files share: the per-user and
 * per-mailbox module contexts, the ops table, and the entry points each file
 * offers the others. Not seen by Rust (include/coi-shim.h is the contract).
 */
#ifndef COI_PRIVATE_H
#define COI_PRIVATE_H

#include "lib.h"
#include "module-context.h"
#include "mail-user.h"
#include "array.h"
#include "mail-storage-private.h"

#include "coi-shim.h"

#if DOVECOT_PREREQ(2, 4, 0)
/* coi-settings24.c: the plugin's settings as Dovecot 2.4 declares them
   (settings_get()); field names are the setting keys. */
struct coi_settings {
	pool_t pool;
	bool coi_default_enabled;
	const char *coi_default_message_filter;
	const char *coi_mailbox_root;
	const char *coi_spool_path;
	uoff_t coi_spool_max_size;
	const char *coi_sidecar_socket;
	const char *coi_fast_notify;
	const char *coi_webpush_vapid_key;
	unsigned int coi_webpush_subscription_limit;
	unsigned int coi_webpush_validation_timeout;
	bool coi_deltachat_push;
	bool coi_webpush_allow_private_endpoints;
	unsigned int coi_deltachat_max_smtp_recipients;
	bool coi_recall;
	const char *coi_sender_trust;
	bool coi_read_status;
	bool coi_default_read_status;
};
extern const struct setting_parser_info coi_setting_parser_info;
/* 2.4's str_begins() has a third (suffix) parameter */
#  define coi_str_begins(str, prefix) str_begins_with(str, prefix)
#else
#  define coi_str_begins(str, prefix) str_begins(str, prefix)
#endif

#define COI_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, coi_user_module)
#define COI_USER_CONTEXT_REQUIRE(obj) \
	MODULE_CONTEXT_REQUIRE(obj, coi_user_module)
#define COI_MAILBOX_CONTEXT_REQUIRE(obj) \
	MODULE_CONTEXT_REQUIRE(obj, coi_storage_module)

struct coi_user {
	union mail_user_module_context module_ctx;
	/* Rust's handle (validated settings); NULL = plugin inactive for
	   this user, e.g. because its settings are invalid. */
	void *rs;
};

struct coi_mailbox {
	union mailbox_module_context module_ctx;
	/* fast change notifications (IMAP IDLE/NOTIFY), see coi-notify.c */
	struct io *notify_io;      /* on the index log file */
	struct io *notify_dir_io;  /* on its directory: log rotation */
	struct timeout *notify_to;
	const char *notify_path;   /* index log path, box->pool */
	const char *notify_dir;
	ino_t notify_ino;
	dev_t notify_dev;
	/* the notify callback we relay to (see coi_notify_relay) */
	mailbox_notify_callback_t *notify_callback;
	/* seen mode applies: INBOX of an IMAP or doveadm session (coi-seen.c) */
	bool seen_mode;
};

extern MODULE_CONTEXT_DEFINE(coi_user_module, &mail_user_module_register);
extern MODULE_CONTEXT_DEFINE(coi_storage_module, &mail_storage_module_register);

/* Dovecot's module for this plugin, and Rust's callbacks (coi-plugin.c). */
extern struct module *coi_module;
extern const struct coi_rs_ops *coi_ops;

static inline struct coi_bytes coi_bytes_from_str(const char *str)
{
	struct coi_bytes bytes;

	bytes.ptr = (const uint8_t *)str;
	bytes.len = str == NULL ? 0 : strlen(str);
	return bytes;
}

/* Dovecot keeps server METADATA as private attributes of INBOX under this
   prefix (mailbox-attribute.h). */
#define COI_SERVER_ATTR(key) MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT_SERVER key
#define COI_CONFIG_KEY_PREFIX "vendor/vendor.dovecot/coi/config/"
#define COI_KEYWORD_CHAT "$Chat"

/* coi-plugin.c: the user's Rust handle, NULL when COI is inactive. */
void *coi_user_rs(struct mail_user *user);
/* The hierarchy separator of the user's INBOX namespace. */
char coi_user_separator(struct mail_user *user);

/* coi-folders.c: makes sure `vname` exists (creating it, subscribed when
   `subscribe`, and tolerating a concurrent creator). The plugin's own
   creation: never taken for a user's CREATE. Returns 0 when it exists
   now, -1 with *error_r. */
int coi_folder_ensure(struct mail_user *user, const char *vname,
		      bool subscribe, const char **error_r);
/* The name of the user's \Trash mailbox, or NULL if none is configured. */
const char *coi_trash_name(struct mail_user *user);

/* coi-attributes.c: the internal METADATA attributes (COI config, Web
   Push, Delta Chat tokens), registered for the whole process. */
void coi_attributes_register(void);
void coi_attributes_unregister(void);
/* Stores .../coi/config/enabled "yes" or "no" as a client would (so
   enabling creates the folders): the user's own choice, which the site
   default never overrides. Returns 0, or -1 with *error_r. */
int coi_set_enabled(struct mail_user *user, bool enabled, const char **error_r);
/* Sets config key `name` (below .../coi/config/) to `value` (NULL = NIL)
   through IMAP METADATA, validated as a client's (coi-metadata.c). */
int coi_set_config(struct mail_user *user, const char *name,
		   const char *value, const char **error_r);
/* The user's raw COI entries (data stack), for `doveadm coi export`, and
   how many live subscriptions and tokens the user has. */
int coi_read_raw_state(struct mail_user *user, struct coi_raw_state *state_r);
int coi_count_targets(struct mail_user *user, unsigned int *subscriptions_r,
		      unsigned int *tokens_r);
/* While set, raw COI entries being written come from `doveadm coi
   import` (for the log line and the coi_value_refused event). */
void coi_attributes_importing(bool importing);
/* "dsync", "import", or NULL when a client writes. */
const char *coi_value_source(struct mail_user *user);
/* Logs a refused value from dsync or an import and emits the named event
   coi_value_refused (fields item, reason, source) for Dovecot's stats. */
void coi_value_refused(struct mail_user *user, const char *item,
		       const char *reason, const char *error);
/* Collects the user's push targets for a delivered message and hands
   them to Rust (coi-deliver.c calls it after the first stored copy).
   `open_inbox` is the user's INBOX when the caller has it open (the
   delivery just committed there), else NULL: the marker is read there
   without opening INBOX again. */
void coi_push_collect(struct mail_user *user, struct mailbox *open_inbox,
		      struct mail *src_mail, const char *recipient,
		      const struct coi_stored_message *message);

/* coi-imap.c: COI/WEBPUSH/XDELTAPUSH capabilities (imap only). */
void coi_imap_install(void);
void coi_imap_uninstall(void);

/* coi-lifecycle.c: CREATE/DELETE/RENAME of the chats folder. */
int coi_create_box(struct mailbox *box, const struct mailbox_update *update,
		   bool directory);
int coi_delete_box(struct mailbox *box);
int coi_rename_box(struct mailbox *src, struct mailbox *dest);
/* While quiet, folder operations are COI's own (enabling creates the
   folders) and are not taken for a user's CREATE. Returns the old state. */
bool coi_lifecycle_quiet(bool quiet);

/* coi-seen.c: seen mode (read chats move from INBOX to the chats folder). */
void coi_seen_mail_allocated(struct mail *mail);
int coi_seen_transaction_commit(struct mailbox_transaction_context *t,
				struct mail_transaction_commit_changes *changes_r);
void coi_seen_transaction_rollback(struct mailbox_transaction_context *t);

/* coi-recall.c, coi-read.c: recall while unread and read status
   (docs/recall.md): their METADATA entries, the storage hooks that note
   \Seen for read status, and the delivery-time trust check and MDN
   reading (called from coi_deliver_prepare() after classify()). */
void coi_recall_register(void);
void coi_recall_unregister(void);
void coi_read_register(void);
void coi_read_unregister(void);
struct mail_deliver_context;
void coi_recall_deliver_prepare(struct mail_deliver_context *ctx, void *rs);
/* Reads the user's stored read-status consent value (NULL = NIL) and
   asks Rust; 1 consents, 0 not (or unreadable). */
int coi_read_consents(struct mail_user *user);
/* The address of the first `field` header of `mail` (local@domain, on the
   data stack), or NULL. */
const char *coi_recall_header_address(struct mail *mail, const char *field);

/* coi-replication.c: whether a change is replication (dsync) rather than
   the user's own. Everything the plugin does in reaction to a change asks
   this first: replication brings the results along. */
bool coi_user_is_dsync(const struct mail_user *user);
bool coi_transaction_is_replication(const struct mailbox_transaction_context *t);

/* coi-metadata.c: reads the user's COI server METADATA. Returns 0 with the
   values (NULL = NIL; copied to the data stack), or -1 with *error_r set. */
int coi_read_metadata(struct mail_user *user,
		      struct coi_user_metadata *metadata_r,
		      const char **error_r);
/* The same for a delivery, which also learns (from the same INBOX) whether
   the user's push-target marker says "no targets" (*push_none_r; FALSE
   when unsure, docs/performance.md). */
int coi_read_delivery_metadata(struct mail_user *user,
			       struct coi_user_metadata *metadata_r,
			       bool *push_none_r, const char **error_r);
/* coi-attributes.c: TRUE only when `inbox`'s marker records that the user
   had no push targets when it was written (and nothing has added one since:
   every path that stores a target deletes it). */
bool coi_push_marker_says_none(struct mailbox *inbox);

/* coi-deliver.c: the delivery hook (installed only where the process has
   one: lmtp, dovecot-lda), and the vfuncs of mailboxes opened for delivery
   ($Chat on stored copies, one event per committed message). */
void coi_deliver_hook_install(void);
void coi_deliver_hook_uninstall(void);
void coi_deliver_forget_user(struct mail_user *user);
/* The header fields the classifier reads (coi_message_headers). `copy`
   puts them on the data stack, for callers that move `mail` on before
   using them. Returns -1 when the mail cannot be read. */
int coi_read_headers(struct mail *mail, bool copy,
		     struct coi_message_headers *headers_r);
/* The `get` of a write-only or hidden internal attribute: nothing to
   show (each registration says why). */
int coi_attribute_get_nothing(struct mailbox *box, const char *key,
			      struct mail_attribute_value *value_r);
/* The body of `mail` (data stack) when it is at most `max` bytes, else
   NULL: push content and MDN bodies. */
const char *coi_mail_small_body(struct mail *mail, uoff_t max);
int coi_mailbox_copy(struct mail_save_context *ctx, struct mail *mail);
struct mailbox_transaction_context *
coi_transaction_begin(struct mailbox *box,
		      enum mailbox_transaction_flags flags,
		      const char *reason);
int coi_transaction_commit(struct mailbox_transaction_context *t,
			   struct mail_transaction_commit_changes *changes_r);

/* coi-notify.c: vfuncs of mailboxes in IMAP sessions (fast IDLE). */
void coi_notify_changes(struct mailbox *box);
void coi_notify_close(struct mailbox *box);

#endif

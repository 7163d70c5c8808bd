/* coi-plugin.c - the Dovecot side of the coi plugin.
 *
 * Owns every contact with Dovecot's structs: hook installation and removal,
 * the per-user and per-mailbox module contexts, reading the headers and the
 * user's METADATA at delivery, creating the chats folder, and adding the
 * $Chat keyword to stored copies. Decisions (what a message is, where it
 * goes) are made in Rust through the ops table (include/coi-shim.h); this
 * file only carries them out.
 *
 * Failure rule: whatever goes wrong here (a header that cannot be read, a
 * METADATA error, a folder that cannot be created, a Rust callback that
 * returned -1), the delivery proceeds exactly as if the plugin were absent,
 * and the reason is logged on the delivery's event.
 *
 * Everything runs on the process's single ioloop thread.
 */
#include "lib.h"
#include "array.h"
#include "module-context.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage-private.h"
#include "mail-storage-hooks.h"
#include "ioloop.h"
#include "mail-deliver.h"
#include "smtp-address.h"
#include "imap-metadata.h"

#include <sys/stat.h>

#include "coi-shim.h"

/* mail_deliver_hook_set() lives in libdovecot-lda, which only lmtp and
   dovecot-lda link. Declared weak, it resolves to NULL in imap, doveadm and
   the rest, so one .so loads everywhere and installs only what exists. */
#pragma weak mail_deliver_hook_set

#define COI_KEYWORD_CHAT "$Chat"
/* How long a burst of index log writes is coalesced before IDLE clients are
   told: one delivery writes the log several times within a millisecond or
   two; Dovecot's own watcher waits 500 ms. */
#define COI_NOTIFY_COALESCE_MSECS 5
#define COI_METADATA_ENABLED \
	"/private/vendor/vendor.dovecot/coi/config/enabled"
#define COI_METADATA_MESSAGE_FILTER \
	"/private/vendor/vendor.dovecot/coi/config/message-filter"

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
	/* fast change notifications (IMAP IDLE/NOTIFY), see coi_notify_* */
	struct io *notify_io;      /* on the index log file */
	struct io *notify_dir_io;  /* on its directory: log rotation */
	struct timeout *notify_to;
	const char *notify_path;   /* index log path, box->pool */
	const char *notify_dir;
	ino_t notify_ino;
	dev_t notify_dev;
	/* the notify callback we relay to (see coi_notify_relay) */
	mailbox_notify_callback_t *notify_callback;
};

static MODULE_CONTEXT_DEFINE_INIT(coi_user_module,
				  &mail_user_module_register);
static MODULE_CONTEXT_DEFINE_INIT(coi_storage_module,
				  &mail_storage_module_register);

static struct module *coi_module;
static const struct coi_rs_ops *coi_ops;
static deliver_mail_func_t *coi_next_deliver_mail;
static bool coi_deliver_hook_installed;

/* The delivery in progress. Set when the deliver hook runs and kept until
   the next one (or until the user is freed), because Dovecot's own default
   save happens after the hook has returned. Only compared as pointers,
   never dereferenced. */
static struct {
	struct mail_user *user;
	struct mail *src_mail;
	bool add_chat_keyword;
	/* report each stored copy to Rust (events) */
	bool report_stored;
} coi_current;

static int coi_read_metadata(struct mail_user *user,
			     struct coi_user_metadata *metadata_r,
			     const char **error_r);

static struct coi_bytes coi_bytes_from_str(const char *str)
{
	struct coi_bytes bytes;

	bytes.ptr = (const uint8_t *)str;
	bytes.len = str == NULL ? 0 : strlen(str);
	return bytes;
}

/* ---- per user ---- */

static void coi_user_deinit(struct mail_user *user)
{
	struct coi_user *cuser = COI_USER_CONTEXT_REQUIRE(user);

	if (coi_current.user == user)
		i_zero(&coi_current);
	if (cuser->rs != NULL)
		coi_ops->user_free(cuser->rs);
	cuser->rs = NULL;
	cuser->module_ctx.super.deinit(user);
}

static void coi_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct coi_user *cuser;
	struct coi_user_settings set;

	cuser = p_new(user->pool, struct coi_user, 1);
	cuser->module_ctx.super = *v;
	user->vlast = &cuser->module_ctx.super;
	v->deinit = coi_user_deinit;
	MODULE_CONTEXT_SET(user, coi_user_module, cuser);

	if (user->autocreated) {
		/* shared-namespace owners and similar: never delivered to */
		return;
	}
	set.username = coi_bytes_from_str(user->username);
	set.spool_path = coi_bytes_from_str(
		mail_user_plugin_getenv(user, "coi_spool_path"));
	set.spool_max_size = coi_bytes_from_str(
		mail_user_plugin_getenv(user, "coi_spool_max_size"));
	set.sidecar_socket = coi_bytes_from_str(
		mail_user_plugin_getenv(user, "coi_sidecar_socket"));
	set.fast_notify = coi_bytes_from_str(
		mail_user_plugin_getenv(user, "coi_fast_notify"));
	set.default_enabled = coi_bytes_from_str(
		mail_user_plugin_getenv(user, "coi_default_enabled"));
	set.default_message_filter = coi_bytes_from_str(
		mail_user_plugin_getenv(user, "coi_default_message_filter"));
	set.mailbox_root = coi_bytes_from_str(
		mail_user_plugin_getenv(user, "coi_mailbox_root"));
	cuser->rs = coi_ops->user_new(user->event, &set);
}

/* ---- $Chat on every stored copy ---- */

static void coi_save_add_chat_keyword(struct mail_save_context *ctx)
{
	struct mailbox *box = ctx->transaction->box;
	const char *const chat_names[] = { COI_KEYWORD_CHAT, NULL };
	struct mail_keywords *chat_kw, *merged;

	chat_kw = mailbox_keywords_create_valid(box, chat_names);
	if (chat_kw->count == 0) {
		/* the storage refused the keyword (e.g. keyword limit) */
		e_warning(box->event, "coi: could not add keyword "
			  COI_KEYWORD_CHAT " to the saved message");
		mailbox_keywords_unref(&chat_kw);
		return;
	}
	if (ctx->data.keywords == NULL) {
		merged = chat_kw;
		mailbox_keywords_ref(merged);
	} else {
		merged = mailbox_keywords_merge(ctx->data.keywords, chat_kw);
	}
	/* mailbox_save_set_flags() splits private flags again */
	mailbox_save_set_flags(ctx, ctx->data.flags | ctx->data.pvt_flags,
			       merged);
	mailbox_keywords_unref(&merged);
	mailbox_keywords_unref(&chat_kw);
}

static int coi_mailbox_copy(struct mail_save_context *ctx, struct mail *mail)
{
	struct mailbox *box = ctx->transaction->box;
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	/* Deliveries (Dovecot's default save and Sieve's fileinto/keep)
	   store through copy, with the delivered mail as the source. */
	if (coi_current.add_chat_keyword &&
	    coi_current.user == box->storage->user &&
	    (mail == coi_current.src_mail ||
	     ctx->copy_src_mail == coi_current.src_mail))
		coi_save_add_chat_keyword(ctx);
	return cbox->module_ctx.super.copy(ctx, mail);
}

/* ---- events: one per stored message, after the commit ---- */

static bool coi_reports_stored(struct mailbox *box)
{
	return coi_current.report_stored &&
		coi_current.user == box->storage->user;
}

static struct mailbox_transaction_context *
coi_transaction_begin(struct mailbox *box,
		      enum mailbox_transaction_flags flags,
		      const char *reason)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	/* Without this flag a delivery's commit may not know the UIDs it
	   assigned, and an event without a UID is useless to its consumer. */
	if (coi_reports_stored(box))
		flags |= MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS;
	return cbox->module_ctx.super.transaction_begin(box, flags, reason);
}

static void
coi_report_stored(struct mailbox *box,
		  const struct mail_transaction_commit_changes *changes)
{
	struct coi_user *cuser = COI_USER_CONTEXT(box->storage->user);
	struct coi_stored_message message;
	const struct seq_range *range;
	uint32_t uid;

	if (cuser == NULL || cuser->rs == NULL)
		return;
	i_zero(&message);
	message.folder = coi_bytes_from_str(mailbox_get_vname(box));
	message.uid_validity = changes->uid_validity;
	array_foreach(&changes->saved_uids, range) {
		for (uid = range->seq1; uid <= range->seq2 && uid != 0; uid++) {
			message.uid = uid;
			(void)coi_ops->message_stored(cuser->rs,
						      box->storage->user->event,
						      &message);
			if (uid == range->seq2)
				break;
		}
	}
}

static int
coi_transaction_commit(struct mailbox_transaction_context *t,
		       struct mail_transaction_commit_changes *changes_r)
{
	struct mailbox *box = t->box;
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);
	bool report = coi_reports_stored(box) && t->save_count > 0;

	if (cbox->module_ctx.super.transaction_commit(t, changes_r) < 0)
		return -1;
	/* t is freed now; box and changes_r stay valid */
	if (report && array_is_created(&changes_r->saved_uids)) T_BEGIN {
		coi_report_stored(box, changes_r);
	} T_END;
	return 0;
}

/* ---- fast change notifications for IDLE/NOTIFY (imap) ----

   Dovecot's watcher (mailbox-watch.c) waits 500 ms after a change before it
   tells the client. For folders in scope we also watch the mailbox's index
   log (every storage appends to it when a delivery commits) and call the
   same notify callback after COI_NOTIFY_COALESCE_MSECS. Dovecot's watcher
   stays installed as the fallback (files changed by other tools, NFS). One
   inotify watch per path is shared by all ios on it, and the newest io gets
   the events: that is why ours is (re)added after Dovecot's. */

static void coi_notify_stop(struct coi_mailbox *cbox)
{
	io_remove(&cbox->notify_io);
	io_remove(&cbox->notify_dir_io);
	timeout_remove(&cbox->notify_to);
}

static void coi_notify_fire(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	timeout_remove(&cbox->notify_to);
	if (box->notify_callback != NULL)
		box->notify_callback(box, box->notify_context);
}

static void coi_notify_changed(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	if (cbox->notify_to == NULL) {
		cbox->notify_to = timeout_add_short(COI_NOTIFY_COALESCE_MSECS,
						    coi_notify_fire, box);
	}
}

/* Watches the index log file as it is at the path now. */
static bool coi_notify_watch_log(struct mailbox *box, struct coi_mailbox *cbox)
{
	struct stat st;

	if (stat(cbox->notify_path, &st) < 0 ||
	    io_add_notify(cbox->notify_path, coi_notify_changed, box,
			  &cbox->notify_io) != IO_NOTIFY_ADDED) {
		cbox->notify_io = NULL;
		return FALSE;
	}
	cbox->notify_ino = st.st_ino;
	cbox->notify_dev = st.st_dev;
	return TRUE;
}

/* Dovecot rotates the index log by renaming it and starting a new file; an
   inotify watch follows the old inode. Re-watch when the path now names
   another file. Returns TRUE if it did. */
static bool coi_notify_rewatch_if_rotated(struct mailbox *box,
					  struct coi_mailbox *cbox)
{
	struct stat st;

	if (cbox->notify_path == NULL || stat(cbox->notify_path, &st) < 0 ||
	    (cbox->notify_io != NULL && st.st_ino == cbox->notify_ino &&
	     st.st_dev == cbox->notify_dev))
		return FALSE;
	io_remove(&cbox->notify_io);
	(void)coi_notify_watch_log(box, cbox);
	return TRUE;
}

/* Something in the index directory changed. Only a rotated (or newly
   created) log matters here: ordinary log writes arrive through the file
   watch, and reacting to every write in the directory (the imap process's
   own index updates included) would only cause extra syncs. */
static void coi_notify_dir_changed(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	if (coi_notify_rewatch_if_rotated(box, cbox))
		coi_notify_changed(box);
}

/* Stands in for the client's notify callback, so notifications that reach
   the client through Dovecot's own watcher also re-check the log. */
static void coi_notify_relay(struct mailbox *box, void *context)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	(void)coi_notify_rewatch_if_rotated(box, cbox);
	if (cbox->notify_callback != NULL)
		cbox->notify_callback(box, context);
}

static bool coi_notify_in_scope(struct mailbox *box)
{
	struct mail_user *user = box->storage->user;
	struct coi_user *cuser = COI_USER_CONTEXT(user);
	struct coi_user_metadata metadata, *metadata_p = NULL;
	struct coi_bytes folder;
	const char *error;

	if (cuser == NULL || cuser->rs == NULL)
		return FALSE;
	if (box->inbox_user &&
	    coi_read_metadata(user, &metadata, &error) == 0)
		metadata_p = &metadata;
	folder = coi_bytes_from_str(mailbox_get_vname(box));
	return coi_ops->notify_scope(cuser->rs, user->event, &folder,
		(uint8_t)mail_namespace_get_sep(mailbox_get_namespace(box)),
		metadata_p) == 1;
}

static void coi_notify_changes(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);
	const char *dir;
	bool in_scope;

	cbox->module_ctx.super.notify_changes(box);
	coi_notify_stop(cbox);
	if (box->notify_callback == NULL)
		return;

	T_BEGIN {
		in_scope = coi_notify_in_scope(box);
	} T_END;
	if (!in_scope)
		return;
	if (cbox->notify_path == NULL) {
		if (mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_INDEX,
					&dir) <= 0)
			return;
		cbox->notify_dir = p_strdup(box->pool, dir);
		cbox->notify_path = p_strconcat(box->pool, dir,
						"/" MAIL_INDEX_PREFIX ".log", NULL);
	}
	/* Added after Dovecot's watches: with several ios on one path only
	   the newest is called (sdbox/mdbox watch the log themselves). */
	if (!coi_notify_watch_log(box, cbox)) {
		/* no inotify or no index log yet: the stock watcher remains */
		return;
	}
	if (io_add_notify(cbox->notify_dir, coi_notify_dir_changed, box,
			  &cbox->notify_dir_io) != IO_NOTIFY_ADDED)
		cbox->notify_dir_io = NULL;
	if (box->notify_callback != coi_notify_relay)
		cbox->notify_callback = box->notify_callback;
	box->notify_callback = coi_notify_relay;
	e_debug(box->event, "coi: fast change notifications from %s",
		cbox->notify_path);
}

static void coi_notify_close(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	coi_notify_stop(cbox);
	cbox->module_ctx.super.close(box);
}

static void coi_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	struct coi_user *cuser = COI_USER_CONTEXT(box->storage->user);
	struct coi_mailbox *cbox;

	if (cuser == NULL || cuser->rs == NULL)
		return;

	cbox = p_new(box->pool, struct coi_mailbox, 1);
	cbox->module_ctx.super = *v;
	box->vlast = &cbox->module_ctx.super;
	if ((box->flags & MAILBOX_FLAG_POST_SESSION) != 0) {
		/* opened for delivery: tag copies, report commits */
		v->copy = coi_mailbox_copy;
		v->transaction_begin = coi_transaction_begin;
		v->transaction_commit = coi_transaction_commit;
	} else {
		/* IMAP sessions: only IDLE/NOTIFY change notifications */
		v->notify_changes = coi_notify_changes;
		v->close = coi_notify_close;
	}
	MODULE_CONTEXT_SET(box, coi_storage_module, cbox);
}

/* ---- delivery ---- */

static int coi_get_header(struct mail *mail, const char *field,
			  struct coi_bytes *value_r)
{
	const char *value;
	int ret;

	ret = mail_get_first_header(mail, field, &value);
	if (ret < 0)
		return -1;
	*value_r = coi_bytes_from_str(ret > 0 ? value : NULL);
	return 0;
}

static int coi_read_headers(struct mail *mail,
			    struct coi_message_headers *headers_r)
{
	i_zero(headers_r);
	if (coi_get_header(mail, "Chat-Version", &headers_r->chat_version) < 0 ||
	    coi_get_header(mail, "Message-ID", &headers_r->message_id) < 0 ||
	    coi_get_header(mail, "References", &headers_r->references) < 0 ||
	    coi_get_header(mail, "Content-Type", &headers_r->content_type) < 0)
		return -1;
	return 0;
}

/* Reads the user's COI server METADATA. Returns 0 with the values (NULL =
   NIL; copied to the data stack), or -1 with *error_r set. A user without
   any attribute storage (mail_attribute_dict unset) simply has no per-user
   config: that is 0 with both values NIL. */
static int coi_read_metadata(struct mail_user *user,
			     struct coi_user_metadata *metadata_r,
			     const char **error_r)
{
	static const char *const entries[] = {
		COI_METADATA_ENABLED, COI_METADATA_MESSAGE_FILTER
	};
	struct coi_bytes *values[] = {
		&metadata_r->enabled, &metadata_r->message_filter
	};
	struct imap_metadata_transaction *imtrans;
	struct mail_attribute_value value;
	enum mail_error error;
	unsigned int i;
	int ret = 0;

	i_zero(metadata_r);
	if (mail_namespace_find_inbox(user->namespaces) == NULL) {
		*error_r = "user has no INBOX namespace";
		return -1;
	}
	imtrans = imap_metadata_transaction_begin_server(user);
	for (i = 0; i < N_ELEMENTS(entries) && ret == 0; i++) {
		if (imap_metadata_get(imtrans, entries[i], &value) < 0) {
			const char *errstr =
				imap_metadata_transaction_get_last_error(
					imtrans, &error);
			if (error != MAIL_ERROR_NOTPOSSIBLE) {
				*error_r = t_strdup(errstr);
				ret = -1;
			}
			break;
		}
		*values[i] = coi_bytes_from_str(t_strdup(value.value));
	}
	imap_metadata_transaction_rollback(&imtrans);
	return ret;
}

/* Checks whether `vname` exists as a selectable mailbox. Returns 1 yes,
   0 no, -1 error (with *error_r). */
static int coi_chats_folder_exists(struct mail_user *user, const char *vname,
				   const char **error_r)
{
	struct mailbox *box = mailbox_alloc_for_user(user, vname, 0);
	enum mailbox_existence existence;
	int ret;

	if (mailbox_exists(box, FALSE, &existence) < 0) {
		*error_r = t_strdup(mailbox_get_last_internal_error(box, NULL));
		ret = -1;
	} else {
		ret = existence == MAILBOX_EXISTENCE_SELECT ? 1 : 0;
	}
	mailbox_free(&box);
	return ret;
}

/* Creates and subscribes `vname`. Returns 0 on success or when another
   process created it meanwhile, -1 (with *error_r) otherwise. */
static int coi_create_chats_folder(struct mail_user *user, const char *vname,
				   const char **error_r)
{
	struct mailbox *box = mailbox_alloc_for_user(user, vname, 0);
	enum mail_error error;
	int ret = 0;

	if (mailbox_create(box, NULL, FALSE) < 0) {
		*error_r = t_strdup(mailbox_get_last_internal_error(box, &error));
		if (error != MAIL_ERROR_EXISTS)
			ret = -1;
	}
	if (ret == 0 && mailbox_set_subscribed(box, TRUE) < 0) {
		e_warning(user->event, "coi: cannot subscribe chats folder %s: %s",
			  vname, mailbox_get_last_internal_error(box, NULL));
	}
	mailbox_free(&box);
	return ret;
}

/* Makes sure the chats folder exists (creating and subscribing it if not).
   Returns 0 if it can be delivered to, -1 (logged) if not. */
static int coi_ensure_chats_folder(struct mail_deliver_context *ctx,
				   const char *vname)
{
	struct mail_user *user = ctx->rcpt_user;
	const char *error = NULL;
	unsigned int attempt;
	int ret;

	if ((ret = coi_chats_folder_exists(user, vname, &error)) > 0)
		return 0;
	/* Concurrent first deliveries race to create the folder (and, in
	   some layouts, its parent); the loser may see "not found" rather
	   than "exists". One more look after a failed create settles it. */
	for (attempt = 0; ret == 0 && attempt < 2; attempt++) {
		if (coi_create_chats_folder(user, vname, &error) == 0) {
			e_debug(user->event, "coi: created chats folder %s", vname);
			return 0;
		}
		ret = coi_chats_folder_exists(user, vname, &error);
		if (ret > 0)
			return 0;
	}
	e_warning(ctx->event, "coi: cannot %s chats folder %s: %s"
		  " - delivering as usual", ret < 0 ? "check" : "create",
		  vname, error == NULL ? "unknown error" : error);
	return -1;
}

static char coi_user_separator(struct mail_user *user)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);

	return ns == NULL ? '/' : mail_namespace_get_sep(ns);
}

static void coi_deliver_prepare(struct mail_deliver_context *ctx)
{
	struct mail_user *user = ctx->rcpt_user;
	struct coi_user *cuser;
	struct coi_message_headers headers;
	struct coi_delivery_facts facts;
	struct coi_user_metadata metadata, *metadata_p = NULL;
	struct coi_delivery_decision decision;
	const char *error, *folder;
	int32_t kind;

	if (user == NULL || ctx->src_mail == NULL ||
	    !mail_user_is_plugin_loaded(user, coi_module))
		return;
	cuser = COI_USER_CONTEXT(user);
	if (cuser == NULL || cuser->rs == NULL)
		return;

	/* From here on every stored copy of this delivery is reported, chat
	   or not, even if classification fails below. */
	coi_current.user = user;
	coi_current.src_mail = ctx->src_mail;
	coi_current.report_stored = coi_ops->wants_events(cuser->rs) == 1;

	facts.message_id = coi_bytes_from_str(ctx->fields.message_id);
	facts.subject = coi_bytes_from_str(ctx->fields.subject);
	/* The From header names the chat's author; the envelope only when
	   there is none (bounces, odd senders). */
	facts.from = coi_bytes_from_str(ctx->fields.from != NULL ||
		ctx->mail_from == NULL ? ctx->fields.from :
		smtp_address_encode(ctx->mail_from));
	if (coi_read_headers(ctx->src_mail, &headers) < 0) {
		e_warning(ctx->event, "coi: cannot read headers: %s"
			  " - delivering as usual",
			  mailbox_get_last_internal_error(ctx->src_mail->box, NULL));
		i_zero(&headers);
		(void)coi_ops->classify(cuser->rs, &headers, &facts, &kind);
		coi_ops->fallback(cuser->rs, COI_FALLBACK_HEADERS_UNREADABLE);
		return;
	}
	if (coi_ops->classify(cuser->rs, &headers, &facts, &kind) < 0)
		return;

	if (kind != COI_KIND_NOT_CHAT) {
		/* METADATA costs a mailbox open: only chats pay it */
		if (coi_read_metadata(user, &metadata, &error) < 0) {
			e_warning(ctx->event, "coi: cannot read COI METADATA: %s"
				  " - delivering as usual", error);
			coi_ops->fallback(cuser->rs,
					  COI_FALLBACK_METADATA_UNREADABLE);
		} else {
			metadata_p = &metadata;
		}
	}
	i_zero(&decision);
	/* The user's event, not ctx->event: mail_debug = yes turns on debug
	   logging for the user's events, and in lmtp the delivery event is not
	   a child of the user's. */
	if (coi_ops->decide(cuser->rs, user->event, metadata_p,
			    (uint8_t)coi_user_separator(user), &decision) < 0)
		return;

	if (decision.file_into_chats != 0 && decision.chats_folder.ptr != NULL) {
		folder = t_strndup(decision.chats_folder.ptr,
				   decision.chats_folder.len);
		if (coi_ensure_chats_folder(ctx, folder) == 0) {
			ctx->rcpt_default_mailbox = p_strdup(ctx->pool, folder);
		} else {
			coi_ops->fallback(cuser->rs,
					  COI_FALLBACK_FOLDER_UNAVAILABLE);
		}
	}
	coi_current.add_chat_keyword = decision.add_chat_keyword != 0;
}

static int coi_deliver_mail(struct mail_deliver_context *ctx,
			    struct mail_storage **storage_r)
{
	i_zero(&coi_current);
	T_BEGIN {
		coi_deliver_prepare(ctx);
	} T_END;

	if (coi_next_deliver_mail != NULL)
		return coi_next_deliver_mail(ctx, storage_r);
	/* Same as having no hook: Dovecot saves to rcpt_default_mailbox. */
	return 0;
}

/* ---- shim API ---- */

static const struct mail_storage_hooks coi_mail_storage_hooks = {
	.mail_user_created = coi_mail_user_created,
	.mailbox_allocated = coi_mailbox_allocated,
};

int32_t coi_shim_init(void *module, const struct coi_rs_ops *ops)
{
	if (ops == NULL || ops->abi != COI_SHIM_ABI) {
		i_error("coi: plugin built inconsistently (shim ABI %u, Rust "
			"ABI %u); plugin disabled", COI_SHIM_ABI,
			ops == NULL ? 0 : ops->abi);
		return -1;
	}
	coi_module = module;
	coi_ops = ops;
	mail_storage_hooks_add(coi_module, &coi_mail_storage_hooks);
	if (mail_deliver_hook_set != NULL) {
		coi_next_deliver_mail = mail_deliver_hook_set(coi_deliver_mail);
		coi_deliver_hook_installed = TRUE;
	}
	return 0;
}

void coi_shim_deinit(void)
{
	if (coi_ops == NULL)
		return;
	if (coi_deliver_hook_installed) {
		(void)mail_deliver_hook_set(coi_next_deliver_mail);
		coi_deliver_hook_installed = FALSE;
		coi_next_deliver_mail = NULL;
	}
	mail_storage_hooks_remove(&coi_mail_storage_hooks);
	i_zero(&coi_current);
	coi_ops = NULL;
	coi_module = NULL;
}

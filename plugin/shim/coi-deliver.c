/* coi-deliver.c - the delivery side of the plugin (lmtp, dovecot-lda).
 *
 * Owns the deliver hook (wrapping Sieve's), reading the headers, creating
 * the chats folder, making it the default mailbox, adding $Chat to every
 * stored copy (copy vfunc of mailboxes opened for delivery), and reporting
 * every committed copy to Rust for its event (transaction vfuncs).
 * Decisions are Rust's (ops table); this file carries them out.
 *
 * Failure rule: whatever goes wrong here (a header that cannot be read, a
 * METADATA error, a folder that cannot be created, a Rust callback that
 * returned -1), the delivery proceeds exactly as if the plugin were absent,
 * and the reason is logged on the delivery's event.
 */
#include "coi-private.h"
#include "array.h"
#include "mail-namespace.h"
#include "mail-deliver.h"
#include "smtp-address.h"

/* mail_deliver_hook_set() lives in libdovecot-lda, which only lmtp and
   dovecot-lda link. Declared weak, it resolves to NULL in imap, doveadm and
   the rest, so one .so loads everywhere and installs only what exists. */
#pragma weak mail_deliver_hook_set


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
	/* envelope recipient, for push (self-sent mail); data stack free */
	char *recipient;
} coi_current;

static void coi_current_clear(void)
{
	i_free(coi_current.recipient);
	i_zero(&coi_current);
}

void coi_deliver_forget_user(struct mail_user *user)
{
	if (coi_current.user == user)
		coi_current_clear();
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

int coi_mailbox_copy(struct mail_save_context *ctx, struct mail *mail)
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

struct mailbox_transaction_context *
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
			/* once per delivery: Rust says no after the first */
			if (coi_ops->wants_push(cuser->rs) == 1) {
				coi_push_collect(box->storage->user,
						 coi_current.src_mail,
						 coi_current.recipient,
						 &message);
			}
			if (uid == range->seq2)
				break;
		}
	}
}

int
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

/* ---- delivery ---- */

static int coi_get_header(struct mail *mail, const char *field, bool copy,
			  struct coi_bytes *value_r)
{
	const char *value;
	int ret;

	ret = mail_get_first_header(mail, field, &value);
	if (ret < 0)
		return -1;
	*value_r = coi_bytes_from_str(ret == 0 ? NULL :
				      copy ? t_strdup(value) : value);
	return 0;
}

int coi_read_headers(struct mail *mail, bool copy,
		     struct coi_message_headers *headers_r)
{
	i_zero(headers_r);
	if (coi_get_header(mail, "Chat-Version", copy, &headers_r->chat_version) < 0 ||
	    coi_get_header(mail, "Message-ID", copy, &headers_r->message_id) < 0 ||
	    coi_get_header(mail, "References", copy, &headers_r->references) < 0 ||
	    coi_get_header(mail, "Content-Type", copy, &headers_r->content_type) < 0 ||
	    coi_get_header(mail, "From", copy, &headers_r->from) < 0 ||
	    coi_get_header(mail, "To", copy, &headers_r->to) < 0 ||
	    coi_get_header(mail, "Subject", copy, &headers_r->subject) < 0)
		return -1;
	return 0;
}

/* Makes sure the chats folder exists (creating and subscribing it if not).
   Returns 0 if it can be delivered to, -1 (logged) if not. */
static int coi_ensure_chats_folder(struct mail_deliver_context *ctx,
				   const char *vname)
{
	const char *error;

	if (coi_folder_ensure(ctx->rcpt_user, vname, TRUE, &error) == 0)
		return 0;
	e_warning(ctx->event, "coi: cannot create chats folder %s: %s"
		  " - delivering as usual", vname, error);
	return -1;
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
	if (ctx->rcpt_to != NULL)
		coi_current.recipient = i_strdup(smtp_address_encode(ctx->rcpt_to));

	facts.message_id = coi_bytes_from_str(ctx->fields.message_id);
	facts.subject = coi_bytes_from_str(ctx->fields.subject);
	/* The From header names the chat's author; the envelope only when
	   there is none (bounces, odd senders). */
	facts.from = coi_bytes_from_str(ctx->fields.from != NULL ||
		ctx->mail_from == NULL ? ctx->fields.from :
		smtp_address_encode(ctx->mail_from));
	if (coi_read_headers(ctx->src_mail, FALSE, &headers) < 0) {
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
	/* recall and read status: who sent it, and MDNs (coi-recall.c) */
	coi_recall_deliver_prepare(ctx, cuser->rs);

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
	coi_current_clear();
	T_BEGIN {
		coi_deliver_prepare(ctx);
	} T_END;

	if (coi_next_deliver_mail != NULL)
		return coi_next_deliver_mail(ctx, storage_r);
	/* Same as having no hook: Dovecot saves to rcpt_default_mailbox. */
	return 0;
}

void coi_deliver_hook_install(void)
{
	if (mail_deliver_hook_set != NULL) {
		coi_next_deliver_mail = mail_deliver_hook_set(coi_deliver_mail);
		coi_deliver_hook_installed = TRUE;
	}
}

void coi_deliver_hook_uninstall(void)
{
	if (coi_deliver_hook_installed) {
		(void)mail_deliver_hook_set(coi_next_deliver_mail);
		coi_deliver_hook_installed = FALSE;
		coi_next_deliver_mail = NULL;
	}
	coi_current_clear();
}

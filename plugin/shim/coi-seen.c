/* coi-seen.c - seen mode (`message-filter = seen`, DESIGN §3): a chat
 * stays in INBOX until it is read; once `\Seen` is set on a `$Chat`
 * message in INBOX, it moves to the chats folder after that commit, and an
 * event (origin seen_move) reports the move.
 *
 * How: a mail vfunc (update_flags) notes the UIDs whose \Seen was just set
 * on $Chat messages of the user's INBOX in an IMAP or doveadm session; the
 * INBOX's transaction_commit queues them once the flag change is
 * committed, and the move runs from the ioloop as soon as the session has
 * no open transaction on INBOX (IMAP keeps some open while a command
 * runs), or when INBOX closes. It syncs INBOX first: maildir applies flag
 * changes to file names at sync time, and an expunge committed before that
 * would race the rename. The move uses transactions of its own, so a
 * failed move leaves the flag change intact and the message in INBOX,
 * logged.
 */
#include "coi-private.h"
#include "mail-namespace.h"
#include "message-address.h"
#include "ioloop.h"

static MODULE_CONTEXT_DEFINE_INIT(coi_mail_module, &mail_module_register);
#define COI_MAIL_CONTEXT_REQUIRE(obj) \
	MODULE_CONTEXT_REQUIRE(obj, coi_mail_module)

static bool coi_mail_has_chat_keyword(struct mail *mail)
{
	const char *const *keywords = mail_get_keywords(mail);

	return keywords != NULL && str_array_find(keywords, COI_KEYWORD_CHAT);
}

static void coi_mail_update_flags(struct mail *mail,
				  enum modify_type modify_type,
				  enum mail_flags flags)
{
	struct mail_private *pmail = (struct mail_private *)mail;
	union mail_module_context *cmail = COI_MAIL_CONTEXT_REQUIRE(pmail);
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(mail->box);
	bool becomes_seen = modify_type != MODIFY_REMOVE &&
		(flags & MAIL_SEEN) != 0 &&
		(mail_get_flags(mail) & MAIL_SEEN) == 0;

	cmail->super.update_flags(mail, modify_type, flags);
	if (becomes_seen && coi_mail_has_chat_keyword(mail))
		array_push_back(&cbox->seen_uids, &mail->uid);
}

void coi_seen_mail_allocated(struct mail *mail)
{
	struct mail_private *pmail = (struct mail_private *)mail;
	struct mailbox *box = mail->box;
	struct coi_mailbox *cbox = MODULE_CONTEXT(box, coi_storage_module);
	struct mail_vfuncs *v = pmail->vlast;
	union mail_module_context *cmail;

	if (cbox == NULL || !array_is_created(&cbox->seen_uids))
		return;
	cmail = p_new(pmail->pool, union mail_module_context, 1);
	cmail->super = *v;
	pmail->vlast = &cmail->super;
	v->update_flags = coi_mail_update_flags;
	MODULE_CONTEXT_SET_SELF(pmail, coi_mail_module, cmail);
}

static const char *coi_from_address(struct mail *mail)
{
	const char *value;
	struct message_address *addr;

	if (mail_get_first_header(mail, "From", &value) <= 0)
		return NULL;
	addr = message_address_parse(pool_datastack_create(),
				     (const unsigned char *)value,
				     strlen(value), 1, 0);
	if (addr == NULL || addr->mailbox == NULL || addr->domain == NULL)
		return NULL;
	return t_strdup_printf("%s@%s", addr->mailbox, addr->domain);
}

struct coi_moved {
	struct coi_message_headers headers;
	struct coi_delivery_facts facts;
};

/* Moves the read chats `uids` from INBOX `box` to the chats folder and
   reports each move. */
static void coi_seen_move(struct mailbox *box, const uint32_t *uids,
			  unsigned int count)
{
	struct mail_user *user = box->storage->user;
	void *rs = coi_user_rs(user);
	struct coi_user_metadata metadata;
	struct coi_bytes chats, contacts;
	struct mailbox *dest;
	struct mailbox_transaction_context *src_t, *dest_t;
	struct mail_transaction_commit_changes changes;
	struct mail_save_context *save_ctx;
	struct mail *mail;
	ARRAY(struct coi_moved) moved;
	const char *error, *folder;
	unsigned int i;

	if (rs == NULL)
		return;
	if (coi_read_metadata(user, &metadata, &error) < 0) {
		e_warning(user->event, "coi: seen mode: cannot read COI "
			  "METADATA: %s - read chats stay in INBOX", error);
		return;
	}
	if (coi_ops->seen_moves(rs, &metadata) != 1)
		return;
	if (coi_ops->folder_names(rs, (uint8_t)coi_user_separator(user),
				  &chats, &contacts) < 0)
		return;
	folder = t_strndup(chats.ptr, chats.len);
	if (coi_folder_ensure(user, folder, TRUE, &error) < 0) {
		e_warning(user->event, "coi: seen mode: cannot create %s: %s"
			  " - read chats stay in INBOX", folder, error);
		return;
	}
	dest = mailbox_alloc_for_user(user, folder, MAILBOX_FLAG_SAVEONLY);
	if (mailbox_open(dest) < 0) {
		e_warning(user->event, "coi: seen mode: cannot open %s: %s",
			  folder, mailbox_get_last_internal_error(dest, NULL));
		mailbox_free(&dest);
		return;
	}
	if (mailbox_sync(box, 0) < 0) {
		e_warning(user->event, "coi: seen mode: cannot sync INBOX: %s",
			  mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&dest);
		return;
	}
	t_array_init(&moved, count);
	/* not EXTERNAL: that would mark the expunges done in the index
	   without removing the files */
	src_t = mailbox_transaction_begin(box, 0, "coi seen mode");
	dest_t = mailbox_transaction_begin(dest,
		MAILBOX_TRANSACTION_FLAG_EXTERNAL |
		MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS, "coi seen mode");
	mail = mail_alloc(src_t, MAIL_FETCH_FLAGS, NULL);
	for (i = 0; i < count; i++) {
		struct coi_moved *m;

		/* another session may have expunged or unflagged it */
		if (!mail_set_uid(mail, uids[i]) ||
		    (mail_get_flags(mail) & MAIL_SEEN) == 0 ||
		    !coi_mail_has_chat_keyword(mail))
			continue;
		m = array_append_space(&moved);
		/* copied: the mail's buffers go when it moves to the next UID */
		if (coi_read_headers(mail, TRUE, &m->headers) < 0)
			i_zero(&m->headers);
		m->facts.message_id = m->headers.message_id;
		m->facts.from = coi_bytes_from_str(coi_from_address(mail));
		{
			const char *subject;
			m->facts.subject = coi_bytes_from_str(
				mail_get_first_header_utf8(mail, "Subject",
							   &subject) > 0 ?
				t_strdup(subject) : NULL);
		}
		save_ctx = mailbox_save_alloc(dest_t);
		/* flags and keywords ($Chat, \Seen) travel with the message */
		mailbox_save_copy_flags(save_ctx, mail);
		if (mailbox_move(&save_ctx, mail) < 0) {
			e_warning(user->event, "coi: seen mode: cannot move "
				  "UID %u to %s: %s", uids[i], folder,
				  mailbox_get_last_internal_error(dest, NULL));
			array_pop_back(&moved);
		}
	}
	mail_free(&mail);
	if (mailbox_transaction_commit_get_changes(&dest_t, &changes) < 0) {
		e_warning(user->event, "coi: seen mode: cannot commit moves to "
			  "%s: %s", folder,
			  mailbox_get_last_internal_error(dest, NULL));
		mailbox_transaction_rollback(&src_t);
		mailbox_free(&dest);
		return;
	}
	if (mailbox_transaction_commit(&src_t) < 0) {
		/* the copies exist; the originals stay too (seen twice
		   rather than lost) */
		e_warning(user->event, "coi: seen mode: moved chats copied to "
			  "%s but not expunged from INBOX: %s", folder,
			  mailbox_get_last_internal_error(box, NULL));
	} else if (mailbox_sync(box, 0) < 0) {
		/* maildir unlinks expunged files when it syncs */
		e_warning(user->event, "coi: seen mode: cannot sync INBOX after "
			  "the move: %s",
			  mailbox_get_last_internal_error(box, NULL));
	}
	if (coi_ops->wants_events(rs) == 1 &&
	    array_is_created(&changes.saved_uids)) {
		struct seq_range_iter iter;
		struct coi_stored_message message;
		const struct coi_moved *m;
		unsigned int n = 0;
		uint32_t uid;

		i_zero(&message);
		message.folder = coi_bytes_from_str(mailbox_get_vname(dest));
		message.uid_validity = changes.uid_validity;
		seq_range_array_iter_init(&iter, &changes.saved_uids);
		array_foreach(&moved, m) {
			if (!seq_range_array_iter_nth(&iter, n++, &uid))
				break;
			message.uid = uid;
			(void)coi_ops->message_moved(rs, user->event,
						     &m->headers, &m->facts,
						     &message);
		}
	}
	e_debug(user->event, "coi: seen mode: moved %u read chat(s) to %s",
		array_count(&moved), folder);
	pool_unref(&changes.pool);
	mailbox_free(&dest);
}

/* Tries the pending moves: only when nothing else has a transaction
   open on INBOX (syncing then would panic). Returns TRUE when done. */
static bool coi_seen_try_pending(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);
	ARRAY_TYPE(uint32_t) uids;

	if (array_count(&cbox->seen_pending) == 0)
		return TRUE;
	if (box->transaction_count > 0)
		return FALSE;
	/* taken out first: the move commits transactions on this box too */
	i_array_init(&uids, array_count(&cbox->seen_pending));
	array_append_array(&uids, &cbox->seen_pending);
	array_clear(&cbox->seen_pending);
	T_BEGIN {
		coi_seen_move(box, array_front(&uids), array_count(&uids));
	} T_END;
	array_free(&uids);
	return TRUE;
}

/* Gives up after this many 10 ms waits for a moment without open
   transactions (the read chats then stay in INBOX, logged). */
#define COI_SEEN_MAX_TRIES 500

static void coi_seen_timeout(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	timeout_remove(&cbox->seen_to);
	if (coi_seen_try_pending(box)) {
		cbox->seen_tries = 0;
		return;
	}
	if (++cbox->seen_tries >= COI_SEEN_MAX_TRIES) {
		e_warning(box->event, "coi: seen mode: INBOX never idle, "
			  "%u read chat(s) stay in INBOX",
			  array_count(&cbox->seen_pending));
		array_clear(&cbox->seen_pending);
		cbox->seen_tries = 0;
		return;
	}
	cbox->seen_to = timeout_add_short(10, coi_seen_timeout, box);
}

int coi_seen_transaction_commit(struct mailbox_transaction_context *t,
				struct mail_transaction_commit_changes *changes_r)
{
	struct mailbox *box = t->box;
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);
	int ret;

	ret = cbox->module_ctx.super.transaction_commit(t, changes_r);
	if (array_count(&cbox->seen_uids) == 0)
		return ret;
	if (ret == 0)
		array_append_array(&cbox->seen_pending, &cbox->seen_uids);
	array_clear(&cbox->seen_uids);
	if (array_count(&cbox->seen_pending) > 0 && cbox->seen_to == NULL)
		cbox->seen_to = timeout_add_short(0, coi_seen_timeout, box);
	return ret;
}

void coi_seen_transaction_rollback(struct mailbox_transaction_context *t)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(t->box);

	array_clear(&cbox->seen_uids);
	cbox->module_ctx.super.transaction_rollback(t);
}

void coi_seen_close(struct mailbox *box)
{
	struct coi_mailbox *cbox = MODULE_CONTEXT(box, coi_storage_module);

	if (cbox == NULL || !array_is_created(&cbox->seen_pending))
		return;
	timeout_remove(&cbox->seen_to);
	/* doveadm and short sessions close INBOX right after the change */
	(void)coi_seen_try_pending(box);
	array_clear(&cbox->seen_pending);
}

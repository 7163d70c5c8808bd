/* coi-seen.c - seen mode (`message-filter = seen`, DESIGN §3): a chat
 * stays in INBOX until it is read; once `\Seen` is set on a `$Chat`
 * message in INBOX, it moves to the chats folder, and an event (origin
 * seen_move) reports the move.
 *
 * How: a mail vfunc (update_flags) notes, per transaction, the UIDs whose
 * \Seen the transaction sets on $Chat messages of the user's INBOX in an
 * IMAP or doveadm session. Replication (dsync) is never noted: it brings
 * the other side's move along (coi-replication.c). Right after that
 * transaction has committed, the noted messages move, the way Dovecot's
 * own IMAP MOVE moves out of the selected mailbox: through a second
 * instance of INBOX, synced before the move (maildir applies flag changes
 * to file names at sync time; an expunge committed before that would race
 * the rename) and after it (maildir unlinks the expunged files then).
 *
 * The instance the session works on (the mailbox an IMAP client has
 * selected) is never synced here. It learns of the expunges at its next
 * sync like of any other session's, so IMAP tells its client `* n EXPUNGE`
 * (at the end of the command, or of the next one that may expunge:
 * NOOP, IDLE, ...). Syncing that instance behind IMAP's back made it lose
 * messages IMAP still counted: "Panic: Message count decreased".
 *
 * A UID is noted once per transaction, and a message already moved is no
 * longer in the synced INBOX, so each message moves once. The move uses
 * transactions of its own: a failed move leaves the flag change intact
 * and the message in INBOX, logged.
 */
#include "coi-private.h"
#include "mail-namespace.h"
#include "message-address.h"
#include "seq-range-array.h"

static MODULE_CONTEXT_DEFINE_INIT(coi_mail_module, &mail_module_register);
#define COI_MAIL_CONTEXT_REQUIRE(obj) \
	MODULE_CONTEXT_REQUIRE(obj, coi_mail_module)

static bool coi_mail_has_chat_keyword(struct mail *mail)
{
	const char *const *keywords = mail_get_keywords(mail);

	return keywords != NULL && str_array_find(keywords, COI_KEYWORD_CHAT);
}

/* The UIDs a transaction on INBOX marks \Seen on $Chat messages; the
   transaction's module context, made on the first one. */
struct coi_seen_transaction {
	union mailbox_transaction_module_context module_ctx;
	ARRAY_TYPE(seq_range) uids;
};

static void coi_seen_note(struct mailbox_transaction_context *t, uint32_t uid)
{
	struct coi_seen_transaction *st = MODULE_CONTEXT(t, coi_storage_module);

	if (st == NULL) {
		st = i_new(struct coi_seen_transaction, 1);
		i_array_init(&st->uids, 8);
		MODULE_CONTEXT_SET(t, coi_storage_module, st);
	}
	/* a set: pipelined STOREs and repeated updates note a UID once */
	seq_range_array_add(&st->uids, uid);
}

/* Takes the transaction's notes (NULL when it has none) off it. */
static struct coi_seen_transaction *
coi_seen_take(struct mailbox_transaction_context *t)
{
	struct coi_seen_transaction *st = MODULE_CONTEXT(t, coi_storage_module);

	if (st != NULL)
		MODULE_CONTEXT_UNSET(t, coi_storage_module);
	return st;
}

static void coi_seen_free(struct coi_seen_transaction **_st)
{
	struct coi_seen_transaction *st = *_st;

	*_st = NULL;
	if (st == NULL)
		return;
	array_free(&st->uids);
	i_free(st);
}

static void coi_mail_update_flags(struct mail *mail,
				  enum modify_type modify_type,
				  enum mail_flags flags)
{
	struct mail_private *pmail = (struct mail_private *)mail;
	union mail_module_context *cmail = COI_MAIL_CONTEXT_REQUIRE(pmail);
	bool becomes_seen = modify_type != MODIFY_REMOVE &&
		(flags & MAIL_SEEN) != 0 &&
		(mail_get_flags(mail) & MAIL_SEEN) == 0 &&
		!coi_transaction_is_replication(mail->transaction);

	cmail->super.update_flags(mail, modify_type, flags);
	if (becomes_seen && coi_mail_has_chat_keyword(mail))
		coi_seen_note(mail->transaction, mail->uid);
}

void coi_seen_mail_allocated(struct mail *mail)
{
	struct mail_private *pmail = (struct mail_private *)mail;
	struct mailbox *box = mail->box;
	struct coi_mailbox *cbox = MODULE_CONTEXT(box, coi_storage_module);
	struct mail_vfuncs *v = pmail->vlast;
	union mail_module_context *cmail;

	if (cbox == NULL || !cbox->seen_mode)
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

/* Moves the read chats `uids` out of INBOX (`selected` is the session's
   instance of it, left alone) to the chats folder and reports each move. */
static void coi_seen_move(struct mailbox *selected,
			  const ARRAY_TYPE(seq_range) *uids)
{
	struct mail_user *user = selected->storage->user;
	void *rs = coi_user_rs(user);
	struct coi_user_metadata metadata;
	struct coi_bytes chats, contacts;
	struct mailbox *box, *dest;
	struct mailbox_transaction_context *src_t, *dest_t;
	struct mail_transaction_commit_changes changes;
	struct mail_save_context *save_ctx;
	struct mail *mail;
	ARRAY(struct coi_moved) moved;
	struct seq_range_iter uid_iter;
	const char *error, *folder;
	unsigned int n;
	uint32_t uid;

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
	/* a second instance, as IMAP MOVE does: syncing the session's own
	   would hide the expunges from the client */
	box = mailbox_alloc(mailbox_get_namespace(selected)->list,
			    mailbox_get_vname(selected), 0);
	if (mailbox_sync(box, 0) < 0) {
		e_warning(user->event, "coi: seen mode: cannot sync INBOX: %s",
			  mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		mailbox_free(&dest);
		return;
	}
	t_array_init(&moved, seq_range_count(uids));
	/* not EXTERNAL: that would mark the expunges done in the index
	   without removing the files */
	src_t = mailbox_transaction_begin(box, 0, "coi seen mode");
	dest_t = mailbox_transaction_begin(dest,
		MAILBOX_TRANSACTION_FLAG_EXTERNAL |
		MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS, "coi seen mode");
	mail = mail_alloc(src_t, MAIL_FETCH_FLAGS, NULL);
	seq_range_array_iter_init(&uid_iter, uids);
	n = 0;
	while (seq_range_array_iter_nth(&uid_iter, n++, &uid)) {
		struct coi_moved *m;

		/* another session (or an earlier move) may have expunged it,
		   or \Seen may be gone again */
		if (!mail_set_uid(mail, uid) ||
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
				  "UID %u to %s: %s", uid, folder,
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
		mailbox_free(&box);
		mailbox_free(&dest);
		return;
	}
	if (mailbox_transaction_commit(&src_t) < 0) {
		/* the copies exist; the originals stay too (seen twice
		   rather than lost) */
		e_warning(user->event, "coi: seen mode: moved chats copied to "
			  "%s but not expunged from INBOX: %s", folder,
			  mailbox_get_last_internal_error(box, NULL));
	} else if (mailbox_sync(box, MAILBOX_SYNC_FLAG_EXPUNGE) < 0) {
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
		uint32_t saved_uid;

		n = 0;
		i_zero(&message);
		message.folder = coi_bytes_from_str(mailbox_get_vname(dest));
		message.uid_validity = changes.uid_validity;
		seq_range_array_iter_init(&iter, &changes.saved_uids);
		array_foreach(&moved, m) {
			if (!seq_range_array_iter_nth(&iter, n++, &saved_uid))
				break;
			message.uid = saved_uid;
			(void)coi_ops->message_moved(rs, user->event,
						     &m->headers, &m->facts,
						     &message);
		}
	}
	e_debug(user->event, "coi: seen mode: moved %u read chat(s) to %s",
		array_count(&moved), folder);
	pool_unref(&changes.pool);
	mailbox_free(&box);
	mailbox_free(&dest);
}

int coi_seen_transaction_commit(struct mailbox_transaction_context *t,
				struct mail_transaction_commit_changes *changes_r)
{
	struct mailbox *box = t->box;
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);
	struct coi_seen_transaction *st = coi_seen_take(t);
	int ret;

	/* t is gone after this; box stays */
	ret = cbox->module_ctx.super.transaction_commit(t, changes_r);
	if (ret == 0 && st != NULL) T_BEGIN {
		coi_seen_move(box, &st->uids);
	} T_END;
	coi_seen_free(&st);
	return ret;
}

void coi_seen_transaction_rollback(struct mailbox_transaction_context *t)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(t->box);
	struct coi_seen_transaction *st = coi_seen_take(t);

	coi_seen_free(&st);
	cbox->module_ctx.super.transaction_rollback(t);
}

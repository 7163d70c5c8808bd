/* coi-recall.c - recall while unread (docs/recall.md).
 *
 * Owns three things:
 *
 *  - At delivery (coi_recall_deliver_prepare(), called by coi-deliver.c
 *    after classify()): hands Rust the Received headers, the From address
 *    and the envelope sender for the sender trust check, and the body of
 *    an unencrypted MDN. Rust writes local_copy / mdn records with the
 *    stored copies' events.
 *
 *  - The sender's entries, server METADATA, as internal attributes:
 *      /private/vendor/vendor.dovecot/coi/recall/<id>
 *    An IMAP session sets it to a Message-ID: a recall request (Rust
 *    writes the recall_request record). It reads as the request's state,
 *    stored under vendor/vendor.dovecot/pvt/coi/recall/<id>, which no
 *    client can write: the sidecar replaces it through doveadm with the
 *    outcome once every recipient's account answered. NIL forgets it.
 *
 *  - Carrying a recall out, in a recipient's account: the sidecar sets
 *      /private/vendor/vendor.dovecot/coi/recall-execute
 *    through doveadm (so this runs inside doveadm, as the recipient) to
 *    the copies delivery recorded; each copy still unseen is expunged and
 *    every outcome goes back in a recall_outcome record.
 *
 * Race freedom (the reason for the lock below): a copy with \Seen must
 * never be removed, and a \Seen committed while the recall runs must win.
 * Checking the flag and then expunging is not enough: another session can
 * commit \Seen between the two. Every change to a mailbox (a flag update
 * from any session, and our expunge request) is an append to its
 * transaction log under the log's lock. We take that lock
 * (mail_transaction_log_sync_lock()), bring the index map up to the log's
 * end, look at the flags there, and append the expunge request while
 * still holding it (mail_transaction_log_append_begin() does not lock
 * again when index->log_sync_locked is set). So every other session's
 * \Seen is either in the log before our check (we see it and leave the
 * copy) or appended after our expunge request (applied to an expunged
 * message). maildir, sdbox and mdbox all keep flags in the index and
 * apply expunge requests when the mailbox is synced next (our own sync
 * right after unlocking), so the order in the log is the order that
 * counts. Checked against Dovecot 2.3.19.1 and 2.4.1
 * (lib-index/mail-transaction-log.c, mail-transaction-log-append.c,
 * mail-index-transaction.c).
 */
#include "coi-private.h"

#include <stdlib.h>
#include <unistd.h>
#include "str.h"
#include "istream.h"
#include "message-address.h"
#include "message-size.h"
#include "smtp-address.h"
#include "mail-deliver.h"
#include "mail-namespace.h"
#include "mail-index-private.h"
#include "mail-transaction-log.h"
#include "mailbox-attribute-private.h"

#define COI_ATTR_RECALL COI_SERVER_ATTR("vendor/vendor.dovecot/coi/recall/")
#define COI_ATTR_RECALL_EXECUTE \
	COI_SERVER_ATTR("vendor/vendor.dovecot/coi/recall-execute")
#define COI_PVT_RECALL MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT "coi/recall/"
/* Received headers handed to Rust, at most (coi_core::recall::trust). */
#define COI_RECEIVED_MAX 16
/* Largest MDN body read at delivery, bytes (coi_core::recall::mdn). */
#define COI_MDN_BODY_MAX (64 * 1024)
/* Recall entries per user (coi_core::recall::request::MAX_ENTRIES). */
#define COI_RECALL_ENTRIES_MAX 100

/* Test hook (docs/recall.md, "Testing the race"): with the environment
   variable COI_TEST_RECALL_HOLD_MS set (Dovecot's import_environment), the
   recall waits that long between its flag check and its expunge request,
   inside the locked section, so a test can land a concurrent \Seen there
   every time. It only lengthens the critical section; unset, it costs one
   getenv() per process. */
static unsigned int coi_recall_test_hold_ms(void)
{
	static int hold_ms = -1;
	const char *value;

	if (hold_ms < 0) {
		value = getenv("COI_TEST_RECALL_HOLD_MS");
		hold_ms = value == NULL ? 0 : atoi(value);
		if (hold_ms < 0 || hold_ms > 5000)
			hold_ms = 0;
	}
	return (unsigned int)hold_ms;
}

/* The plugin's own calls from the sidecar come through doveadm;
   replication (doveadm sync/backup) runs there too and is never one. */
static bool coi_recall_from_sidecar(struct mail_user *user)
{
	return user->service != NULL && strcmp(user->service, "doveadm") == 0 &&
		!coi_user_is_dsync(user);
}

static int coi_recall_refuse(struct mailbox *box, enum mail_error error,
			     const struct coi_bytes *message)
{
	mail_storage_set_error(box->storage, error,
		message == NULL || message->ptr == NULL ? "Refused" :
		t_strndup(message->ptr, message->len));
	return -1;
}

/* The address of the first `field` header (local@domain, data stack). */
const char *coi_recall_header_address(struct mail *mail, const char *field)
{
	const char *value;
	struct message_address *addr;

	if (mail_get_first_header(mail, field, &value) <= 0)
		return NULL;
	addr = message_address_parse(pool_datastack_create(),
				     (const unsigned char *)value,
				     strlen(value), 1, 0);
	if (addr == NULL || addr->mailbox == NULL || addr->domain == NULL ||
	    *addr->mailbox == '\0' || *addr->domain == '\0')
		return NULL;
	return t_strdup_printf("%s@%s", addr->mailbox, addr->domain);
}

/* ---- delivery ---- */

void coi_recall_deliver_prepare(struct mail_deliver_context *ctx, void *rs)
{
	struct mail *mail = ctx->src_mail;
	uint32_t needs = coi_ops->recall_needs(rs);
	struct coi_bytes from, envelope, *received_bytes;
	const char *const *received;
	const char *content_type;
	unsigned int i, count = 0;

	if ((needs & (COI_RECALL_NEED_TRUST | COI_RECALL_NEED_MDN)) == 0)
		return;
	from = coi_bytes_from_str(coi_recall_header_address(mail, "From"));
	if ((needs & COI_RECALL_NEED_TRUST) != 0) {
		if (mail_get_headers(mail, "Received", &received) <= 0)
			received = NULL;
		while (received != NULL && received[count] != NULL &&
		       count < COI_RECEIVED_MAX)
			count++;
		received_bytes = t_new(struct coi_bytes, count + 1);
		for (i = 0; i < count; i++)
			received_bytes[i] = coi_bytes_from_str(received[i]);
		envelope = coi_bytes_from_str(ctx->mail_from == NULL ? NULL :
			smtp_address_encode(ctx->mail_from));
		(void)coi_ops->trust_check(rs, ctx->rcpt_user->event,
					   received_bytes, count, &from,
					   &envelope);
	}
	if ((needs & COI_RECALL_NEED_MDN) != 0 &&
	    mail_get_first_header(mail, "Content-Type", &content_type) > 0 &&
	    strncasecmp(content_type, "multipart/report", 16) == 0) {
		struct coi_bytes ct = coi_bytes_from_str(t_strdup(content_type));
		struct coi_bytes body = coi_bytes_from_str(
			coi_mail_small_body(mail, COI_MDN_BODY_MAX));

		(void)coi_ops->mdn_seen(rs, &ct, &body, &from);
	}
}

/* ---- raw storage of the sender's entries ---- */

static int coi_recall_raw_get(struct mailbox *box, const char *key,
			      const char **value_r)
{
	struct mail_attribute_value value;
	int ret;

	i_zero(&value);
	ret = box->v.attribute_get(box, MAIL_ATTRIBUTE_TYPE_PRIVATE, key, &value);
	*value_r = ret > 0 ? t_strdup(value.value) : NULL;
	return ret;
}

static int coi_recall_raw_set(struct mailbox_transaction_context *t,
			      const char *key, const char *value)
{
	struct mail_attribute_value attr;

	i_zero(&attr);
	attr.value = value;
	return t->box->v.attribute_set(t, MAIL_ATTRIBUTE_TYPE_PRIVATE, key,
				       &attr);
}

/* Names below COI_PVT_RECALL (data stack). */
static int coi_recall_raw_list(struct mailbox *box,
			       ARRAY_TYPE(const_string) *names)
{
	struct mailbox_attribute_iter *iter;
	const char *key;

	iter = box->v.attribute_iter_init(box, MAIL_ATTRIBUTE_TYPE_PRIVATE,
					  COI_PVT_RECALL);
	while ((key = box->v.attribute_iter_next(iter)) != NULL) {
		if (*key != '\0' && strchr(key, '/') == NULL) {
			key = t_strdup(key);
			array_push_back(names, &key);
		}
	}
	return box->v.attribute_iter_deinit(iter);
}

/* The request id of a key below COI_ATTR_RECALL, or NULL. */
static const char *coi_recall_id(void *rs, const char *key)
{
	const char *id = key + strlen(COI_ATTR_RECALL);
	struct coi_bytes id_bytes = coi_bytes_from_str(id);

	return coi_ops->recall_check_id(rs, &id_bytes) == 1 ? id : NULL;
}

static int coi_recall_get(struct mailbox *box, const char *key,
			  struct mail_attribute_value *value_r)
{
	void *rs = coi_user_rs(box->storage->user);
	const char *id, *stored;
	int ret;

	if (rs == NULL || (id = coi_recall_id(rs, key)) == NULL)
		return 0;
	ret = coi_recall_raw_get(box, t_strconcat(COI_PVT_RECALL, id, NULL),
				 &stored);
	if (ret > 0)
		value_r->value = stored;
	return ret;
}

static int coi_recall_new_request(struct mailbox_transaction_context *t,
				  void *rs, const char *id, const char *value)
{
	struct mailbox *box = t->box;
	ARRAY_TYPE(const_string) names;
	const char *const *name;
	struct coi_bytes id_bytes, value_bytes, stored, error;
	unsigned int others = 0;

	t_array_init(&names, 16);
	if (coi_recall_raw_list(box, &names) < 0)
		return -1;
	array_foreach(&names, name) {
		if (strcmp(*name, id) != 0)
			others++;
	}
	if (others >= COI_RECALL_ENTRIES_MAX) {
		mail_storage_set_error(box->storage, MAIL_ERROR_LIMIT,
			"Too many recall entries: set finished ones to NIL");
		return -1;
	}
	id_bytes = coi_bytes_from_str(id);
	value_bytes = coi_bytes_from_str(value);
	i_zero(&error);
	if (coi_ops->recall_request(rs, box->storage->user->event, &id_bytes,
				    &value_bytes, &stored, &error) < 0)
		return coi_recall_refuse(box, MAIL_ERROR_PARAMS, &error);
	return coi_recall_raw_set(t, t_strconcat(COI_PVT_RECALL, id, NULL),
				  t_strndup(stored.ptr, stored.len));
}

static int coi_recall_set(struct mailbox_transaction_context *t,
			  const char *key,
			  const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	struct mail_user *user = box->storage->user;
	void *rs = coi_user_rs(user);
	const char *id, *str;
	struct coi_bytes json, stored;

	if (rs == NULL)
		return coi_recall_refuse(box, MAIL_ERROR_NOTPOSSIBLE, NULL);
	if ((id = coi_recall_id(rs, key)) == NULL) {
		mail_storage_set_error(box->storage, MAIL_ERROR_PARAMS,
			"Recall ids are 1 to 64 characters of A-Z, a-z, 0-9, "
			"'-' and '_'");
		return -1;
	}
	if (mailbox_attribute_value_to_string(box->storage, value, &str) < 0)
		return -1;
	if (str == NULL) {
		/* forgetting an entry never touches mail */
		return coi_recall_raw_set(t, t_strconcat(COI_PVT_RECALL, id,
							 NULL), NULL);
	}
	if (coi_user_is_dsync(user) || coi_recall_from_sidecar(user)) {
		/* the sidecar's outcome, or replication bringing the other
		   side's state: stored when it is well-formed state, never a
		   new request */
		json = coi_bytes_from_str(str);
		if (coi_ops->recall_state_check(rs, &json, &stored) < 0) {
			mail_storage_set_error(box->storage, MAIL_ERROR_PARAMS,
				"Malformed recall state");
			return -1;
		}
		return coi_recall_raw_set(t, t_strconcat(COI_PVT_RECALL, id,
			NULL), t_strndup(stored.ptr, stored.len));
	}
	if (user->service == NULL || strcmp(user->service, "imap") != 0) {
		/* a recall is the user's own authenticated IMAP request */
		mail_storage_set_error(box->storage, MAIL_ERROR_NOTPOSSIBLE,
			"Recalls are requested over IMAP by the sender");
		return -1;
	}
	return coi_recall_new_request(t, rs, id, str);
}

static int coi_recall_iter(struct mailbox *box, const char *key_prefix,
			   pool_t pool, ARRAY_TYPE(const_string) *keys)
{
	ARRAY_TYPE(const_string) names;
	const char *const *name;

	if (coi_user_rs(box->storage->user) == NULL)
		return 0;
	t_array_init(&names, 16);
	if (coi_recall_raw_list(box, &names) < 0)
		return -1;
	array_foreach(&names, name) {
		if (coi_str_begins(*name, key_prefix)) {
			const char *copy = p_strdup(pool, *name);
			array_push_back(keys, &copy);
		}
	}
	return 0;
}

/* ---- carrying a recall out (recipient's account, inside doveadm) ---- */

/* Under the mailbox's transaction log lock: the flags as committed by
   every session up to now (see the file comment). */
static enum coi_recall_outcome
coi_recall_locked_check_expunge(struct mailbox *box, struct mail *mail,
				struct mailbox_transaction_context **_t)
{
	struct mail_index *index = box->index;
	struct mail_index_view *view;
	const struct mail_index_record *rec;
	enum coi_recall_outcome outcome;
	uint32_t log_seq, seq;
	uoff_t log_offset;

	if (mail_transaction_log_sync_lock(index->log, "coi recall",
					   &log_seq, &log_offset) < 0)
		return COI_RECALL_FAILED;
	if (mail_index_refresh(index) < 0) {
		outcome = COI_RECALL_FAILED;
	} else {
		view = mail_index_view_open(index);
		if (!mail_index_lookup_seq(view, mail->uid, &seq)) {
			outcome = COI_RECALL_NOT_FOUND;
		} else {
			rec = mail_index_lookup(view, seq);
			outcome = (rec->flags & MAIL_SEEN) != 0 ?
				COI_RECALL_ALREADY_READ : COI_RECALL_RECALLED;
		}
		mail_index_view_close(&view);
	}
	if (outcome == COI_RECALL_RECALLED && coi_recall_test_hold_ms() > 0)
		usleep(coi_recall_test_hold_ms() * 1000);
	if (outcome == COI_RECALL_RECALLED) {
		/* the expunge request is appended under our lock */
		mail_expunge(mail);
		mail_free(&mail);
		if (mailbox_transaction_commit(_t) < 0)
			outcome = COI_RECALL_FAILED;
	} else {
		mail_free(&mail);
	}
	mail_transaction_log_sync_unlock(index->log, "coi recall");
	return outcome;
}

static enum coi_recall_outcome
coi_recall_copy(struct mail_user *user, void *rs, const char *folder,
		uint32_t uidvalidity, uint32_t uid)
{
	struct mail_namespace *ns = mail_namespace_find(user->namespaces, folder);
	struct mailbox *box;
	struct mailbox_status status;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	enum mail_error error;
	enum coi_recall_outcome outcome;
	const char *message_id;
	struct coi_bytes mid, from;

	if (ns == NULL)
		return COI_RECALL_NOT_FOUND;
	box = mailbox_alloc(ns->list, folder, 0);
	/* picks up changes made outside Dovecot's index (maildir files
	   renamed by other programs) before the check */
	if (mailbox_open(box) < 0 || mailbox_sync(box, 0) < 0) {
		(void)mailbox_get_last_internal_error(box, &error);
		outcome = error == MAIL_ERROR_NOTFOUND ?
			COI_RECALL_NOT_FOUND : COI_RECALL_FAILED;
		if (outcome == COI_RECALL_FAILED) {
			e_error(user->event, "coi: recall: cannot open %s: %s",
				folder, mailbox_get_last_internal_error(box, NULL));
		}
		mailbox_free(&box);
		return outcome;
	}
	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	if (status.uidvalidity != uidvalidity) {
		mailbox_free(&box);
		return COI_RECALL_NOT_FOUND;
	}
	t = mailbox_transaction_begin(box, 0, "coi recall");
	mail = mail_alloc(t, MAIL_FETCH_FLAGS, NULL);
	if (!mail_set_uid(mail, uid)) {
		outcome = COI_RECALL_NOT_FOUND;
	} else {
		/* the copy must still be the sender's message */
		if (mail_get_first_header(mail, "Message-ID", &message_id) <= 0)
			message_id = NULL;
		mid = coi_bytes_from_str(message_id);
		from = coi_bytes_from_str(coi_recall_header_address(mail, "From"));
		if (coi_ops->recall_exec_matches(rs, &mid, &from) != 1)
			outcome = COI_RECALL_NOT_FOUND;
		else if ((mail_get_flags(mail) & MAIL_SEEN) != 0)
			outcome = COI_RECALL_ALREADY_READ;
		else {
			outcome = coi_recall_locked_check_expunge(box, mail, &t);
			mail = NULL;
		}
	}
	if (mail != NULL)
		mail_free(&mail);
	if (t != NULL)
		mailbox_transaction_rollback(&t);
	if (outcome == COI_RECALL_RECALLED &&
	    mailbox_sync(box, MAILBOX_SYNC_FLAG_EXPUNGE) < 0) {
		/* the expunge request stays in the log; any later sync of
		   the mailbox carries it out */
		e_warning(user->event, "coi: recall: cannot sync %s after the "
			  "expunge: %s", folder,
			  mailbox_get_last_internal_error(box, NULL));
	}
	mailbox_free(&box);
	return outcome;
}

static int coi_recall_execute_set(struct mailbox_transaction_context *t,
				  const char *key ATTR_UNUSED,
				  const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	struct mail_user *user = box->storage->user;
	void *rs = coi_user_rs(user);
	struct coi_bytes json, folder_bytes;
	const char *str, *folder;
	uint32_t uidvalidity, uid;
	int32_t count, i;
	enum coi_recall_outcome outcome;

	if (rs == NULL || !coi_recall_from_sidecar(user)) {
		return coi_recall_refuse(box, MAIL_ERROR_NOTPOSSIBLE, NULL);
	}
	if (mailbox_attribute_value_to_string(box->storage, value, &str) < 0)
		return -1;
	if (str == NULL)
		return 0;
	json = coi_bytes_from_str(str);
	if ((count = coi_ops->recall_exec_begin(rs, &json)) <= 0) {
		mail_storage_set_error(box->storage, MAIL_ERROR_PARAMS,
				       "Malformed recall");
		return -1;
	}
	for (i = 0; i < count; i++) T_BEGIN {
		outcome = COI_RECALL_FAILED;
		if (coi_ops->recall_exec_copy(rs, i, &folder_bytes,
					      &uidvalidity, &uid) == 0) {
			folder = t_strndup(folder_bytes.ptr, folder_bytes.len);
			outcome = coi_recall_copy(user, rs, folder,
						  uidvalidity, uid);
		}
		coi_ops->recall_exec_result(rs, i, outcome);
	} T_END;
	if (coi_ops->recall_exec_finish(rs, user->event) < 0) {
		/* the copies were handled; only the report is missing (the
		   sender's entry stays pending), logged by Rust */
		e_error(user->event, "coi: recall: the outcome could not be "
			"reported to coi-sidecar");
	}
	return 0;
}

/* ---- registration ---- */

#define COI_RECALL_ATTR(k, fl, g, s, it) { \
	.type = MAIL_ATTRIBUTE_TYPE_PRIVATE, .key = (k), \
	.rank = MAIL_ATTRIBUTE_INTERNAL_RANK_AUTHORITY, \
	.flags = MAIL_ATTRIBUTE_INTERNAL_FLAG_VALIDATED | (fl), \
	.get = (g), .set = (s), .iter = (it) }

static const struct mailbox_attribute_internal coi_recall_attributes[] = {
	COI_RECALL_ATTR(COI_ATTR_RECALL, MAIL_ATTRIBUTE_INTERNAL_FLAG_CHILDREN,
			coi_recall_get, coi_recall_set, coi_recall_iter),
	/* write-only */
	COI_RECALL_ATTR(COI_ATTR_RECALL_EXECUTE, 0, coi_attribute_get_nothing,
			coi_recall_execute_set, NULL),
};

void coi_recall_register(void)
{
	mailbox_attribute_register_internals(coi_recall_attributes,
		N_ELEMENTS(coi_recall_attributes));
	coi_read_register();
}

void coi_recall_unregister(void)
{
	coi_read_unregister();
	mailbox_attribute_unregister_internals(coi_recall_attributes,
		N_ELEMENTS(coi_recall_attributes));
}

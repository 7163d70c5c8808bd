/* coi-read.c - read status (docs/recall.md, "Read status").
 *
 * Owns:
 *  - the consent entry, server METADATA
 *      /private/vendor/vendor.dovecot/coi/config/read-status  yes | no | NIL
 *    (NIL: the site default coi_default_read_status; GETMETADATA shows it);
 *  - noting, in IMAP and doveadm sessions, each message on which a
 *    transaction sets \Seen for the first time, and, once that transaction
 *    has committed, one `read` record per message when the user consents.
 *    Replication (dsync) is never noted: it only copies a read that was
 *    already reported where it happened (coi-replication.c);
 *  - marking the sender's own copies: the sidecar sets
 *      /private/vendor/vendor.dovecot/coi/read-mark
 *    through doveadm (so this runs as the sender) to the Message-ID that
 *    was read; every copy of it in the sender's INBOX, chats folder and
 *    \Sent mailboxes gets the keyword $CoiRead.
 *
 * The storage hooks here are a second hook set of the plugin's module
 * (mail_storage_hooks_add()), with module contexts of their own, so they
 * chain with coi-plugin.c's vfuncs like any other plugin's would.
 */
#include "coi-private.h"
#include "str.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "mailbox-list-iter.h"
#include "mail-storage-hooks.h"
#include "mailbox-attribute-private.h"

#define COI_ATTR_READ_STATUS COI_SERVER_ATTR(COI_CONFIG_KEY_PREFIX "read-status")
#define COI_ATTR_READ_MARK COI_SERVER_ATTR("vendor/vendor.dovecot/coi/read-mark")
#define COI_KEYWORD_READ "$CoiRead"

static MODULE_CONTEXT_DEFINE_INIT(coi_read_storage_module,
				  &mail_storage_module_register);
static MODULE_CONTEXT_DEFINE_INIT(coi_read_mail_module, &mail_module_register);
#define COI_READ_CONTEXT(obj) MODULE_CONTEXT(obj, coi_read_storage_module)
#define COI_READ_CONTEXT_REQUIRE(obj) \
	MODULE_CONTEXT_REQUIRE(obj, coi_read_storage_module)

struct coi_read_mailbox {
	union mailbox_module_context module_ctx;
};

struct coi_read_note {
	uint32_t uid;
	char *message_id;
};

/* The messages a transaction reads for the first time (made on the
   first one; consent is looked up then, once). */
struct coi_read_transaction {
	union mailbox_transaction_module_context module_ctx;
	pool_t pool;
	bool consents;
	ARRAY(struct coi_read_note) notes;
};

/* ---- consent ---- */

int coi_read_consents(struct mail_user *user)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);
	void *rs = coi_user_rs(user);
	struct mailbox *box;
	struct mail_attribute_value value;
	struct coi_bytes stored;
	int ret;

	if (rs == NULL || ns == NULL)
		return 0;
	box = mailbox_alloc(ns->list, "INBOX", MAILBOX_FLAG_READONLY);
	i_zero(&value);
	ret = box->v.attribute_get(box, MAIL_ATTRIBUTE_TYPE_PRIVATE,
				   COI_ATTR_READ_STATUS, &value);
	stored = coi_bytes_from_str(ret > 0 ? t_strdup(value.value) : NULL);
	mailbox_free(&box);
	/* unreadable consent is no consent */
	if (ret < 0)
		return 0;
	return coi_ops->read_consents(rs, &stored) == 1 ? 1 : 0;
}

static int coi_read_status_get(struct mailbox *box, const char *key,
			       struct mail_attribute_value *value_r)
{
	void *rs = coi_user_rs(box->storage->user);
	struct mail_attribute_value stored;
	struct coi_bytes def;
	int ret;

	i_zero(&stored);
	ret = box->v.attribute_get(box, MAIL_ATTRIBUTE_TYPE_PRIVATE, key,
				   &stored);
	if (ret != 0) {
		value_r->value = ret > 0 ? t_strdup(stored.value) : NULL;
		return ret;
	}
	if (rs == NULL || coi_ops->read_consent_default(rs, &def) != 1)
		return 0;
	value_r->value = t_strndup(def.ptr, def.len);
	return 1;
}

static int coi_read_status_set(struct mailbox_transaction_context *t,
			       const char *key,
			       const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	void *rs = coi_user_rs(box->storage->user);
	struct mail_attribute_value raw;
	struct coi_bytes bytes, error;
	const char *str;

	if (mailbox_attribute_value_to_string(box->storage, value, &str) < 0)
		return -1;
	if (rs != NULL) {
		bytes = coi_bytes_from_str(str);
		i_zero(&error);
		if (coi_ops->read_consent_check(rs, &bytes, &error) < 0) {
			mail_storage_set_error(box->storage, MAIL_ERROR_PARAMS,
				error.ptr == NULL ? "Refused" :
				t_strndup(error.ptr, error.len));
			return -1;
		}
	}
	i_zero(&raw);
	raw.value = str == NULL ? NULL : t_str_lcase(str);
	return box->v.attribute_set(t, MAIL_ATTRIBUTE_TYPE_PRIVATE, key, &raw);
}

/* ---- noting first reads ---- */

static struct coi_read_transaction *
coi_read_transaction(struct mailbox_transaction_context *t)
{
	struct coi_read_transaction *rt = COI_READ_CONTEXT(t);
	pool_t pool;

	if (rt == NULL) {
		pool = pool_alloconly_create("coi read status", 1024);
		rt = p_new(pool, struct coi_read_transaction, 1);
		rt->pool = pool;
		rt->consents = coi_read_consents(t->box->storage->user) == 1;
		p_array_init(&rt->notes, pool, 8);
		MODULE_CONTEXT_SET(t, coi_read_storage_module, rt);
	}
	return rt;
}

static void coi_read_note(struct mail *mail)
{
	struct coi_read_transaction *rt = coi_read_transaction(mail->transaction);
	struct coi_read_note *note;
	const char *message_id;

	if (!rt->consents)
		return;
	array_foreach_modifiable(&rt->notes, note) {
		if (note->uid == mail->uid)
			return;
	}
	/* read now: seen mode may move the message once this commits */
	if (mail_get_first_header(mail, "Message-ID", &message_id) <= 0)
		return;
	note = array_append_space(&rt->notes);
	note->uid = mail->uid;
	note->message_id = p_strdup(rt->pool, message_id);
}

static void coi_read_update_flags(struct mail *mail,
				  enum modify_type modify_type,
				  enum mail_flags flags)
{
	struct mail_private *pmail = (struct mail_private *)mail;
	union mail_module_context *cmail =
		MODULE_CONTEXT_REQUIRE(pmail, coi_read_mail_module);
	bool becomes_seen = modify_type != MODIFY_REMOVE &&
		(flags & MAIL_SEEN) != 0 &&
		(mail_get_flags(mail) & MAIL_SEEN) == 0 &&
		!coi_transaction_is_replication(mail->transaction);

	if (becomes_seen) T_BEGIN {
		coi_read_note(mail);
	} T_END;
	cmail->super.update_flags(mail, modify_type, flags);
}

static void coi_read_mail_allocated(struct mail *mail)
{
	struct mail_private *pmail = (struct mail_private *)mail;
	struct mail_vfuncs *v = pmail->vlast;
	union mail_module_context *cmail;

	if (COI_READ_CONTEXT(mail->box) == NULL)
		return;
	cmail = p_new(pmail->pool, union mail_module_context, 1);
	cmail->super = *v;
	pmail->vlast = &cmail->super;
	v->update_flags = coi_read_update_flags;
	MODULE_CONTEXT_SET_SELF(pmail, coi_read_mail_module, cmail);
}

static struct coi_read_transaction *
coi_read_take(struct mailbox_transaction_context *t)
{
	struct coi_read_transaction *rt = COI_READ_CONTEXT(t);

	if (rt != NULL)
		MODULE_CONTEXT_UNSET(t, coi_read_storage_module);
	return rt;
}

static void coi_read_report(struct mailbox *box, struct coi_read_transaction *rt)
{
	struct mail_user *user = box->storage->user;
	void *rs = coi_user_rs(user);
	struct mailbox_status status;
	struct coi_stored_message message;
	const struct coi_read_note *note;
	struct coi_bytes mid;

	if (rs == NULL || array_count(&rt->notes) == 0)
		return;
	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	i_zero(&message);
	message.folder = coi_bytes_from_str(mailbox_get_vname(box));
	message.uid_validity = status.uidvalidity;
	array_foreach(&rt->notes, note) {
		message.uid = note->uid;
		mid = coi_bytes_from_str(note->message_id);
		(void)coi_ops->message_read(rs, user->event, &message, &mid);
	}
}

static int coi_read_transaction_commit(struct mailbox_transaction_context *t,
				       struct mail_transaction_commit_changes *changes_r)
{
	struct mailbox *box = t->box;
	struct coi_read_mailbox *rbox = COI_READ_CONTEXT_REQUIRE(box);
	struct coi_read_transaction *rt = coi_read_take(t);
	int ret;

	ret = rbox->module_ctx.super.transaction_commit(t, changes_r);
	if (rt != NULL) {
		if (ret == 0) T_BEGIN {
			coi_read_report(box, rt);
		} T_END;
		pool_unref(&rt->pool);
	}
	return ret;
}

static void coi_read_transaction_rollback(struct mailbox_transaction_context *t)
{
	struct coi_read_mailbox *rbox = COI_READ_CONTEXT_REQUIRE(t->box);
	struct coi_read_transaction *rt = coi_read_take(t);

	if (rt != NULL)
		pool_unref(&rt->pool);
	rbox->module_ctx.super.transaction_rollback(t);
}

static void coi_read_mailbox_allocated(struct mailbox *box)
{
	struct mail_user *user = box->storage->user;
	void *rs = coi_user_rs(user);
	struct mailbox_vfuncs *v = box->vlast;
	struct coi_read_mailbox *rbox;

	/* deliveries are never reads; replication never reports them */
	if (rs == NULL || (box->flags & MAILBOX_FLAG_POST_SESSION) != 0 ||
	    coi_user_is_dsync(user) ||
	    (coi_ops->recall_needs(rs) & COI_RECALL_NEED_READ_STATUS) == 0)
		return;
	rbox = p_new(box->pool, struct coi_read_mailbox, 1);
	rbox->module_ctx.super = *v;
	box->vlast = &rbox->module_ctx.super;
	v->transaction_commit = coi_read_transaction_commit;
	v->transaction_rollback = coi_read_transaction_rollback;
	MODULE_CONTEXT_SET(box, coi_read_storage_module, rbox);
}

/* ---- marking the sender's own copies ---- */

/* Adds $CoiRead to every message of `vname` with this Message-ID.
   Returns how many were marked, -1 on error (logged). */
static int coi_read_mark_box(struct mail_user *user, const char *vname,
			     const char *message_id,
			     struct coi_stored_message *first_r)
{
	struct mail_namespace *ns = mail_namespace_find(user->namespaces, vname);
	const char *const names[] = { COI_KEYWORD_READ, NULL };
	struct mailbox *box;
	struct mailbox_transaction_context *t;
	struct mail_search_args *args;
	struct mail_search_arg *arg;
	struct mail_search_context *ctx;
	struct mail_keywords *kw;
	struct mail *mail;
	enum mail_error error;
	int marked = 0;

	if (ns == NULL)
		return 0;
	box = mailbox_alloc(ns->list, vname, 0);
	if (mailbox_open(box) < 0 || mailbox_sync(box, 0) < 0) {
		(void)mailbox_get_last_internal_error(box, &error);
		mailbox_free(&box);
		return error == MAIL_ERROR_NOTFOUND ? 0 : -1;
	}
	args = mail_search_build_init();
	arg = mail_search_build_add(args, SEARCH_HEADER);
	arg->hdr_field_name = "Message-ID";
	arg->value.str = message_id;
	t = mailbox_transaction_begin(box, 0, "coi read status");
	kw = mailbox_keywords_create_valid(box, names);
	ctx = mailbox_search_init(t, args, NULL, 0, NULL);
	while (mailbox_search_next(ctx, &mail)) {
		mail_update_keywords(mail, MODIFY_ADD, kw);
		if (first_r->folder.ptr == NULL) {
			struct mailbox_status status;

			mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
			first_r->folder = coi_bytes_from_str(t_strdup(vname));
			first_r->uid = mail->uid;
			first_r->uid_validity = status.uidvalidity;
		}
		marked++;
	}
	if (mailbox_search_deinit(&ctx) < 0)
		marked = -1;
	mailbox_keywords_unref(&kw);
	mail_search_args_unref(&args);
	if (marked < 0 || mailbox_transaction_commit(&t) < 0) {
		if (t != NULL)
			mailbox_transaction_rollback(&t);
		e_warning(user->event, "coi: read status: cannot mark %s: %s",
			  vname, mailbox_get_last_internal_error(box, NULL));
		marked = -1;
	}
	mailbox_free(&box);
	return marked;
}

/* The sender's INBOX, chats folder and \Sent mailboxes (data stack). */
static void coi_read_own_folders(struct mail_user *user,
				 ARRAY_TYPE(const_string) *folders)
{
	void *rs = coi_user_rs(user);
	struct coi_bytes chats, contacts;
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	const char *name = "INBOX";

	array_push_back(folders, &name);
	if (coi_ops->folder_names(rs, (uint8_t)coi_user_separator(user),
				  &chats, &contacts) == 0) {
		name = t_strndup(chats.ptr, chats.len);
		array_push_back(folders, &name);
	}
	iter = mailbox_list_iter_init_namespaces(user->namespaces,
		(const char *const[]){ "*", NULL },
		MAIL_NAMESPACE_TYPE_PRIVATE,
		MAILBOX_LIST_ITER_SELECT_SPECIALUSE |
		MAILBOX_LIST_ITER_RETURN_SPECIALUSE |
		MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
	while ((info = mailbox_list_iter_next(iter)) != NULL) {
		if (info->special_use != NULL &&
		    strstr(info->special_use, "\\Sent") != NULL) {
			name = t_strdup(info->vname);
			array_push_back(folders, &name);
		}
	}
	if (mailbox_list_iter_deinit(&iter) < 0) {
		e_warning(user->event, "coi: read status: cannot list the "
			  "\\Sent mailboxes");
	}
}

static int coi_read_mark_set(struct mailbox_transaction_context *t,
			     const char *key ATTR_UNUSED,
			     const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	struct mail_user *user = box->storage->user;
	void *rs = coi_user_rs(user);
	ARRAY_TYPE(const_string) folders;
	const char *const *folder, *str, *message_id;
	struct coi_bytes json, mid;
	struct coi_stored_message first;
	int marked = 0, ret;

	if (rs == NULL || user->service == NULL ||
	    strcmp(user->service, "doveadm") != 0 || coi_user_is_dsync(user)) {
		mail_storage_set_error(box->storage, MAIL_ERROR_NOTPOSSIBLE,
			"Read marks are set by coi-sidecar only");
		return -1;
	}
	if (mailbox_attribute_value_to_string(box->storage, value, &str) < 0)
		return -1;
	if (str == NULL)
		return 0;
	json = coi_bytes_from_str(str);
	if (coi_ops->read_mark_parse(rs, &json, &mid) < 0) {
		mail_storage_set_error(box->storage, MAIL_ERROR_PARAMS,
				       "Malformed read mark");
		return -1;
	}
	message_id = t_strndup(mid.ptr, mid.len);
	i_zero(&first);
	t_array_init(&folders, 8);
	coi_read_own_folders(user, &folders);
	array_foreach(&folders, folder) {
		/* the chats folder may be INBOX's neighbour or missing */
		ret = coi_read_mark_box(user, *folder, message_id, &first);
		if (ret < 0) {
			mail_storage_set_error(box->storage, MAIL_ERROR_TEMP,
				"Cannot mark the read message");
			return -1;
		}
		marked += ret;
	}
	/* the sender's devices hear of it (Web Push, msgtype chat) */
	if (marked > 0 && coi_ops->read_push_prepare(rs, &json) == 1)
		coi_push_collect(user, NULL, NULL, NULL, &first);
	e_debug(user->event, "coi: read status: %s marked "COI_KEYWORD_READ
		" on %d copie(s)", message_id, marked);
	return 0;
}

/* ---- registration ---- */

#define COI_READ_ATTR(k, g, s) { \
	.type = MAIL_ATTRIBUTE_TYPE_PRIVATE, .key = (k), \
	.rank = MAIL_ATTRIBUTE_INTERNAL_RANK_AUTHORITY, \
	.flags = MAIL_ATTRIBUTE_INTERNAL_FLAG_VALIDATED, \
	.get = (g), .set = (s) }

static const struct mailbox_attribute_internal coi_read_attributes[] = {
	COI_READ_ATTR(COI_ATTR_READ_STATUS, coi_read_status_get,
		      coi_read_status_set),
	/* write-only */
	COI_READ_ATTR(COI_ATTR_READ_MARK, coi_attribute_get_nothing,
		      coi_read_mark_set),
};

static const struct mail_storage_hooks coi_read_hooks = {
	.mailbox_allocated = coi_read_mailbox_allocated,
	.mail_allocated = coi_read_mail_allocated,
};

void coi_read_register(void)
{
	mailbox_attribute_register_internals(coi_read_attributes,
		N_ELEMENTS(coi_read_attributes));
	mail_storage_hooks_add(coi_module, &coi_read_hooks);
}

void coi_read_unregister(void)
{
	mail_storage_hooks_remove(&coi_read_hooks);
	mailbox_attribute_unregister_internals(coi_read_attributes,
		N_ELEMENTS(coi_read_attributes));
}

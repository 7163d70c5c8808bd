/* coi-lifecycle.c - the chats folder's life cycle in IMAP and doveadm
 * sessions (DESIGN §3): CREATE (or RENAME to) <root>/Chats enables COI,
 * DELETE of it or RENAME under Trash disables it, any other RENAME of it
 * is refused. Rust decides (folder_change); this file carries it out:
 * refusals before Dovecot acts, enable/disable after it succeeded.
 *
 * Only a user's own operations count. The plugin's own folder creation
 * runs quiet (coi_lifecycle_quiet), and dsync replaying the other side's
 * folder changes is no choice either (coi-replication.c): it is neither
 * refused nor taken to enable or disable anything.
 */
#include "coi-private.h"
#include "mail-namespace.h"

/* Set while COI itself creates folders (enabling creates Chats and
   Contacts), so those creations are not taken for a user's CREATE. */
static bool coi_lifecycle_busy;

bool coi_lifecycle_quiet(bool quiet)
{
	bool was = coi_lifecycle_busy;

	coi_lifecycle_busy = quiet;
	return was;
}

static int coi_folder_action(struct mailbox *box, enum coi_folder_op op,
			     struct mailbox *dest, const char **error_r)
{
	struct mail_user *user = box->storage->user;
	void *rs = coi_user_rs(user);
	struct coi_folder_change change;
	struct coi_bytes error;
	struct mail_namespace *ns = mailbox_get_namespace(box);
	int32_t action;

	*error_r = NULL;
	if (rs == NULL || coi_lifecycle_busy || coi_user_is_dsync(user) ||
	    ns == NULL || (ns->flags & NAMESPACE_FLAG_INBOX_USER) == 0)
		return COI_FOLDER_ACTION_NONE;
	i_zero(&change);
	i_zero(&error);
	change.op = op;
	change.name = coi_bytes_from_str(mailbox_get_vname(box));
	if (dest != NULL)
		change.new_name = coi_bytes_from_str(mailbox_get_vname(dest));
	change.trash_name = coi_bytes_from_str(coi_trash_name(user));
	change.separator = (uint8_t)mail_namespace_get_sep(ns);
	action = coi_ops->folder_change(rs, user->event, &change, &error);
	if (action == COI_FOLDER_ACTION_REFUSE)
		*error_r = error.ptr == NULL ? "Refused by COI" :
			t_strndup(error.ptr, error.len);
	return action < 0 ? COI_FOLDER_ACTION_NONE : action;
}

static void coi_folder_apply(struct mailbox *box, int32_t action)
{
	struct mail_user *user = box->storage->user;
	const char *error;

	if (action != COI_FOLDER_ACTION_ENABLE &&
	    action != COI_FOLDER_ACTION_DISABLE)
		return;
	coi_lifecycle_busy = TRUE;
	if (coi_set_enabled(user, action == COI_FOLDER_ACTION_ENABLE,
			    &error) < 0) {
		e_error(user->event, "coi: cannot %s COI after %s: %s",
			action == COI_FOLDER_ACTION_ENABLE ? "enable" : "disable",
			mailbox_get_vname(box), error);
	}
	coi_lifecycle_busy = FALSE;
}

int coi_create_box(struct mailbox *box, const struct mailbox_update *update,
		   bool directory)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);
	const char *error;
	int32_t action;
	int ret;

	T_BEGIN {
		action = coi_folder_action(box, COI_FOLDER_CREATE, NULL, &error);
	} T_END;
	ret = cbox->module_ctx.super.create_box(box, update, directory);
	if (ret == 0) T_BEGIN {
		coi_folder_apply(box, action);
	} T_END;
	return ret;
}

int coi_delete_box(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);
	const char *error;
	int32_t action;
	int ret;

	T_BEGIN {
		action = coi_folder_action(box, COI_FOLDER_DELETE, NULL, &error);
	} T_END;
	ret = cbox->module_ctx.super.delete_box(box);
	if (ret == 0) T_BEGIN {
		coi_folder_apply(box, action);
	} T_END;
	return ret;
}

int coi_rename_box(struct mailbox *src, struct mailbox *dest)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(src);
	int32_t action = COI_FOLDER_ACTION_NONE;
	bool refused = FALSE;
	int ret;

	T_BEGIN {
		const char *error;

		action = coi_folder_action(src, COI_FOLDER_RENAME, dest, &error);
		if (action == COI_FOLDER_ACTION_REFUSE) {
			mail_storage_set_error(src->storage,
					       MAIL_ERROR_NOTPOSSIBLE, error);
			refused = TRUE;
		}
	} T_END;
	if (refused)
		return -1;
	ret = cbox->module_ctx.super.rename_box(src, dest);
	if (ret == 0) T_BEGIN {
		coi_folder_apply(src, action);
	} T_END;
	return ret;
}

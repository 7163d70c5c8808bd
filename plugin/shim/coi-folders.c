/* coi-folders.c - creating COI folders and finding the Trash folder.
 *
 * Shared by delivery (the chats folder on first chat), the `enabled`
 * config key (Chats and Contacts before the tagged OK) and seen mode.
 * The plugin's own creations are never a user's choice: they run with the
 * folder life cycle quiet (coi-lifecycle.c), so creating the chats folder
 * here never stores `enabled` in the user's METADATA.
 */
#include "coi-private.h"
#include "mail-namespace.h"

/* 1 when `vname` exists as a selectable mailbox, 0 when not, -1 error. */
static int coi_folder_exists(struct mail_user *user, const char *vname,
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

/* 0 when created or created meanwhile by someone else, -1 otherwise. */
static int coi_folder_create(struct mail_user *user, const char *vname,
			     bool subscribe, const char **error_r)
{
	struct mailbox *box = mailbox_alloc_for_user(user, vname, 0);
	enum mail_error error;
	int ret = 0;

	if (mailbox_create(box, NULL, FALSE) < 0) {
		*error_r = t_strdup(mailbox_get_last_internal_error(box, &error));
		if (error != MAIL_ERROR_EXISTS)
			ret = -1;
	}
	if (ret == 0 && subscribe && mailbox_set_subscribed(box, TRUE) < 0) {
		e_warning(user->event, "coi: cannot subscribe %s: %s", vname,
			  mailbox_get_last_internal_error(box, NULL));
	}
	mailbox_free(&box);
	return ret;
}

static int coi_folder_ensure_quiet(struct mail_user *user, const char *vname,
				   bool subscribe, const char **error_r)
{
	unsigned int attempt;
	int ret;

	if ((ret = coi_folder_exists(user, vname, error_r)) > 0)
		return 0;
	/* Concurrent first deliveries race to create the folder (and, in
	   some layouts, its parent); the loser may see "not found" rather
	   than "exists". One more look after a failed create settles it. */
	for (attempt = 0; ret == 0 && attempt < 2; attempt++) {
		if (coi_folder_create(user, vname, subscribe, error_r) == 0) {
			e_debug(user->event, "coi: created folder %s", vname);
			return 0;
		}
		ret = coi_folder_exists(user, vname, error_r);
		if (ret > 0)
			return 0;
	}
	return -1;
}

int coi_folder_ensure(struct mail_user *user, const char *vname,
		      bool subscribe, const char **error_r)
{
	bool was_quiet;
	int ret;

	*error_r = "unknown error";
	was_quiet = coi_lifecycle_quiet(TRUE);
	ret = coi_folder_ensure_quiet(user, vname, subscribe, error_r);
	(void)coi_lifecycle_quiet(was_quiet);
	return ret;
}

#if DOVECOT_PREREQ(2, 4, 0)
/* 2.4: the namespace's mailbox {} filters, parsed by lib-storage; each
   special_use is a list of flags. */
const char *coi_trash_name(struct mail_user *user)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);
	const struct mailbox_settings *box_set;
	const char *use;

	if (ns == NULL || ns->set == NULL ||
	    !array_is_created(&ns->set->parsed_mailboxes))
		return NULL;
	array_foreach_elem(&ns->set->parsed_mailboxes, box_set) {
		if (!array_is_created(&box_set->special_use))
			continue;
		array_foreach_elem(&box_set->special_use, use) {
			if (strcasecmp(use, "\\Trash") == 0)
				return t_strconcat(ns->prefix, box_set->name,
						   NULL);
		}
	}
	return NULL;
}
#else
const char *coi_trash_name(struct mail_user *user)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);
	struct mailbox_settings *const *box_set;

	if (ns == NULL || ns->set == NULL || !array_is_created(&ns->set->mailboxes))
		return NULL;
	array_foreach(&ns->set->mailboxes, box_set) {
		const char *const *uses =
			t_strsplit_spaces((*box_set)->special_use, " ");
		if (str_array_icase_find(uses, "\\Trash"))
			return t_strconcat(ns->prefix, (*box_set)->name, NULL);
	}
	return NULL;
}
#endif

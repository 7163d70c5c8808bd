/* coi-metadata.c - the user's stored COI configuration (server METADATA,
 * DESIGN §3: /private/vendor/vendor.dovecot/coi/config/...).
 *
 * Dovecot keeps server METADATA as private attributes of INBOX under
 * vendor/vendor.dovecot/pvt/server/. coi-attributes.c makes the config keys
 * internal attributes (validated, with defaults shown to clients); the
 * plugin itself reads the stored values underneath, through the storage's
 * own attribute vfunc, so "not set" stays distinguishable from "set to the
 * default". A user without attribute storage (mail_attribute_dict unset)
 * simply has no per-user config.
 *
 * Callers: delivery (only for chats), the fast-notify scope check, seen
 * mode, and the folder life cycle (coi_set_enabled).
 */
#include "coi-private.h"
#include "mail-namespace.h"
#include "imap-metadata.h"

#define COI_METADATA_CONFIG "/private/vendor/vendor.dovecot/coi/config/"

int coi_read_metadata(struct mail_user *user,
		      struct coi_user_metadata *metadata_r,
		      const char **error_r)
{
	static const char *const keys[] = {
		COI_SERVER_ATTR(COI_CONFIG_KEY_PREFIX "enabled"),
		COI_SERVER_ATTR(COI_CONFIG_KEY_PREFIX "message-filter"),
	};
	struct coi_bytes *values[] = {
		&metadata_r->enabled, &metadata_r->message_filter
	};
	struct mail_namespace *ns;
	struct mailbox *box;
	struct mail_attribute_value value;
	enum mail_error error;
	unsigned int i;
	int ret = 0;

	i_zero(metadata_r);
	ns = mail_namespace_find_inbox(user->namespaces);
	if (ns == NULL) {
		*error_r = "user has no INBOX namespace";
		return -1;
	}
	box = mailbox_alloc(ns->list, "INBOX", MAILBOX_FLAG_READONLY);
	for (i = 0; i < N_ELEMENTS(keys); i++) {
		i_zero(&value);
		if (box->v.attribute_get(box, MAIL_ATTRIBUTE_TYPE_PRIVATE,
					 keys[i], &value) < 0) {
			const char *errstr =
				mailbox_get_last_internal_error(box, &error);
			/* no attribute storage configured: no config */
			if (error != MAIL_ERROR_NOTPOSSIBLE) {
				*error_r = t_strdup(errstr);
				ret = -1;
			}
			break;
		}
		*values[i] = coi_bytes_from_str(t_strdup(value.value));
	}
	mailbox_free(&box);
	return ret;
}

int coi_set_enabled(struct mail_user *user, bool enabled, const char **error_r)
{
	/* "no", not NIL: NIL is the site default, which may be on */
	return coi_set_config(user, "enabled", enabled ? "yes" : "no", error_r);
}

int coi_set_config(struct mail_user *user, const char *name,
		   const char *value_str, const char **error_r)
{
	struct imap_metadata_transaction *imtrans;
	struct mail_attribute_value value;
	enum mail_error error;
	int ret;

	i_zero(&value);
	value.value = value_str;
	imtrans = imap_metadata_transaction_begin_server(user);
	ret = imap_metadata_set(imtrans, t_strconcat(COI_METADATA_CONFIG,
						     name, NULL), &value);
	if (ret < 0) {
		*error_r = t_strdup(imap_metadata_transaction_get_last_error(
			imtrans, &error));
		imap_metadata_transaction_rollback(&imtrans);
		return -1;
	}
	if (imap_metadata_transaction_commit(&imtrans, &error, error_r) < 0)
		return -1;
	return 0;
}

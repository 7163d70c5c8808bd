/* coi-metadata.c - reading a user's COI configuration from server
 * METADATA (DESIGN §3: /private/vendor/vendor.dovecot/coi/config/...).
 *
 * Callers: the delivery hook (only for chats) and the fast-notify scope
 * check (once per IDLE start on INBOX). Dovecot stores server METADATA as
 * private attributes of INBOX; a user without any attribute storage
 * (mail_attribute_dict unset) simply has no per-user config.
 */
#include "coi-private.h"
#include "mail-namespace.h"
#include "imap-metadata.h"

#define COI_METADATA_ENABLED \
	"/private/vendor/vendor.dovecot/coi/config/enabled"
#define COI_METADATA_MESSAGE_FILTER \
	"/private/vendor/vendor.dovecot/coi/config/message-filter"

/* Reads the user's COI server METADATA. Returns 0 with the values (NULL =
   NIL; copied to the data stack), or -1 with *error_r set. A user without
   any attribute storage (mail_attribute_dict unset) simply has no per-user
   config: that is 0 with both values NIL. */
int coi_read_metadata(struct mail_user *user,
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

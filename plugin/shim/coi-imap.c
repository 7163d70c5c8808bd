/* coi-imap.c - what an IMAP session of a COI user announces: the
 * capabilities COI, WEBPUSH (while the sidecar's VAPID key is readable)
 * and XDELTAPUSH (coi_deltachat_push = yes), added after login only: the
 * hook runs when the post-login imap process creates the client, and the
 * login reply's CAPABILITY is built from the client afterwards.
 *
 * imap_client_created_hook_set() and client_add_capability() exist only in
 * the imap binary; declared weak, they are NULL elsewhere (lmtp, lda,
 * doveadm), where nothing is installed.
 */
#include "coi-private.h"
#include "imap-common.h"
#include "imap-client.h"

#pragma weak imap_client_created_hook_set
#pragma weak client_add_capability

static imap_client_created_func_t *coi_next_client_created;
static bool coi_imap_installed;

static void coi_client_created(struct client **clientp)
{
	struct client *client = *clientp;
	void *rs = coi_user_rs(client->user);

	if (rs != NULL) T_BEGIN {
		uint32_t caps = coi_ops->capabilities(rs);

		if ((caps & COI_CAPABILITY_COI) != 0)
			client_add_capability(client, "COI");
		if ((caps & COI_CAPABILITY_WEBPUSH) != 0)
			client_add_capability(client, "WEBPUSH");
		if ((caps & COI_CAPABILITY_XDELTAPUSH) != 0)
			client_add_capability(client, "XDELTAPUSH");
	} T_END;
	if (coi_next_client_created != NULL)
		coi_next_client_created(clientp);
}

void coi_imap_install(void)
{
	if (imap_client_created_hook_set == NULL ||
	    client_add_capability == NULL)
		return;
	coi_next_client_created =
		imap_client_created_hook_set(coi_client_created);
	coi_imap_installed = TRUE;
}

void coi_imap_uninstall(void)
{
	if (!coi_imap_installed)
		return;
	imap_client_created_hook_set(coi_next_client_created);
	coi_next_client_created = NULL;
	coi_imap_installed = FALSE;
}

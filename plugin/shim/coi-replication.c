/* coi-replication.c - tells changes a user made (IMAP, doveadm commands,
 * delivery) from changes replication copies in (dsync: `doveadm sync` and
 * `backup`, the replicator, `doveadm dsync-server` on the other end).
 *
 * Replication carries the results of what the plugin did on the other side
 * (a seen-mode move arrives as an expunge plus a new message in the chats
 * folder), so anything the plugin does in reaction to a change must not run
 * again for the replicated copy of that change.
 *
 * Dovecot marks both: doveadm sets mail_user->dsyncing on the users of both
 * ends of a dsync run, and dsync's importer opens its transactions with
 * MAILBOX_TRANSACTION_FLAG_SYNC (Dovecot's quota and replication plugins
 * decide the same way).
 */
#include "coi-private.h"

bool coi_user_is_dsync(const struct mail_user *user)
{
	return user->dsyncing;
}

bool coi_transaction_is_replication(const struct mailbox_transaction_context *t)
{
	return (t->flags & MAILBOX_TRANSACTION_FLAG_SYNC) != 0 ||
		coi_user_is_dsync(t->box->storage->user);
}

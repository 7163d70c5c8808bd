/* coi-notify.c - chat-grade change notifications for IMAP IDLE/NOTIFY
 * (issue 7, docs/fast-notify.md).
 *
 * Owns the notify_changes/close vfuncs of mailboxes in IMAP sessions: for
 * folders in scope (coi_fast_notify, decided by Rust) it watches the index
 * log and calls the client's notify callback a few ms after a change,
 * instead of after Dovecot's fixed 500 ms. Runs only in the imap process's
 * ioloop; adds no timers to idle connections.
 */
#include "coi-private.h"
#include "ioloop.h"
#include "mail-namespace.h"

#include <sys/stat.h>

/* How long a burst of index log writes is coalesced before IDLE clients are
   told: one delivery writes the log several times within a millisecond or
   two; Dovecot's own watcher waits 500 ms. */
#define COI_NOTIFY_COALESCE_MSECS 5

/* ---- fast change notifications for IDLE/NOTIFY (imap) ----

   Dovecot's watcher (mailbox-watch.c) waits 500 ms after a change before it
   tells the client. For folders in scope we also watch the mailbox's index
   log (every storage appends to it when a delivery commits) and call the
   same notify callback after COI_NOTIFY_COALESCE_MSECS. Dovecot's watcher
   stays installed as the fallback (files changed by other tools, NFS). One
   inotify watch per path is shared by all ios on it, and the newest io gets
   the events: that is why ours is (re)added after Dovecot's. */

static void coi_notify_stop(struct coi_mailbox *cbox)
{
	io_remove(&cbox->notify_io);
	io_remove(&cbox->notify_dir_io);
	timeout_remove(&cbox->notify_to);
}

static void coi_notify_fire(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	timeout_remove(&cbox->notify_to);
	if (box->notify_callback != NULL)
		box->notify_callback(box, box->notify_context);
}

static void coi_notify_changed(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	if (cbox->notify_to == NULL) {
		cbox->notify_to = timeout_add_short(COI_NOTIFY_COALESCE_MSECS,
						    coi_notify_fire, box);
	}
}

/* Watches the index log file as it is at the path now. */
static bool coi_notify_watch_log(struct mailbox *box, struct coi_mailbox *cbox)
{
	struct stat st;

	if (stat(cbox->notify_path, &st) < 0 ||
	    io_add_notify(cbox->notify_path, coi_notify_changed, box,
			  &cbox->notify_io) != IO_NOTIFY_ADDED) {
		cbox->notify_io = NULL;
		return FALSE;
	}
	cbox->notify_ino = st.st_ino;
	cbox->notify_dev = st.st_dev;
	return TRUE;
}

/* Dovecot rotates the index log by renaming it and starting a new file; an
   inotify watch follows the old inode. Re-watch when the path now names
   another file. Returns TRUE if it did. */
static bool coi_notify_rewatch_if_rotated(struct mailbox *box,
					  struct coi_mailbox *cbox)
{
	struct stat st;

	if (cbox->notify_path == NULL || stat(cbox->notify_path, &st) < 0 ||
	    (cbox->notify_io != NULL && st.st_ino == cbox->notify_ino &&
	     st.st_dev == cbox->notify_dev))
		return FALSE;
	io_remove(&cbox->notify_io);
	(void)coi_notify_watch_log(box, cbox);
	return TRUE;
}

/* Something in the index directory changed. Only a rotated (or newly
   created) log matters here: ordinary log writes arrive through the file
   watch, and reacting to every write in the directory (the imap process's
   own index updates included) would only cause extra syncs. */
static void coi_notify_dir_changed(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	if (coi_notify_rewatch_if_rotated(box, cbox))
		coi_notify_changed(box);
}

/* Stands in for the client's notify callback, so notifications that reach
   the client through Dovecot's own watcher also re-check the log. */
static void coi_notify_relay(struct mailbox *box, void *context)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	(void)coi_notify_rewatch_if_rotated(box, cbox);
	if (cbox->notify_callback != NULL)
		cbox->notify_callback(box, context);
}

static bool coi_notify_in_scope(struct mailbox *box)
{
	struct mail_user *user = box->storage->user;
	struct coi_user *cuser = COI_USER_CONTEXT(user);
	struct coi_user_metadata metadata, *metadata_p = NULL;
	struct coi_bytes folder;
	const char *error;

	if (cuser == NULL || cuser->rs == NULL)
		return FALSE;
	if (box->inbox_user &&
	    coi_read_metadata(user, &metadata, &error) == 0)
		metadata_p = &metadata;
	folder = coi_bytes_from_str(mailbox_get_vname(box));
	return coi_ops->notify_scope(cuser->rs, user->event, &folder,
		(uint8_t)mail_namespace_get_sep(mailbox_get_namespace(box)),
		metadata_p) == 1;
}

void coi_notify_changes(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);
	const char *dir;
	bool in_scope;

	cbox->module_ctx.super.notify_changes(box);
	coi_notify_stop(cbox);
	if (box->notify_callback == NULL)
		return;

	T_BEGIN {
		in_scope = coi_notify_in_scope(box);
	} T_END;
	if (!in_scope)
		return;
	if (cbox->notify_path == NULL) {
		if (mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_INDEX,
					&dir) <= 0)
			return;
		cbox->notify_dir = p_strdup(box->pool, dir);
		cbox->notify_path = p_strconcat(box->pool, dir,
						"/" MAIL_INDEX_PREFIX ".log", NULL);
	}
	/* Added after Dovecot's watches: with several ios on one path only
	   the newest is called (sdbox/mdbox watch the log themselves). */
	if (!coi_notify_watch_log(box, cbox)) {
		/* no inotify or no index log yet: the stock watcher remains */
		return;
	}
	if (io_add_notify(cbox->notify_dir, coi_notify_dir_changed, box,
			  &cbox->notify_dir_io) != IO_NOTIFY_ADDED)
		cbox->notify_dir_io = NULL;
	if (box->notify_callback != coi_notify_relay)
		cbox->notify_callback = box->notify_callback;
	box->notify_callback = coi_notify_relay;
	e_debug(box->event, "coi: fast change notifications from %s",
		cbox->notify_path);
}

void coi_notify_close(struct mailbox *box)
{
	struct coi_mailbox *cbox = COI_MAILBOX_CONTEXT_REQUIRE(box);

	coi_notify_stop(cbox);
	cbox->module_ctx.super.close(box);
}

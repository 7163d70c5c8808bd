/* coi-plugin.c - the plugin's life cycle inside a Dovecot process.
 *
 * Owns hook installation and removal (init/deinit, in reverse order), the
 * per-user context (settings handed to Rust once per user) and the
 * per-mailbox context, which routes mailboxes opened for delivery to
 * coi-deliver.c and mailboxes of IMAP sessions to coi-notify.c.
 *
 * Everything runs on the process's single ioloop thread.
 */
#include "coi-private.h"
#include "mail-storage-hooks.h"
#include "mail-namespace.h"
#if DOVECOT_PREREQ(2, 4, 0)
#  include "settings.h"
#endif

/* Declared in coi-private.h with extern MODULE_CONTEXT_DEFINE(); this is
   MODULE_CONTEXT_DEFINE_INIT() split in two, as Dovecot's quota plugin does. */
struct coi_user_module coi_user_module =
	MODULE_CONTEXT_INIT(&mail_user_module_register);
struct coi_storage_module coi_storage_module =
	MODULE_CONTEXT_INIT(&mail_storage_module_register);

struct module *coi_module;
const struct coi_rs_ops *coi_ops;

/* ---- per user ---- */

static void coi_user_deinit(struct mail_user *user)
{
	struct coi_user *cuser = COI_USER_CONTEXT_REQUIRE(user);

	coi_deliver_forget_user(user);
	if (cuser->rs != NULL)
		coi_ops->user_free(cuser->rs);
	cuser->rs = NULL;
	cuser->module_ctx.super.deinit(user);
}

#if DOVECOT_PREREQ(2, 4, 0)
/* Dovecot 2.4: the typed settings (coi-settings24.c), turned into the
   strings Rust parses for 2.3's plugin {} values: booleans as yes/no,
   sizes in bytes, times in seconds. */
static void coi_user_new_24(struct mail_user *user, struct coi_user *cuser)
{
	const struct coi_settings *cset;
	struct coi_user_settings set;
	const char *error;

	if (settings_get(user->event, &coi_setting_parser_info, 0,
			 &cset, &error) < 0) {
		e_error(user->event, "coi: %s; COI is inactive for this user",
			error);
		return;
	}
	T_BEGIN {
		i_zero(&set);
		set.username = coi_bytes_from_str(user->username);
		set.default_enabled = coi_bytes_from_str(
			cset->coi_default_enabled ? "yes" : "no");
		set.default_message_filter =
			coi_bytes_from_str(cset->coi_default_message_filter);
		set.mailbox_root = coi_bytes_from_str(cset->coi_mailbox_root);
		set.spool_path = coi_bytes_from_str(cset->coi_spool_path);
		set.spool_max_size = coi_bytes_from_str(t_strdup_printf(
			"%"PRIuUOFF_T, cset->coi_spool_max_size));
		set.sidecar_socket = coi_bytes_from_str(cset->coi_sidecar_socket);
		set.fast_notify = coi_bytes_from_str(cset->coi_fast_notify);
		set.webpush_vapid_key =
			coi_bytes_from_str(cset->coi_webpush_vapid_key);
		set.webpush_subscription_limit = coi_bytes_from_str(
			t_strdup_printf("%u",
				cset->coi_webpush_subscription_limit));
		set.webpush_validation_timeout = coi_bytes_from_str(
			t_strdup_printf("%u",
				cset->coi_webpush_validation_timeout));
		set.deltachat_push = coi_bytes_from_str(
			cset->coi_deltachat_push ? "yes" : "no");
		set.webpush_allow_private_endpoints = coi_bytes_from_str(
			cset->coi_webpush_allow_private_endpoints ?
			"yes" : "no");
		if (cset->coi_deltachat_max_smtp_recipients > 0) {
			set.deltachat_max_smtp_recipients = coi_bytes_from_str(
				t_strdup_printf("%u",
					cset->coi_deltachat_max_smtp_recipients));
		}
		set.recall = coi_bytes_from_str(cset->coi_recall ? "yes" : "no");
		set.sender_trust = coi_bytes_from_str(cset->coi_sender_trust);
		set.read_status = coi_bytes_from_str(
			cset->coi_read_status ? "yes" : "no");
		set.default_read_status = coi_bytes_from_str(
			cset->coi_default_read_status ? "yes" : "no");
		cuser->rs = coi_ops->user_new(user->event, &set);
	} T_END;
	settings_free(cset);
}
#endif

static void coi_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct coi_user *cuser;
#if !DOVECOT_PREREQ(2, 4, 0)
	struct coi_user_settings set;
#endif

	cuser = p_new(user->pool, struct coi_user, 1);
	cuser->module_ctx.super = *v;
	user->vlast = &cuser->module_ctx.super;
	v->deinit = coi_user_deinit;
	MODULE_CONTEXT_SET(user, coi_user_module, cuser);

	if (user->autocreated) {
		/* shared-namespace owners and similar: never delivered to */
		return;
	}
#if DOVECOT_PREREQ(2, 4, 0)
	coi_user_new_24(user, cuser);
#else
	const struct {
		const char *name;
		struct coi_bytes *value;
	} settings[] = {
		{ "coi_default_enabled", &set.default_enabled },
		{ "coi_default_message_filter", &set.default_message_filter },
		{ "coi_mailbox_root", &set.mailbox_root },
		{ "coi_spool_path", &set.spool_path },
		{ "coi_spool_max_size", &set.spool_max_size },
		{ "coi_sidecar_socket", &set.sidecar_socket },
		{ "coi_fast_notify", &set.fast_notify },
		{ "coi_webpush_vapid_key", &set.webpush_vapid_key },
		{ "coi_webpush_subscription_limit",
		  &set.webpush_subscription_limit },
		{ "coi_webpush_validation_timeout",
		  &set.webpush_validation_timeout },
		{ "coi_deltachat_push", &set.deltachat_push },
		{ "coi_webpush_allow_private_endpoints",
		  &set.webpush_allow_private_endpoints },
		{ "coi_deltachat_max_smtp_recipients",
		  &set.deltachat_max_smtp_recipients },
		{ "coi_recall", &set.recall },
		{ "coi_sender_trust", &set.sender_trust },
		{ "coi_read_status", &set.read_status },
		{ "coi_default_read_status", &set.default_read_status },
	};
	unsigned int i;

	i_zero(&set);
	set.username = coi_bytes_from_str(user->username);
	for (i = 0; i < N_ELEMENTS(settings); i++) {
		*settings[i].value = coi_bytes_from_str(
			mail_user_plugin_getenv(user, settings[i].name));
	}
	cuser->rs = coi_ops->user_new(user->event, &set);
#endif
}

void *coi_user_rs(struct mail_user *user)
{
	struct coi_user *cuser = COI_USER_CONTEXT(user);

	return cuser == NULL ? NULL : cuser->rs;
}

char coi_user_separator(struct mail_user *user)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);

	return ns == NULL ? '/' : mail_namespace_get_sep(ns);
}

static void coi_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	struct coi_user *cuser = COI_USER_CONTEXT(box->storage->user);
	struct coi_mailbox *cbox;

	if (cuser == NULL || cuser->rs == NULL)
		return;

	cbox = p_new(box->pool, struct coi_mailbox, 1);
	cbox->module_ctx.super = *v;
	box->vlast = &cbox->module_ctx.super;
	if ((box->flags & MAILBOX_FLAG_POST_SESSION) != 0) {
		/* opened for delivery: tag copies, report commits */
		v->copy = coi_mailbox_copy;
		v->transaction_begin = coi_transaction_begin;
		v->transaction_commit = coi_transaction_commit;
	} else {
		/* IMAP and doveadm sessions: IDLE/NOTIFY change notifications,
		   the chats folder's life cycle, seen mode */
		v->notify_changes = coi_notify_changes;
		v->close = coi_notify_close;
		v->create_box = coi_create_box;
		v->delete_box = coi_delete_box;
		v->rename_box = coi_rename_box;
		if (box->inbox_user) {
			cbox->seen_mode = TRUE;
			v->transaction_commit = coi_seen_transaction_commit;
			v->transaction_rollback = coi_seen_transaction_rollback;
		}
	}
	MODULE_CONTEXT_SET(box, coi_storage_module, cbox);
}

/* ---- shim API ---- */

static const struct mail_storage_hooks coi_mail_storage_hooks = {
	.mail_user_created = coi_mail_user_created,
	.mailbox_allocated = coi_mailbox_allocated,
	.mail_allocated = coi_seen_mail_allocated,
};

int32_t coi_shim_init(void *module, const struct coi_rs_ops *ops)
{
	if (ops == NULL || ops->abi != COI_SHIM_ABI) {
		i_error("coi: plugin built inconsistently (shim ABI %u, Rust "
			"ABI %u); plugin disabled", COI_SHIM_ABI,
			ops == NULL ? 0 : ops->abi);
		return -1;
	}
	coi_module = module;
	coi_ops = ops;
	mail_storage_hooks_add(coi_module, &coi_mail_storage_hooks);
	coi_attributes_register();
	coi_recall_register();
	coi_deliver_hook_install();
	coi_imap_install();
	return 0;
}

void coi_shim_deinit(void)
{
	if (coi_ops == NULL)
		return;
	coi_imap_uninstall();
	coi_deliver_hook_uninstall();
	coi_recall_unregister();
	coi_attributes_unregister();
	mail_storage_hooks_remove(&coi_mail_storage_hooks);
	coi_ops = NULL;
	coi_module = NULL;
}

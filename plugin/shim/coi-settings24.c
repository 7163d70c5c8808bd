/* coi-settings24.c - the plugin's settings, declared the Dovecot 2.4 way.
 *
 * Dovecot 2.4 dropped `plugin {}` and mail_user_plugin_getenv(): every
 * setting is declared in a struct setting_parser_info, and the config
 * process refuses keys it does not know. So this file is built twice:
 *
 *   - into the plugin (build.rs, with the rest of the shim): coi-plugin.c
 *     reads the user's values with settings_get() and turns them into the
 *     strings Rust parses (struct coi_user_settings), so Rust sees the same
 *     contract as with 2.3;
 *   - with -DCOI_SETTINGS_MODULE into a config module of its own,
 *     <moduledir>/settings/libcoi_settings.so, which the config process
 *     loads (its `coi_settings_set_infos` lists our parser info). It needs
 *     nothing but libdovecot, so the config process can dlopen it.
 *     packaging/dovecot24/build-settings-module builds it.
 *
 * The defaults mirror coi-core's (plugin/core: settings.rs,
 * event_settings.rs, fast_notify.rs, push/settings.rs, recall/settings.rs); Rust still
 * validates every value (ranges, absolute paths, the mailbox root).
 *
 * With 2.3 headers this file compiles to nothing.
 */
#include "coi-private.h"

#if DOVECOT_PREREQ(2, 4, 0)

#include "settings-parser.h"

#undef DEF
#define DEF(type, name) \
	SETTING_DEFINE_STRUCT_##type(#name, name, struct coi_settings)

static const struct setting_define coi_setting_defines[] = {
	DEF(BOOL, coi_default_enabled),
	DEF(ENUM, coi_default_message_filter),
	DEF(STR, coi_mailbox_root),
	DEF(STR, coi_spool_path),
	DEF(SIZE, coi_spool_max_size),
	DEF(STR, coi_sidecar_socket),
	DEF(ENUM, coi_fast_notify),
	DEF(STR, coi_webpush_vapid_key),
	DEF(UINT, coi_webpush_subscription_limit),
	DEF(TIME, coi_webpush_validation_timeout),
	DEF(BOOL, coi_deltachat_push),
	DEF(BOOL, coi_webpush_allow_private_endpoints),
	DEF(UINT, coi_deltachat_max_smtp_recipients),
	DEF(BOOL, coi_recall),
	DEF(ENUM, coi_sender_trust),
	DEF(BOOL, coi_read_status),
	DEF(BOOL, coi_default_read_status),

	SETTING_DEFINE_LIST_END
};

static const struct coi_settings coi_default_settings = {
	.coi_default_enabled = FALSE,
	/* ENUM: the first value is the default */
	.coi_default_message_filter = "none:active:seen",
	.coi_mailbox_root = "COI",
	.coi_spool_path = "/var/spool/coi",
	.coi_spool_max_size = 256 * 1024 * 1024,
	.coi_sidecar_socket = "/run/coi-sidecar/events.sock",
	.coi_fast_notify = "chats:all:no",
	.coi_webpush_vapid_key = "/var/lib/coi-sidecar/webpush/vapid-public.pem",
	.coi_webpush_subscription_limit = 10,
	.coi_webpush_validation_timeout = 5 * 60,
	.coi_deltachat_push = FALSE,
	.coi_webpush_allow_private_endpoints = FALSE,
	/* 0: not served */
	.coi_deltachat_max_smtp_recipients = 0,
	.coi_recall = FALSE,
	.coi_sender_trust = "none:received",
	.coi_read_status = FALSE,
	.coi_default_read_status = FALSE,
};

const struct setting_parser_info coi_setting_parser_info = {
	.name = "coi",
	/* No plugin_dependency: this module is installed with the plugin,
	   which may live in any mail_plugin_dir. */

	.defines = coi_setting_defines,
	.defaults = &coi_default_settings,

	.struct_size = sizeof(struct coi_settings),
	.pool_offset1 = 1 + offsetof(struct coi_settings, pool),
};

#ifdef COI_SETTINGS_MODULE
/* What the config process looks up in libcoi_settings.so (module name
   "coi_settings"): the ABI version and the parser infos it adds. */
const char *coi_settings_version = DOVECOT_ABI_VERSION;
const struct setting_parser_info *coi_settings_set_infos[] = {
	&coi_setting_parser_info,
	NULL
};
#endif

#endif /* DOVECOT_PREREQ(2, 4, 0) */

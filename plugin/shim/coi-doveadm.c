/* coi-doveadm.c - `doveadm coi ...`: a user's COI state for a shell on the
 * box, read and set exactly as the IMAP side does.
 *
 *   doveadm coi status  [-A | -u USER]   enabled (and whether the user or the
 *                                        site default decides), message-filter,
 *                                        chats folder, subscription/token counts
 *   doveadm coi enable  [-m FILTER] ...  enabled "yes" (creates the folders),
 *                                        message-filter FILTER if given
 *   doveadm coi disable ...              enabled "no" (the user's opt-out)
 *   doveadm coi reset   ...              enabled NIL: the site default decides
 *   doveadm coi export  -u USER          the export document (transfer.rs)
 *   doveadm coi import  -u USER < FILE   writes it back, each value through the
 *                                        same checks as a client's SETMETADATA
 *                                        or a value from dsync
 *
 * The same .so is the doveadm plugin: doveadm loads <moduledir>/doveadm/ at
 * start-up (before mail plugins are initialised), and a symlink there,
 * lib10_doveadm_coi_plugin.so, makes Rust's doveadm_coi_plugin_init() call
 * coi_shim_doveadm_init(). Every doveadm symbol is weak, so the .so still
 * loads in imap, lmtp and dovecot-lda, where they are NULL. The commands
 * run per user after the mail plugins are: COI must be in mail_plugins.
 */
#include "coi-private.h"
#include "mail-namespace.h"
#include "istream.h"
#include "str.h"
#include "doveadm-mail.h"
#include "doveadm-print.h"
#if DOVECOT_PREREQ(2, 4, 0)
#  include "doveadm-cmd-parse.h"
#endif

#pragma weak doveadm_cmd_register_ver2
#pragma weak doveadm_mail_cmd_alloc_size
#pragma weak doveadm_mail_failed_error
#pragma weak doveadm_mail_get_input
#pragma weak doveadm_print_init
#pragma weak doveadm_print_header
#pragma weak doveadm_print
#pragma weak doveadm_print_num
#if DOVECOT_PREREQ(2, 4, 0)
#  pragma weak doveadm_cmd_param_str
#endif

/* Largest export document read by `doveadm coi import`. */
#define COI_IMPORT_MAX_BYTES (1024 * 1024)

enum coi_doveadm_op {
	COI_OP_STATUS,
	COI_OP_ENABLE,
	COI_OP_DISABLE,
	COI_OP_RESET,
	COI_OP_EXPORT,
	COI_OP_IMPORT,
};

struct coi_doveadm_cmd {
	struct doveadm_mail_cmd_context ctx;
	enum coi_doveadm_op op;
	const char *message_filter;
};

static bool coi_doveadm_registered;

/* The user's Rust handle, or NULL after reporting why there is none. */
static void *coi_doveadm_rs(struct doveadm_mail_cmd_context *ctx,
			    struct mail_user *user)
{
	void *rs = coi_ops == NULL ? NULL : coi_user_rs(user);

	if (rs == NULL) {
		e_error(user->event, "coi: COI is not active for this user "
			"(coi is not in mail_plugins, or its settings are "
			"invalid: see the log)");
		doveadm_mail_failed_error(ctx, MAIL_ERROR_NOTFOUND);
	}
	return rs;
}

static const char *coi_bytes_str(const struct coi_bytes *b)
{
	return b->ptr == NULL ? NULL : t_strndup(b->ptr, b->len);
}

/* The effective value of a config key and who decided it. */
static void coi_print_config(void *rs, enum coi_config_key key,
			     const struct coi_bytes *stored, const char *off)
{
	struct coi_bytes def;
	const char *value = coi_bytes_str(stored);

	if (value != NULL) {
		doveadm_print(t_str_lcase(value));
		doveadm_print("user");
		return;
	}
	if (coi_ops->config_get(rs, key, &def) == 1)
		doveadm_print(t_str_lcase(coi_bytes_str(&def)));
	else
		doveadm_print(off);
	doveadm_print("default");
}

static bool coi_folder_exists(struct mail_user *user, const char *vname)
{
	struct mail_namespace *ns = mail_namespace_find(user->namespaces, vname);
	struct mailbox *box;
	enum mailbox_existence existence;
	bool exists;

	box = mailbox_alloc(ns->list, vname, MAILBOX_FLAG_READONLY);
	exists = mailbox_exists(box, FALSE, &existence) == 0 &&
		existence == MAILBOX_EXISTENCE_SELECT;
	mailbox_free(&box);
	return exists;
}

static int coi_cmd_status(struct doveadm_mail_cmd_context *ctx,
			  struct mail_user *user, void *rs)
{
	struct coi_user_metadata md;
	struct coi_bytes chats, contacts;
	unsigned int subs, tokens;
	const char *error, *chats_name;

	if (coi_read_metadata(user, &md, &error) < 0 ||
	    coi_count_targets(user, &subs, &tokens) < 0 ||
	    coi_ops->folder_names(rs, (uint8_t)coi_user_separator(user),
				  &chats, &contacts) < 0) {
		e_error(user->event, "coi: cannot read the COI state: %s",
			error == NULL ? "attribute storage failed" : error);
		doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	chats_name = coi_bytes_str(&chats);
	coi_print_config(rs, COI_CONFIG_ENABLED, &md.enabled, "no");
	coi_print_config(rs, COI_CONFIG_MESSAGE_FILTER, &md.message_filter,
			 "none");
	doveadm_print(chats_name);
	doveadm_print(coi_folder_exists(user, chats_name) ? "yes" : "no");
	doveadm_print_num(subs);
	doveadm_print_num(tokens);
	return 0;
}

static int coi_cmd_set(struct doveadm_mail_cmd_context *ctx,
		       struct mail_user *user, const char *enabled,
		       const char *message_filter)
{
	const char *error;

	if (message_filter != NULL &&
	    coi_set_config(user, "message-filter", message_filter, &error) < 0) {
		e_error(user->event, "coi: message-filter %s: %s",
			message_filter, error);
		doveadm_mail_failed_error(ctx, MAIL_ERROR_PARAMS);
		return -1;
	}
	if (coi_set_config(user, "enabled", enabled, &error) < 0) {
		e_error(user->event, "coi: enabled %s: %s",
			enabled == NULL ? "NIL" : enabled, error);
		doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	return 0;
}

static int coi_cmd_export(struct doveadm_mail_cmd_context *ctx,
			  struct mail_user *user, void *rs)
{
	struct coi_raw_state state;
	struct coi_bytes json;

	if (coi_read_raw_state(user, &state) < 0 ||
	    coi_ops->export_document(rs, &state, &json) < 0) {
		e_error(user->event, "coi: cannot read the COI state to export");
		doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	doveadm_print(coi_bytes_str(&json));
	return 0;
}

/* The whole input (stdin), or NULL after reporting why not. */
static const char *coi_import_read(struct doveadm_mail_cmd_context *ctx,
				   struct mail_user *user)
{
	string_t *doc = t_str_new(4096);
	const unsigned char *data;
	size_t size;

	i_stream_seek(ctx->cmd_input, 0);
	while (i_stream_read_more(ctx->cmd_input, &data, &size) > 0) {
		if (str_len(doc) + size > COI_IMPORT_MAX_BYTES) {
			e_error(user->event, "coi: the import document is "
				"larger than %u bytes", COI_IMPORT_MAX_BYTES);
			doveadm_mail_failed_error(ctx, MAIL_ERROR_PARAMS);
			return NULL;
		}
		str_append_data(doc, data, size);
		i_stream_skip(ctx->cmd_input, size);
	}
	if (ctx->cmd_input->stream_errno != 0) {
		e_error(user->event, "coi: reading the import document: %s",
			i_stream_get_error(ctx->cmd_input));
		doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
		return NULL;
	}
	return str_c(doc);
}

/* Writes one raw entry below pvt/coi/ of INBOX (checked by coi_pvt_set). */
static int coi_import_raw(struct mail_user *user, const char *name,
			  const char *value, const char **error_r)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);
	struct mailbox_transaction_context *t;
	struct mailbox *box;
	struct mail_attribute_value attr;
	int ret;

	box = mailbox_alloc(ns->list, "INBOX", 0);
	if (mailbox_open(box) < 0) {
		*error_r = t_strdup(mailbox_get_last_error(box, NULL));
		mailbox_free(&box);
		return -1;
	}
	t = mailbox_transaction_begin(box, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
				      "coi import");
	i_zero(&attr);
	attr.value = value;
	ret = mailbox_attribute_set(t, MAIL_ATTRIBUTE_TYPE_PRIVATE,
		t_strconcat(MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT "coi/",
			    name, NULL), &attr);
	if (ret < 0) {
		*error_r = t_strdup(mailbox_get_last_error(box, NULL));
		mailbox_transaction_rollback(&t);
	} else if ((ret = mailbox_transaction_commit(&t)) < 0) {
		*error_r = t_strdup(mailbox_get_last_error(box, NULL));
	}
	mailbox_free(&box);
	return ret;
}

static int coi_cmd_import(struct doveadm_mail_cmd_context *ctx,
			  struct mail_user *user, void *rs)
{
	struct coi_bytes json, plan, error;
	const char *doc, *p, *end, *errstr;
	unsigned int refused = 0;

	if ((doc = coi_import_read(ctx, user)) == NULL)
		return -1;
	json = coi_bytes_from_str(doc);
	i_zero(&error);
	if (coi_ops->import_plan(rs, &json, &plan, &error) < 0) {
		e_error(user->event, "coi: %s", coi_bytes_str(&error));
		doveadm_mail_failed_error(ctx, MAIL_ERROR_PARAMS);
		return -1;
	}
	/* copy: the next Rust call reuses the handle's scratch buffer */
	p = p_memdup(pool_datastack_create(), plan.ptr, plan.len);
	end = p + plan.len;
	coi_attributes_importing(TRUE);
	while (p < end) {
		char kind = *p++;
		const char *name = p;
		const char *value = name + strlen(name) + 1;
		int ret;

		p = value + strlen(value) + 1;
		if (kind == 'c')
			ret = coi_set_config(user, name, value, &errstr);
		else
			ret = coi_import_raw(user, name, value, &errstr);
		doveadm_print(kind == 'c' ? t_strconcat("config/", name, NULL) :
			      name);
		doveadm_print(ret < 0 ? t_strconcat("refused: ", errstr, NULL) :
			      "imported");
		if (ret < 0)
			refused++;
	}
	coi_attributes_importing(FALSE);
	if (refused > 0) {
		doveadm_mail_failed_error(ctx, MAIL_ERROR_PARAMS);
		return -1;
	}
	return 0;
}

static int coi_cmd_run(struct doveadm_mail_cmd_context *_ctx,
		       struct mail_user *user)
{
	struct coi_doveadm_cmd *ctx = (struct coi_doveadm_cmd *)_ctx;
	void *rs = coi_doveadm_rs(_ctx, user);
	int ret = -1;

	if (rs == NULL)
		return -1;
	T_BEGIN {
		switch (ctx->op) {
		case COI_OP_STATUS:
			ret = coi_cmd_status(_ctx, user, rs);
			break;
		case COI_OP_ENABLE:
			ret = coi_cmd_set(_ctx, user, "yes", ctx->message_filter);
			break;
		case COI_OP_DISABLE:
			ret = coi_cmd_set(_ctx, user, "no", NULL);
			break;
		case COI_OP_RESET:
			ret = coi_cmd_set(_ctx, user, NULL, NULL);
			break;
		case COI_OP_EXPORT:
			ret = coi_cmd_export(_ctx, user, rs);
			break;
		case COI_OP_IMPORT:
			ret = coi_cmd_import(_ctx, user, rs);
			break;
		}
	} T_END;
	return ret;
}

static void coi_cmd_headers(struct coi_doveadm_cmd *ctx)
{
	switch (ctx->op) {
	case COI_OP_STATUS:
		doveadm_print_header("enabled", "enabled", 0);
		doveadm_print_header("enabled-by", "enabled-by", 0);
		doveadm_print_header("message-filter", "message-filter", 0);
		doveadm_print_header("message-filter-by", "message-filter-by", 0);
		doveadm_print_header("chats-folder", "chats-folder", 0);
		doveadm_print_header("chats-folder-exists", "chats-folder-exists", 0);
		doveadm_print_header("subscriptions", "subscriptions",
				     DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY);
		doveadm_print_header("devicetokens", "devicetokens",
				     DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY);
		break;
	case COI_OP_EXPORT:
		doveadm_print_header("export", "export",
				     DOVEADM_PRINT_HEADER_FLAG_HIDE_TITLE);
		break;
	case COI_OP_IMPORT:
		doveadm_print_header("entry", "entry", 0);
		doveadm_print_header("result", "result", 0);
		break;
	default:
		break;
	}
}

#if DOVECOT_PREREQ(2, 4, 0)
static void coi_cmd_init(struct doveadm_mail_cmd_context *_ctx)
{
	struct coi_doveadm_cmd *ctx = (struct coi_doveadm_cmd *)_ctx;

	(void)doveadm_cmd_param_str(_ctx->cctx, "message-filter",
				    &ctx->message_filter);
	if (ctx->op == COI_OP_IMPORT)
		doveadm_mail_get_input(_ctx);
	coi_cmd_headers(ctx);
}
#else
static bool coi_cmd_parse_arg(struct doveadm_mail_cmd_context *_ctx, int c)
{
	struct coi_doveadm_cmd *ctx = (struct coi_doveadm_cmd *)_ctx;

	if (c != 'm')
		return FALSE;
	ctx->message_filter = p_strdup(_ctx->pool, optarg);
	return TRUE;
}

static void coi_cmd_init(struct doveadm_mail_cmd_context *_ctx,
			 const char *const args[] ATTR_UNUSED)
{
	struct coi_doveadm_cmd *ctx = (struct coi_doveadm_cmd *)_ctx;

	if (ctx->op == COI_OP_IMPORT)
		doveadm_mail_get_input(_ctx);
	coi_cmd_headers(ctx);
}
#endif

static struct doveadm_mail_cmd_context *coi_cmd_alloc(enum coi_doveadm_op op)
{
	struct coi_doveadm_cmd *ctx;

	ctx = doveadm_mail_cmd_alloc(struct coi_doveadm_cmd);
	ctx->op = op;
	ctx->ctx.v.init = coi_cmd_init;
	ctx->ctx.v.run = coi_cmd_run;
#if !DOVECOT_PREREQ(2, 4, 0)
	if (op == COI_OP_ENABLE) {
		ctx->ctx.getopt_args = "m:";
		ctx->ctx.v.parse_arg = coi_cmd_parse_arg;
	}
#endif
	doveadm_print_init(op == COI_OP_EXPORT ? DOVEADM_PRINT_TYPE_FLOW :
			   DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

#define COI_CMD_ALLOC(fn, op) \
static struct doveadm_mail_cmd_context *coi_cmd_alloc_##fn(void) \
{ return coi_cmd_alloc(op); }

COI_CMD_ALLOC(status, COI_OP_STATUS)
COI_CMD_ALLOC(enable, COI_OP_ENABLE)
COI_CMD_ALLOC(disable, COI_OP_DISABLE)
COI_CMD_ALLOC(reset, COI_OP_RESET)
COI_CMD_ALLOC(export, COI_OP_EXPORT)
COI_CMD_ALLOC(import, COI_OP_IMPORT)

static struct doveadm_cmd_ver2 coi_doveadm_commands[] = {
	{
		.name = "coi status",
		.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
		.mail_cmd = coi_cmd_alloc_status,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
	},
	{
		.name = "coi enable",
		.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX"[-m none|active|seen]",
		.mail_cmd = coi_cmd_alloc_enable,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('m', "message-filter", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
	},
	{
		.name = "coi disable",
		.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
		.mail_cmd = coi_cmd_alloc_disable,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
	},
	{
		.name = "coi reset",
		.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
		.mail_cmd = coi_cmd_alloc_reset,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
	},
	{
		.name = "coi export",
		.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
		.mail_cmd = coi_cmd_alloc_export,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
	},
	{
		.name = "coi import",
		.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX"< export-file",
		.mail_cmd = coi_cmd_alloc_import,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('\0', "file", CMD_PARAM_ISTREAM, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
	},
};

void coi_shim_doveadm_init(void)
{
	unsigned int i;

	/* NULL outside doveadm (the weak references) */
	if (doveadm_cmd_register_ver2 == NULL ||
	    doveadm_mail_cmd_alloc_size == NULL || coi_doveadm_registered)
		return;
	for (i = 0; i < N_ELEMENTS(coi_doveadm_commands); i++)
		doveadm_cmd_register_ver2(&coi_doveadm_commands[i]);
	coi_doveadm_registered = TRUE;
}

void coi_shim_doveadm_deinit(void)
{
	/* doveadm has no unregister; its command table dies with it */
}

/* coi-attributes.c - the METADATA entries COI clients use, as Dovecot
 * internal attributes (mailbox-attribute.h), so they are validated and
 * work even with `imap_metadata = no` (MAIL_ATTRIBUTE_INTERNAL_FLAG_
 * VALIDATED; the values still need mail_attribute_dict to be stored):
 *
 *   server /private/vendor/vendor.dovecot/coi/config/mailbox-root  read-only
 *   server /private/vendor/vendor.dovecot/coi/config/enabled   yes | no | NIL
 *   server /private/vendor/vendor.dovecot/coi/config/message-filter
 *   server /private/vendor/vendor.dovecot/webpush/vapid            read-only
 *   server /private/vendor/vendor.dovecot/webpush/subscriptions/<id>[/validate]
 *   server /private/vendor/vendor.dovecot/coi/devicetokens/<key>   read, unset
 *   INBOX  /private/devicetoken                                    Delta Chat
 *   server /shared/vendor/deltachat/maxsmtprecipients              read-only,
 *          from coi_deltachat_max_smtp_recipients (Delta Chat reads it)
 *
 * The push keys, the VAPID key and mailbox-root are RANK_AUTHORITY: this
 * file stores and reads the values itself, through the storage's own
 * attribute vfuncs. Subscriptions (with their validation secret) and device
 * tokens live under vendor/vendor.dovecot/pvt/coi/, which no client can
 * read. `enabled` and `message-filter` are RANK_OVERRIDE: the set callback
 * validates and Dovecot stores the value where it always did; the get
 * callback shows the site default only where nothing is stored.
 *
 * dsync (docs/dsync.md) copies what Dovecot's own attribute API shows it:
 * values of AUTHORITY keys come back read-only and are skipped, so a COI
 * value travels only where Dovecot reads it itself: the stored config
 * values (OVERRIDE, defaults never shown to dsync) and the raw entries
 * under pvt/coi/, which dsync iterates like any attribute. That prefix is
 * registered too (OVERRIDE, children), so every value dsync or `doveadm
 * coi import` writes there passes the client's validation first (ops:
 * stored_check); a refusal is logged, counted as the named event
 * coi_value_refused and fails only that attribute. Rust validates and
 * builds every value (ops: config_*, webpush_*, devicetoken_*,
 * stored_check). Refusals are MAIL_ERROR_PARAMS / NOTPOSSIBLE, which IMAP
 * answers as NO [CANNOT].
 *
 * For users without the plugin active, the config keys behave like plain
 * attributes and the push keys are refused.
 */
#include "coi-private.h"
#include "mailbox-attribute-private.h"
#include "mail-namespace.h"
#include "istream.h"
#include "str.h"
#include "message-address.h"
#include "message-size.h"

#define COI_ATTR_SUBSCRIPTIONS \
	COI_SERVER_ATTR("vendor/vendor.dovecot/webpush/subscriptions/")
#define COI_ATTR_VAPID COI_SERVER_ATTR("vendor/vendor.dovecot/webpush/vapid")
#define COI_ATTR_TOKENS COI_SERVER_ATTR("vendor/vendor.dovecot/coi/devicetokens/")
#define COI_ATTR_CONFIG(name) COI_SERVER_ATTR(COI_CONFIG_KEY_PREFIX name)
#define COI_PVT_PREFIX MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT "coi/"
#define COI_PVT_SUBSCRIPTIONS COI_PVT_PREFIX "webpush/"
#define COI_PVT_TOKENS COI_PVT_PREFIX "devicetokens/"
#define COI_VALIDATE_SUFFIX "/validate"
/* The push-target marker (docs/performance.md): "none" means a look found
   no target and nothing stored one since. This server's own cache, never
   copied: outside pvt/coi/, and internal with a get that shows nothing and
   a set that drops every write, so dsync and clients can neither read nor
   write it; only the raw writes below touch it. */
#define COI_PUSH_MARKER MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT "coi-local/push-targets"
#define COI_PUSH_MARKER_NONE "none"
/* Largest body read into a push, bytes (coi_core::wire caps it again). */
#define COI_PUSH_CONTENT_MAX 4000

static void *coi_box_rs(struct mailbox *box)
{
	return coi_user_rs(box->storage->user);
}

static int coi_refuse(struct mailbox *box, enum mail_error error,
		      const struct coi_bytes *message)
{
	mail_storage_set_error(box->storage, error,
		message->ptr == NULL ? "Refused" :
		t_strndup(message->ptr, message->len));
	return -1;
}

static int coi_refuse_str(struct mailbox *box, const char *message)
{
	mail_storage_set_error(box->storage, MAIL_ERROR_NOTPOSSIBLE, message);
	return -1;
}

/* ---- raw storage underneath the internal attributes ---- */

/* 1 with *value_r (data stack), 0 not set, -1 error. */
static int coi_raw_get(struct mailbox *box, const char *key,
		       const char **value_r)
{
	struct mail_attribute_value value;
	int ret;

	i_zero(&value);
	ret = box->v.attribute_get(box, MAIL_ATTRIBUTE_TYPE_PRIVATE, key, &value);
	*value_r = ret > 0 ? t_strdup(value.value) : NULL;
	return ret;
}

static bool coi_is_push_target_key(const char *key)
{
	return coi_str_begins(key, COI_PVT_SUBSCRIPTIONS) ||
		coi_str_begins(key, COI_PVT_TOKENS);
}

static int coi_raw_set_one(struct mailbox_transaction_context *t,
			   const char *key, const char *value)
{
	struct mail_attribute_value attr;

	i_zero(&attr);
	attr.value = value;
	return t->box->v.attribute_set(t, MAIL_ATTRIBUTE_TYPE_PRIVATE, key, &attr);
}

/* Whatever stores a push target deletes the marker in the same
   transaction, so the two commit together. */
static int coi_push_marker_forget(struct mailbox_transaction_context *t)
{
	return coi_raw_set_one(t, COI_PUSH_MARKER, NULL);
}

static int coi_raw_set(struct mailbox_transaction_context *t, const char *key,
		       const char *value)
{
	if (value != NULL && coi_is_push_target_key(key) &&
	    coi_push_marker_forget(t) < 0)
		return -1;
	return coi_raw_set_one(t, key, value);
}

/* The key names below `prefix` (data stack). */
static int coi_raw_list(struct mailbox *box, const char *prefix,
			ARRAY_TYPE(const_string) *names)
{
	struct mailbox_attribute_iter *iter;
	const char *key;

	iter = box->v.attribute_iter_init(box, MAIL_ATTRIBUTE_TYPE_PRIVATE,
					  prefix);
	while ((key = box->v.attribute_iter_next(iter)) != NULL) {
		if (*key != '\0' && strchr(key, '/') == NULL) {
			key = t_strdup(key);
			array_push_back(names, &key);
		}
	}
	return box->v.attribute_iter_deinit(iter);
}

/* The iter() of an internal attribute whose children are the raw keys
   below `prefix`: adds those starting with `key_prefix` to `keys`. */
static int coi_raw_iter(struct mailbox *box, const char *prefix,
			const char *key_prefix, pool_t pool,
			ARRAY_TYPE(const_string) *keys)
{
	ARRAY_TYPE(const_string) names;
	const char *const *name;

	if (coi_box_rs(box) == NULL)
		return 0;
	t_array_init(&names, 16);
	if (coi_raw_list(box, prefix, &names) < 0)
		return -1;
	array_foreach(&names, name) {
		if (coi_str_begins(*name, key_prefix)) {
			const char *copy = p_strdup(pool, *name);
			array_push_back(keys, &copy);
		}
	}
	return 0;
}

/* Deletes one raw key in a transaction of its own (expired values found
   while reading). Failures only mean it is tried again next time. */
static void coi_raw_delete(struct mailbox *box, const char *key)
{
	struct mailbox_transaction_context *t;

	if (!box->opened && mailbox_open(box) < 0)
		return;
	t = mailbox_transaction_begin(box, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
				      "coi expire");
	if (coi_raw_set(t, key, NULL) < 0)
		mailbox_transaction_rollback(&t);
	else
		(void)mailbox_transaction_commit(&t);
}

static int coi_value_string(struct mailbox *box,
			    const struct mail_attribute_value *value,
			    const char **str_r)
{
	return mailbox_attribute_value_to_string(box->storage, value, str_r);
}

/* ---- COI config ---- */

/* mailbox-root (AUTHORITY): always the configured root. enabled and
   message-filter (OVERRIDE): 0 lets Dovecot read the stored value itself,
   which keeps it writable for dsync; where nothing is stored, clients see
   the site default (read-only, so never copied). dsync sees no defaults: a
   default is no value, and showing one would hide an unset. */
static int coi_config_get(struct mailbox *box, const char *key,
			  enum coi_config_key config_key,
			  struct mail_attribute_value *value_r)
{
	void *rs = coi_box_rs(box);
	struct coi_bytes value;
	const char *stored;
	int ret;

	if (config_key != COI_CONFIG_MAILBOX_ROOT) {
		if (rs == NULL || coi_user_is_dsync(box->storage->user))
			return 0;
		if ((ret = coi_raw_get(box, key, &stored)) != 0)
			return ret < 0 ? -1 : 0;
	}
	if (rs == NULL || coi_ops->config_get(rs, config_key, &value) != 1)
		return 0;
	value_r->value = t_strndup(value.ptr, value.len);
	return 1;
}

/* Validates a config value; for enabled and message-filter Dovecot then
   stores it (OVERRIDE), mailbox-root is stored here or refused. */
static int coi_config_set(struct mailbox_transaction_context *t,
			  const char *key, enum coi_config_key config_key,
			  const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	struct mail_user *user = box->storage->user;
	void *rs = coi_box_rs(box);
	struct coi_bytes bytes, error, chats, contacts;
	const char *str, *errstr;
	int32_t check;

	if (coi_value_string(box, value, &str) < 0)
		return -1;
	if (config_key == COI_CONFIG_MAILBOX_ROOT && rs == NULL)
		return coi_refuse_str(box, "COI mailbox-root is read-only");
	if (rs == NULL)
		return 0; /* plugin inactive: a plain attribute */
	bytes = coi_bytes_from_str(str);
	i_zero(&error);
	check = coi_ops->config_check(rs, config_key, &bytes, &error);
	if (check < 0) {
		if (coi_value_source(user) != NULL) {
			coi_value_refused(user, "config", "invalid",
				t_strndup(error.ptr, error.len));
		}
		return coi_refuse(box, MAIL_ERROR_PARAMS, &error);
	}
	/* enabled=yes: the folders exist before the tagged OK. Not for
	   dsync: the other side's folders travel themselves. */
	if (check == 1 && !coi_user_is_dsync(user) &&
	    coi_ops->folder_names(rs, (uint8_t)coi_user_separator(user),
				  &chats, &contacts) == 0) {
		const char *chats_name = t_strndup(chats.ptr, chats.len);
		const char *contacts_name = t_strndup(contacts.ptr, contacts.len);

		if (coi_folder_ensure(user, chats_name, TRUE, &errstr) < 0 ||
		    coi_folder_ensure(user, contacts_name, FALSE, &errstr) < 0) {
			mail_storage_set_error(box->storage, MAIL_ERROR_TEMP,
				t_strdup_printf(
				"Cannot create the COI folders: %s", errstr));
			return -1;
		}
	}
	if (config_key == COI_CONFIG_MAILBOX_ROOT)
		return coi_refuse_str(box, "COI mailbox-root is read-only");
	return 0;
}

#define COI_CONFIG_ATTR_FUNCS(fn, code) \
static int coi_config_get_##fn(struct mailbox *box, const char *key, \
			       struct mail_attribute_value *value_r) \
{ return coi_config_get(box, key, code, value_r); } \
static int coi_config_set_##fn(struct mailbox_transaction_context *t, \
			       const char *key, \
			       const struct mail_attribute_value *value) \
{ return coi_config_set(t, key, code, value); }

COI_CONFIG_ATTR_FUNCS(root, COI_CONFIG_MAILBOX_ROOT)
COI_CONFIG_ATTR_FUNCS(enabled, COI_CONFIG_ENABLED)
COI_CONFIG_ATTR_FUNCS(filter, COI_CONFIG_MESSAGE_FILTER)

/* ---- Web Push ---- */

static int coi_vapid_get(struct mailbox *box, const char *key ATTR_UNUSED,
			 struct mail_attribute_value *value_r)
{
	void *rs = coi_box_rs(box);
	struct coi_bytes pem;

	if (rs == NULL || coi_ops->vapid_key(rs, &pem) != 1)
		return 0;
	value_r->value = t_strndup(pem.ptr, pem.len);
	return 1;
}

static int coi_vapid_set(struct mailbox_transaction_context *t,
			 const char *key ATTR_UNUSED,
			 const struct mail_attribute_value *value ATTR_UNUSED)
{
	return coi_refuse_str(t->box, "The VAPID public key is read-only: "
			      "the server's coi-sidecar owns it");
}

static int coi_max_rcpt_get(struct mailbox *box, const char *key ATTR_UNUSED,
			    struct mail_attribute_value *value_r)
{
	void *rs = coi_box_rs(box);
	struct coi_bytes value;

	if (rs == NULL || coi_ops->deltachat_max_smtp_recipients(rs, &value) != 1)
		return 0;
	value_r->value = t_strndup(value.ptr, value.len);
	return 1;
}

static int coi_max_rcpt_set(struct mailbox_transaction_context *t,
			    const char *key ATTR_UNUSED,
			    const struct mail_attribute_value *value ATTR_UNUSED)
{
	return coi_refuse_str(t->box, "maxsmtprecipients is read-only: "
			      "the server's coi_deltachat_max_smtp_recipients");
}

/* Splits "<id>" or "<id>/validate" (relative to the subscriptions key).
   Returns the id, or NULL when the key is not one of ours. */
static const char *coi_subscription_id(void *rs, const char *rel,
				       bool *validate_r)
{
	const char *slash = strchr(rel, '/');
	const char *id;
	struct coi_bytes id_bytes;

	*validate_r = FALSE;
	if (slash == NULL) {
		id = rel;
	} else if (strcmp(slash, COI_VALIDATE_SUFFIX) == 0) {
		id = t_strdup_until(rel, slash);
		*validate_r = TRUE;
	} else {
		return NULL;
	}
	id_bytes = coi_bytes_from_str(id);
	return coi_ops->webpush_check_id(rs, &id_bytes) == 1 ? id : NULL;
}

/* The public view of a stored subscription; expired ones are deleted
   when `expire` (never while dsync or an import writes: their transaction
   is open). 1 with *public_r, 0 none, -1 error. */
static int coi_subscription_view(struct mailbox *box, void *rs,
				 const char *id, bool expire,
				 const char **public_r)
{
	const char *pvt_key = t_strconcat(COI_PVT_SUBSCRIPTIONS, id, NULL);
	const char *stored;
	struct coi_bytes stored_bytes, public;
	int ret;

	if ((ret = coi_raw_get(box, pvt_key, &stored)) <= 0)
		return ret;
	stored_bytes = coi_bytes_from_str(stored);
	if (coi_ops->webpush_view(rs, &stored_bytes, &public) != 1) {
		if (expire)
			coi_raw_delete(box, pvt_key);
		return 0;
	}
	*public_r = t_strndup(public.ptr, public.len);
	return 1;
}

static int coi_subscriptions_get(struct mailbox *box, const char *key,
				 struct mail_attribute_value *value_r)
{
	void *rs = coi_box_rs(box);
	const char *id, *public;
	bool validate;
	int ret;

	if (rs == NULL)
		return 0;
	id = coi_subscription_id(rs, key + strlen(COI_ATTR_SUBSCRIPTIONS),
				 &validate);
	if (id == NULL || validate)
		return 0;
	if ((ret = coi_subscription_view(box, rs, id, TRUE, &public)) <= 0)
		return ret;
	value_r->value = public;
	return 1;
}

/* Live subscriptions other than `except`. */
static int coi_subscriptions_count(struct mailbox *box, void *rs,
				   const char *except, bool expire,
				   unsigned int *count_r)
{
	ARRAY_TYPE(const_string) ids;
	const char *const *id, *public;

	*count_r = 0;
	t_array_init(&ids, 16);
	if (coi_raw_list(box, COI_PVT_SUBSCRIPTIONS, &ids) < 0)
		return -1;
	array_foreach(&ids, id) {
		if (strcmp(*id, except) != 0 &&
		    coi_subscription_view(box, rs, *id, expire, &public) > 0)
			(*count_r)++;
	}
	return 0;
}

static int coi_subscribe(struct mailbox_transaction_context *t, void *rs,
			 const char *id, const char *json)
{
	struct mailbox *box = t->box;
	struct coi_bytes id_bytes, json_bytes, stored, error;
	unsigned int others;

	if (coi_subscriptions_count(box, rs, id, TRUE, &others) < 0)
		return -1;
	id_bytes = coi_bytes_from_str(id);
	json_bytes = coi_bytes_from_str(json);
	i_zero(&error);
	if (coi_ops->webpush_subscribe(rs, box->storage->user->event,
				       &id_bytes, &json_bytes, others,
				       &stored, &error) < 0)
		return coi_refuse(box, MAIL_ERROR_PARAMS, &error);
	return coi_raw_set(t, t_strconcat(COI_PVT_SUBSCRIPTIONS, id, NULL),
			   t_strndup(stored.ptr, stored.len));
}

static int coi_subscription_validate(struct mailbox_transaction_context *t,
				     void *rs, const char *id,
				     const char *secret)
{
	struct mailbox *box = t->box;
	const char *pvt_key = t_strconcat(COI_PVT_SUBSCRIPTIONS, id, NULL);
	const char *stored;
	struct coi_bytes stored_bytes, secret_bytes, updated, error;
	int ret;

	if (secret == NULL)
		return coi_refuse_str(box, "Web Push validation needs the secret "
				      "from the validation push");
	if ((ret = coi_raw_get(box, pvt_key, &stored)) < 0)
		return -1;
	stored_bytes = coi_bytes_from_str(stored);
	secret_bytes = coi_bytes_from_str(secret);
	i_zero(&error);
	if (coi_ops->webpush_validate(rs, &stored_bytes, &secret_bytes,
				      &updated, &error) < 0)
		return coi_refuse(box, MAIL_ERROR_PARAMS, &error);
	return coi_raw_set(t, pvt_key, t_strndup(updated.ptr, updated.len));
}

/* dsync writing a client-facing push key: only an export read through
   another server's IMAP METADATA (imapc) shows these, and it shows the
   public view only (no secret, no validation state). The raw entries carry
   the real thing; subscribing here would send a validation push for a
   move. So dsync's writes to these keys are dropped. */
static bool coi_push_view_from_dsync(struct mailbox *box, const char *key)
{
	if (!coi_user_is_dsync(box->storage->user))
		return FALSE;
	e_debug(box->storage->user->event,
		"coi: dsync: ignoring %s (the raw entries carry push targets)",
		key);
	return TRUE;
}

static int coi_subscriptions_set(struct mailbox_transaction_context *t,
				 const char *key,
				 const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	void *rs = coi_box_rs(box);
	const char *id, *str;
	bool validate;

	if (coi_push_view_from_dsync(box, key))
		return 0;
	if (rs == NULL)
		return coi_refuse_str(box, "Web Push is not available");
	id = coi_subscription_id(rs, key + strlen(COI_ATTR_SUBSCRIPTIONS),
				 &validate);
	if (id == NULL) {
		mail_storage_set_error(box->storage, MAIL_ERROR_PARAMS,
			"Web Push subscription ids are 10 to 36 characters "
			"of A-Z, a-z, 0-9, '-' and '_'");
		return -1;
	}
	if (coi_value_string(box, value, &str) < 0)
		return -1;
	if (validate)
		return coi_subscription_validate(t, rs, id, str);
	if (str == NULL) {
		return coi_raw_set(t, t_strconcat(COI_PVT_SUBSCRIPTIONS, id,
						  NULL), NULL);
	}
	return coi_subscribe(t, rs, id, str);
}

static int coi_subscriptions_iter(struct mailbox *box, const char *key_prefix,
				  pool_t pool, ARRAY_TYPE(const_string) *keys)
{
	return coi_raw_iter(box, COI_PVT_SUBSCRIPTIONS, key_prefix, pool, keys);
}

/* ---- Delta Chat device tokens ---- */

static bool coi_token_key_ok(const char *key)
{
	/* coi_core::push::devicetoken::token_key: 16 lowercase hex digits */
	if (strlen(key) != 16)
		return FALSE;
	for (; *key != '\0'; key++) {
		if (!((*key >= '0' && *key <= '9') || (*key >= 'a' && *key <= 'f')))
			return FALSE;
	}
	return TRUE;
}

static int coi_tokens_get(struct mailbox *box, const char *key,
			  struct mail_attribute_value *value_r)
{
	void *rs = coi_box_rs(box);
	const char *rel = key + strlen(COI_ATTR_TOKENS), *stored;
	struct coi_bytes stored_bytes, token;
	int ret;

	if (rs == NULL || !coi_token_key_ok(rel))
		return 0;
	ret = coi_raw_get(box, t_strconcat(COI_PVT_TOKENS, rel, NULL), &stored);
	if (ret <= 0)
		return ret;
	stored_bytes = coi_bytes_from_str(stored);
	if (coi_ops->devicetoken_view(rs, &stored_bytes, &token) != 1)
		return 0;
	value_r->value = t_strndup(token.ptr, token.len);
	return 1;
}

static int coi_tokens_set(struct mailbox_transaction_context *t,
			  const char *key,
			  const struct mail_attribute_value *value)
{
	const char *rel = key + strlen(COI_ATTR_TOKENS), *str;

	if (coi_push_view_from_dsync(t->box, key))
		return 0;
	if (coi_value_string(t->box, value, &str) < 0)
		return -1;
	if (str != NULL) {
		return coi_refuse_str(t->box, "Device tokens are added with "
			"SETMETADATA INBOX (/private/devicetoken <token>)");
	}
	if (!coi_token_key_ok(rel))
		return 0;
	return coi_raw_set(t, t_strconcat(COI_PVT_TOKENS, rel, NULL), NULL);
}

static int coi_tokens_iter(struct mailbox *box, const char *key_prefix,
			   pool_t pool, ARRAY_TYPE(const_string) *keys)
{
	return coi_raw_iter(box, COI_PVT_TOKENS, key_prefix, pool, keys);
}

int coi_attribute_get_nothing(struct mailbox *box ATTR_UNUSED,
			      const char *key ATTR_UNUSED,
			      struct mail_attribute_value *value_r ATTR_UNUSED)
{
	return 0;
}

static int coi_devicetoken_set(struct mailbox_transaction_context *t,
			       const char *key,
			       const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	void *rs = coi_box_rs(box);
	ARRAY_TYPE(const_string) names;
	const char *const *name, *str, *token_key;
	struct coi_bytes token, key_r, stored, error;
	unsigned int others = 0;

	if (coi_push_view_from_dsync(box, key))
		return 0;
	if (rs == NULL || !box->inbox_user)
		return coi_refuse_str(box, "Device tokens are kept on INBOX only");
	if (coi_value_string(box, value, &str) < 0)
		return -1;
	if (str == NULL)
		return 0; /* each token is removed on its own, see above */
	token = coi_bytes_from_str(str);
	i_zero(&error);
	/* first for the token's key, then with the count of the others */
	if (coi_ops->devicetoken_set(rs, &token, 0, &key_r, &stored, &error) < 0)
		return coi_refuse(box, MAIL_ERROR_PARAMS, &error);
	token_key = t_strndup(key_r.ptr, key_r.len);
	t_array_init(&names, 8);
	if (coi_raw_list(box, COI_PVT_TOKENS, &names) < 0)
		return -1;
	array_foreach(&names, name) {
		if (strcmp(*name, token_key) != 0)
			others++;
	}
	if (coi_ops->devicetoken_set(rs, &token, others, &key_r, &stored,
				     &error) < 0)
		return coi_refuse(box, MAIL_ERROR_PARAMS, &error);
	return coi_raw_set(t, t_strconcat(COI_PVT_TOKENS, token_key, NULL),
			   t_strndup(stored.ptr, stored.len));
}

/* ---- raw entries written by dsync or `doveadm coi import` ---- */

static bool coi_importing;

void coi_attributes_importing(bool importing)
{
	coi_importing = importing;
}

const char *coi_value_source(struct mail_user *user)
{
	if (coi_user_is_dsync(user))
		return "dsync";
	return coi_importing ? "import" : NULL;
}

static const char *coi_refusal_name(int32_t reason)
{
	switch (reason) {
	case COI_REFUSAL_PRIVATE_ENDPOINT:
		return "private_endpoint";
	case COI_REFUSAL_LIMIT:
		return "limit";
	case COI_REFUSAL_UNKNOWN_KEY:
		return "unknown_key";
	case COI_REFUSAL_INACTIVE:
		return "inactive";
	default:
		return "invalid";
	}
}

void coi_value_refused(struct mail_user *user, const char *item,
		       const char *reason, const char *error)
{
	const char *source = coi_value_source(user);
	struct event *event = event_create(user->event);

	/* counted by Dovecot's stats: metric { filter =
	   event=coi_value_refused } (docs/dsync.md) */
	event_set_name(event, "coi_value_refused");
	event_add_str(event, "item", item);
	event_add_str(event, "reason", reason);
	event_add_str(event, "source", source == NULL ? "client" : source);
	e_warning(event, "coi: refused %s value from %s (%s): %s", item,
		  source == NULL ? "a client" : source, reason, error);
	event_unref(&event);
}

static int coi_pvt_iter(struct mailbox *box ATTR_UNUSED,
			const char *key_prefix ATTR_UNUSED,
			pool_t pool ATTR_UNUSED,
			ARRAY_TYPE(const_string) *keys ATTR_UNUSED)
{
	/* the raw keys come from the attribute dict itself */
	return 0;
}

/* Entries of the same kind as `rel` other than it. */
static int coi_pvt_others(struct mailbox *box, void *rs, const char *rel,
			  unsigned int *count_r)
{
	ARRAY_TYPE(const_string) names;
	const char *const *name;

	*count_r = 0;
	if (coi_str_begins(rel, "webpush/")) {
		return coi_subscriptions_count(box, rs,
			rel + strlen("webpush/"), FALSE, count_r);
	}
	if (!coi_str_begins(rel, "devicetokens/"))
		return 0;
	t_array_init(&names, 8);
	if (coi_raw_list(box, COI_PVT_TOKENS, &names) < 0)
		return -1;
	array_foreach(&names, name) {
		if (strcmp(*name, rel + strlen("devicetokens/")) != 0)
			(*count_r)++;
	}
	return 0;
}

static int coi_pvt_set(struct mailbox_transaction_context *t, const char *key,
		       const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	struct mail_user *user = box->storage->user;
	void *rs = coi_box_rs(box);
	const char *rel = key + strlen(COI_PVT_PREFIX), *str, *item, *msg;
	struct coi_bytes name, bytes, error;
	unsigned int others;
	int32_t reason = 0;

	item = coi_str_begins(rel, "webpush/") ? "webpush_subscription" :
		coi_str_begins(rel, "devicetokens/") ? "devicetoken" :
		"unknown";
	if (coi_value_string(box, value, &str) < 0)
		return -1;
	if (str == NULL)
		return 0; /* removals always */
	if (rs == NULL || !box->inbox_user) {
		msg = rs == NULL ? "COI is not active for this user" :
			"COI entries are kept on INBOX only";
		coi_value_refused(user, item, "inactive", msg);
		return coi_refuse_str(box, msg);
	}
	if (coi_pvt_others(box, rs, rel, &others) < 0)
		return -1;
	name = coi_bytes_from_str(rel);
	bytes = coi_bytes_from_str(str);
	i_zero(&error);
	if (coi_ops->stored_check(rs, &name, &bytes, others, &error,
				  &reason) < 0) {
		msg = error.ptr == NULL ? "refused" :
			t_strndup(error.ptr, error.len);
		coi_value_refused(user, item, coi_refusal_name(reason), msg);
		return coi_refuse(box, MAIL_ERROR_PARAMS, &error);
	}
	/* Dovecot stores the target after this: the marker goes with it */
	if (coi_is_push_target_key(key) && coi_push_marker_forget(t) < 0)
		return -1;
	return 0;
}

/* ---- the push-target marker ---- */

bool coi_push_marker_says_none(struct mailbox *inbox)
{
	const char *value;

	return coi_raw_get(inbox, COI_PUSH_MARKER, &value) > 0 &&
		strcmp(value, COI_PUSH_MARKER_NONE) == 0;
}

static int coi_push_marker_set(struct mailbox_transaction_context *t,
			       const char *key,
			       const struct mail_attribute_value *value)
{
	const char *str;

	if (coi_value_string(t->box, value, &str) < 0)
		return -1;
	/* removing it is always safe (the next delivery looks): an operator
	   can (doveadm mailbox metadata unset); a value is dropped, only this
	   server's own look may write one */
	if (str == NULL)
		return coi_raw_set_one(t, key, NULL);
	e_debug(t->box->storage->user->event,
		"coi: ignoring a write to %s (this server's own cache)", key);
	return 0;
}

/* After a look found no target: records "none", then looks once more,
   because a target stored between the first look and this write found no
   marker to delete. Errors leave no marker (the next delivery looks). */
static void coi_push_marker_learn(struct mail_user *user)
{
	struct mailbox *inbox;
	struct mailbox_transaction_context *t;
	ARRAY_TYPE(const_string) names;
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);

	if (ns == NULL)
		return;
	inbox = mailbox_alloc(ns->list, "INBOX", 0);
	if (mailbox_open(inbox) < 0) {
		mailbox_free(&inbox);
		return;
	}
	t = mailbox_transaction_begin(inbox, MAILBOX_TRANSACTION_FLAG_EXTERNAL,
				      "coi push marker");
	if (coi_raw_set_one(t, COI_PUSH_MARKER, COI_PUSH_MARKER_NONE) < 0) {
		mailbox_transaction_rollback(&t);
	} else if (mailbox_transaction_commit(&t) == 0) {
		t_array_init(&names, 4);
		if (coi_raw_list(inbox, COI_PVT_SUBSCRIPTIONS, &names) < 0 ||
		    coi_raw_list(inbox, COI_PVT_TOKENS, &names) < 0 ||
		    array_count(&names) > 0)
			coi_raw_delete(inbox, COI_PUSH_MARKER);
	}
	mailbox_free(&inbox);
}

/* ---- push targets of a delivered message ---- */

ARRAY_DEFINE_TYPE(coi_bytes_array, struct coi_bytes);

/* Returns how many entries are listed under `prefix` (readable or not),
   -1 if the listing failed. */
static int coi_collect_values(struct mailbox *box, const char *prefix,
			      bool with_id, ARRAY_TYPE(coi_bytes_array) *keys,
			      ARRAY_TYPE(coi_bytes_array) *values)
{
	ARRAY_TYPE(const_string) names;
	const char *const *name, *stored;
	struct coi_bytes bytes;

	t_array_init(&names, 16);
	if (coi_raw_list(box, prefix, &names) < 0)
		return -1;
	array_foreach(&names, name) {
		if (coi_raw_get(box, t_strconcat(prefix, *name, NULL),
				&stored) <= 0)
			continue;
		if (with_id) {
			/* "<id>\0<stored>", see Rust's push op */
			size_t id_len = strlen(*name), len = strlen(stored);
			uint8_t *buf = t_malloc_no0(id_len + 1 + len);

			memcpy(buf, *name, id_len);
			buf[id_len] = '\0';
			memcpy(buf + id_len + 1, stored, len);
			bytes.ptr = buf;
			bytes.len = id_len + 1 + len;
		} else {
			bytes = coi_bytes_from_str(stored);
		}
		array_push_back(values, &bytes);
		if (keys != NULL) {
			bytes = coi_bytes_from_str(*name);
			array_push_back(keys, &bytes);
		}
	}
	return (int)array_count(&names);
}

const char *coi_mail_small_body(struct mail *mail, uoff_t max)
{
	struct message_size hdr_size, body_size;
	struct istream *input;
	const unsigned char *data;
	size_t size;
	string_t *body;

	if (mail_get_stream(mail, &hdr_size, &body_size, &input) < 0 ||
	    body_size.physical_size > max)
		return NULL;
	body = t_str_new(body_size.physical_size + 1);
	i_stream_seek(input, hdr_size.physical_size);
	while (i_stream_read_more(input, &data, &size) > 0) {
		str_append_data(body, data, size);
		i_stream_skip(input, size);
		if (str_len(body) > max)
			return NULL;
	}
	if (input->stream_errno != 0)
		return NULL;
	return str_c(body);
}

/* Lists the targets in `inbox` and hands them to Rust with the message.
   Returns TRUE when the listing worked and found no target at all. */
static bool coi_push_collect_inbox(struct mail_user *user, void *rs,
				   struct mailbox *inbox, struct mail *src_mail,
				   const char *recipient,
				   const struct coi_stored_message *message)
{
	ARRAY_TYPE(coi_bytes_array) subs, token_keys, tokens;
	struct coi_push_input input;
	const char *from;
	time_t date;
	int tz, n_subs, n_tokens;

	t_array_init(&subs, 8);
	t_array_init(&token_keys, 8);
	t_array_init(&tokens, 8);
	n_subs = coi_collect_values(inbox, COI_PVT_SUBSCRIPTIONS, TRUE,
				    NULL, &subs);
	n_tokens = coi_collect_values(inbox, COI_PVT_TOKENS, FALSE,
				      &token_keys, &tokens);
	i_zero(&input);
	/* array_front() asserts on an empty array */
	input.subscription_count = array_count(&subs);
	if (input.subscription_count > 0)
		input.subscriptions = array_front(&subs);
	input.token_count = array_count(&tokens);
	if (input.token_count > 0) {
		input.token_keys = array_front(&token_keys);
		input.tokens = array_front(&tokens);
	}
	input.recipient = coi_bytes_from_str(recipient);
	input.message = *message;
	/* Parsing From and the date and reading the body cost every
	   delivery; only a user with push targets needs them. */
	if (src_mail != NULL &&
	    (input.subscription_count > 0 || input.token_count > 0)) {
		if (mail_get_first_header_utf8(src_mail, "From", &from) > 0) {
			struct message_address *addr =
				message_address_parse(
					pool_datastack_create(),
					(const unsigned char *)from,
					strlen(from), 1, 0);
			if (addr != NULL)
				input.from_name =
					coi_bytes_from_str(addr->name);
		}
		if (mail_get_date(src_mail, &date, &tz) == 0 && date > 0) {
			input.date_unix = date;
			input.has_date = 1;
		}
		input.content = coi_bytes_from_str(
			coi_mail_small_body(src_mail, COI_PUSH_CONTENT_MAX));
	}
	(void)coi_ops->push(rs, user->event, &input);
	return n_subs == 0 && n_tokens == 0;
}

void coi_push_collect(struct mail_user *user, struct mailbox *open_inbox,
		      struct mail *src_mail, const char *recipient,
		      const struct coi_stored_message *message)
{
	void *rs = coi_user_rs(user);
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);
	struct mailbox *inbox;
	bool none = FALSE;

	if (rs == NULL || ns == NULL)
		return;
	/* plain mail (and the read-status path) come here without the chat's
	   METADATA read: one lookup, in the INBOX the delivery has open */
	if (open_inbox != NULL && coi_push_marker_says_none(open_inbox))
		return;
	T_BEGIN {
		inbox = mailbox_alloc(ns->list, "INBOX", MAILBOX_FLAG_READONLY);
		if (open_inbox != NULL || !coi_push_marker_says_none(inbox)) {
			none = coi_push_collect_inbox(user, rs, inbox, src_mail,
						      recipient, message);
		}
		mailbox_free(&inbox);
		if (none)
			coi_push_marker_learn(user);
	} T_END;
}

/* ---- doveadm coi: raw state and counts ---- */

static struct mailbox *coi_inbox_alloc(struct mail_user *user)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);

	return ns == NULL ? NULL :
		mailbox_alloc(ns->list, "INBOX", MAILBOX_FLAG_READONLY);
}

int coi_read_raw_state(struct mail_user *user, struct coi_raw_state *state_r)
{
	ARRAY_TYPE(coi_bytes_array) sub_ids, subs, token_keys, tokens;
	struct mailbox *inbox = coi_inbox_alloc(user);
	const char *value;
	int ret = 0;

	i_zero(state_r);
	if (inbox == NULL)
		return -1;
	if (coi_raw_get(inbox, COI_ATTR_CONFIG("enabled"), &value) < 0)
		ret = -1;
	state_r->enabled = coi_bytes_from_str(value);
	if (coi_raw_get(inbox, COI_ATTR_CONFIG("message-filter"), &value) < 0)
		ret = -1;
	state_r->message_filter = coi_bytes_from_str(value);
	t_array_init(&sub_ids, 8);
	t_array_init(&subs, 8);
	t_array_init(&token_keys, 8);
	t_array_init(&tokens, 8);
	coi_collect_values(inbox, COI_PVT_SUBSCRIPTIONS, FALSE, &sub_ids, &subs);
	coi_collect_values(inbox, COI_PVT_TOKENS, FALSE, &token_keys, &tokens);
	state_r->sub_count = array_count(&subs);
	if (state_r->sub_count > 0) {
		state_r->sub_ids = array_front(&sub_ids);
		state_r->sub_values = array_front(&subs);
	}
	state_r->token_count = array_count(&tokens);
	if (state_r->token_count > 0) {
		state_r->token_keys = array_front(&token_keys);
		state_r->token_values = array_front(&tokens);
	}
	mailbox_free(&inbox);
	return ret;
}

int coi_count_targets(struct mail_user *user, unsigned int *subscriptions_r,
		      unsigned int *tokens_r)
{
	ARRAY_TYPE(const_string) names;
	struct mailbox *inbox = coi_inbox_alloc(user);
	void *rs = coi_user_rs(user);
	int ret = 0;

	*subscriptions_r = *tokens_r = 0;
	if (inbox == NULL || rs == NULL) {
		if (inbox != NULL)
			mailbox_free(&inbox);
		return -1;
	}
	t_array_init(&names, 8);
	if (coi_subscriptions_count(inbox, rs, "", FALSE, subscriptions_r) < 0 ||
	    coi_raw_list(inbox, COI_PVT_TOKENS, &names) < 0)
		ret = -1;
	*tokens_r = array_count(&names);
	mailbox_free(&inbox);
	return ret;
}

/* ---- registration ---- */

#define COI_ATTR(k, r, fl, g, s, it) { \
	.type = MAIL_ATTRIBUTE_TYPE_PRIVATE, .key = (k), \
	.rank = MAIL_ATTRIBUTE_INTERNAL_RANK_##r, \
	.flags = MAIL_ATTRIBUTE_INTERNAL_FLAG_VALIDATED | (fl), \
	.get = (g), .set = (s), .iter = (it) }

static const struct mailbox_attribute_internal coi_internal_attributes[] = {
	COI_ATTR(COI_ATTR_CONFIG("enabled"), OVERRIDE, 0,
		 coi_config_get_enabled, coi_config_set_enabled, NULL),
	COI_ATTR(COI_ATTR_CONFIG("mailbox-root"), AUTHORITY, 0,
		 coi_config_get_root, coi_config_set_root, NULL),
	COI_ATTR(COI_ATTR_CONFIG("message-filter"), OVERRIDE, 0,
		 coi_config_get_filter, coi_config_set_filter, NULL),
	COI_ATTR(COI_ATTR_TOKENS, AUTHORITY,
		 MAIL_ATTRIBUTE_INTERNAL_FLAG_CHILDREN,
		 coi_tokens_get, coi_tokens_set, coi_tokens_iter),
	COI_ATTR(COI_ATTR_SUBSCRIPTIONS, AUTHORITY,
		 MAIL_ATTRIBUTE_INTERNAL_FLAG_CHILDREN,
		 coi_subscriptions_get, coi_subscriptions_set,
		 coi_subscriptions_iter),
	COI_ATTR(COI_ATTR_VAPID, AUTHORITY, 0,
		 coi_vapid_get, coi_vapid_set, NULL),
	/* write-only: a user may have several; they are listed under
	   /private/vendor/vendor.dovecot/coi/devicetokens/ on "" */
	COI_ATTR("devicetoken", AUTHORITY, 0,
		 coi_attribute_get_nothing, coi_devicetoken_set, NULL),
	/* the raw entries themselves: never for clients (IMAP refuses
	   pvt keys), only dsync and imports write here, validated */
	{ .type = MAIL_ATTRIBUTE_TYPE_PRIVATE, .key = COI_PVT_PREFIX,
	  .rank = MAIL_ATTRIBUTE_INTERNAL_RANK_OVERRIDE,
	  .flags = MAIL_ATTRIBUTE_INTERNAL_FLAG_CHILDREN,
	  /* nothing from get: Dovecot reads the raw value itself, and
	     being writable is what lets dsync copy it */
	  .get = coi_attribute_get_nothing, .set = coi_pvt_set,
	  .iter = coi_pvt_iter },
	{ .type = MAIL_ATTRIBUTE_TYPE_PRIVATE, .key = COI_PUSH_MARKER,
	  .rank = MAIL_ATTRIBUTE_INTERNAL_RANK_AUTHORITY,
	  /* never shown: dsync must not copy another server's cache */
	  .get = coi_attribute_get_nothing, .set = coi_push_marker_set },
	{ .type = MAIL_ATTRIBUTE_TYPE_SHARED,
	  .key = COI_SERVER_ATTR("vendor/deltachat/maxsmtprecipients"),
	  .rank = MAIL_ATTRIBUTE_INTERNAL_RANK_AUTHORITY,
	  .flags = MAIL_ATTRIBUTE_INTERNAL_FLAG_VALIDATED,
	  .get = coi_max_rcpt_get, .set = coi_max_rcpt_set },
};

void coi_attributes_register(void)
{
	mailbox_attribute_register_internals(coi_internal_attributes,
		N_ELEMENTS(coi_internal_attributes));
}

void coi_attributes_unregister(void)
{
	mailbox_attribute_unregister_internals(coi_internal_attributes,
		N_ELEMENTS(coi_internal_attributes));
}

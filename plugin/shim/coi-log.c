/* coi-log.c - Rust's way into Dovecot's logger.
 *
 * Rust formats its own text and hands over bytes; the format string here is
 * always the constant "%.*s", so nothing Rust passes is ever interpreted as
 * a format. Lines go to the given struct event (the delivery's or user's),
 * so they carry Dovecot's session prefix, e.g. "lmtp(alice)<...>: Debug:".
 */
#include "lib.h"
#include "coi-shim.h"

#include <limits.h>

void coi_shim_log(void *event, int32_t level, const uint8_t *msg, size_t len)
{
	struct event *ev = event;
	int n = len > INT_MAX ? INT_MAX : (int)len;
	const char *text = (const char *)msg;

	if (ev == NULL) {
		switch (level) {
		case COI_LOG_DEBUG: i_debug("%.*s", n, text); break;
		case COI_LOG_INFO: i_info("%.*s", n, text); break;
		case COI_LOG_WARNING: i_warning("%.*s", n, text); break;
		default: i_error("%.*s", n, text); break;
		}
		return;
	}
	switch (level) {
	case COI_LOG_DEBUG: e_debug(ev, "%.*s", n, text); break;
	case COI_LOG_INFO: e_info(ev, "%.*s", n, text); break;
	case COI_LOG_WARNING: e_warning(ev, "%.*s", n, text); break;
	default: e_error(ev, "%.*s", n, text); break;
	}
}

int32_t coi_shim_debug_enabled(void *event)
{
	return event != NULL && event_want_debug_log((struct event *)event) ? 1 : 0;
}

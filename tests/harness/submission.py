"""Messages as the operator's MTA hands them to LMTP (docs/recall.md, "Who sent it").

Owns the shape of the trace headers the recall tests rely on, written exactly
as Postfix 3.7 (Debian 12) writes them:

* an authenticated submission, with ``smtpd_sasl_authenticated_header = yes``::

      Received: from [127.0.0.1] (localhost [127.0.0.1])
              (Authenticated sender: alice@example.org)
              by mail.example.org (Postfix) with ESMTPSA id 4F1A2B3C4D
              for <bob@example.org>; Thu,  3 Dec 2026 11:00:00 +0000 (UTC)

* mail from outside on the inbound port (no note, protocol ``ESMTP``)::

      Received: from evil.example (evil.example [192.0.2.66])
              by mail.example.org (Postfix) with ESMTP id 4F1A2B3C4E
              for <bob@example.org>; ...

An attacker can write any header *below* that inbound one, so ``forged()``
builds an outside message whose own headers claim everything an authenticated
submission would show (From, envelope sender and an ``Authenticated sender``
Received header), with the operator's inbound header on top. Dovecot's LMTP
adds its own ``Received: ... with LMTP`` above all of them at delivery.
"""

from __future__ import annotations

import random
import uuid
from email.utils import format_datetime
from datetime import datetime, timezone

MTA_HOST = "mail.example.org"


def _queue_id() -> str:
    return "".join(random.choice("0123456789ABCDEF") for _ in range(10))


def _date() -> str:
    return format_datetime(datetime.now(timezone.utc))


def submission_received(login: str, rcpt: str, tls: bool = True) -> str:
    """The Received header Postfix's submission service prepends for ``login``."""
    proto = "ESMTPSA" if tls else "ESMTPA"
    return (f"from [127.0.0.1] (localhost [127.0.0.1])\r\n"
            f"\t(Authenticated sender: {login})\r\n"
            f"\tby {MTA_HOST} (Postfix) with {proto} id {_queue_id()}\r\n"
            f"\tfor <{rcpt}>; {_date()} (UTC)")


def inbound_received(rcpt: str, helo: str = "evil.example", ip: str = "192.0.2.66") -> str:
    """The Received header Postfix's inbound smtpd prepends for outside mail."""
    return (f"from {helo} ({helo} [{ip}])\r\n"
            f"\tby {MTA_HOST} (Postfix) with ESMTP id {_queue_id()}\r\n"
            f"\tfor <{rcpt}>; {_date()} (UTC)")


def message(frm: str, to: list[str], subject: str, body: str = "Hello!",
            received: list[str] = (), message_id: str | None = None,
            extra: list[tuple[str, str]] = ()) -> tuple[bytes, str]:
    """RFC 5322 bytes (CRLF) with ``received`` on top; returns (raw, Message-ID with <>)."""
    mid = message_id or f"<{uuid.uuid4().hex}@example.org>"
    headers = [("Received", r) for r in received] + [
        ("From", frm), ("To", ", ".join(to)), ("Date", _date()), ("Message-ID", mid),
        ("Subject", subject), ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8")] + list(extra)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + "\r\n" + body.replace("\n", "\r\n") + "\r\n").encode(), mid


def submitted(login: str, to: list[str], subject: str, **kw) -> tuple[bytes, str]:
    """What LMTP receives after ``login`` submitted a message through Postfix."""
    return message(login, to, subject, received=[submission_received(login, to[0])], **kw)


def forged(claimed: str, to: list[str], subject: str, **kw) -> tuple[bytes, str]:
    """Outside mail claiming to be an authenticated submission by ``claimed``."""
    return message(claimed, to, subject,
                   received=[inbound_received(to[0]), submission_received(claimed, to[0])], **kw)

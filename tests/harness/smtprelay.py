"""``SmtpRelay``: the loopback submission server real chat clients send through.

Delta Chat sends over SMTP; the throwaway Dovecot only speaks LMTP. This relay
plays the MTA between them: an ``aiosmtpd`` server (Debian's python3-aiosmtpd)
on a free 127.0.0.1 port, plain text (no TLS: loopback only), that requires
AUTH PLAIN/LOGIN with the harness password, and hands every accepted message
to Dovecot's LMTP in one transaction with one RCPT per recipient, as Postfix's
lmtp transport does. Like an MTA it puts a ``Received:`` line on top.

Every message is kept (``messages``: envelope, bytes as submitted, Dovecot's
answer per recipient) so tests can look at exactly what the client sent and
prove that every submission reached every recipient. A recipient Dovecot
refuses makes the SMTP answer 451 (the client retries) and is recorded in
``failures``; tests assert that list stays empty.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import threading
import warnings
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from .config import PASSWORD
from .instance import free_ports
from .lmtp import RcptResult, lmtp_deliver

RELAY_HOSTNAME = "relay.example.org"


@dataclass
class RelayedMessage:
    """One message a client submitted, and what LMTP said for each recipient."""

    mail_from: str
    rcpts: list[str]
    data: bytes
    results: list[RcptResult] = field(default_factory=list)
    #: What went to LMTP: the relay's Received line + ``data``.
    delivered: bytes = b""
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    def header_block(self) -> bytes:
        """The header block as the client wrote it (before the relay's Received line)."""
        head, _, _ = self.data.replace(b"\r\n", b"\n").partition(b"\n\n")
        return head + b"\n"

    def header(self, name: str) -> str | None:
        """First occurrence of a header field, unfolded (None when absent)."""
        want = name.lower().encode() + b":"
        lines = self.header_block().split(b"\n")
        for i, line in enumerate(lines):
            if line.lower().startswith(want):
                value = line[len(want):]
                for cont in lines[i + 1:]:
                    if not cont[:1] in (b" ", b"\t"):
                        break
                    value += b" " + cont.strip()
                return value.strip().decode("utf-8", "replace")
        return None


class _Handler:
    def __init__(self, relay: "SmtpRelay"):
        self.relay = relay

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        msg = RelayedMessage(mail_from=envelope.mail_from,
                             rcpts=list(envelope.rcpt_tos), data=bytes(envelope.original_content))
        loop = asyncio.get_running_loop()
        # smtplib blocks: keep the SMTP event loop free for other sessions.
        msg.results = await loop.run_in_executor(None, self.relay._hand_off, msg)
        with self.relay._lock:
            self.relay.messages.append(msg)
            if not msg.ok:
                self.relay.failures.append(msg)
        if msg.ok:
            return "250 2.0.0 delivered"
        return "451 4.3.0 LMTP refused a recipient, try again"


class SmtpRelay:
    """Submission on loopback -> LMTP of one Dovecot instance. A context manager."""

    def __init__(self, lmtp_host: str, lmtp_port: int, *, password: str = PASSWORD):
        self.lmtp_host, self.lmtp_port = lmtp_host, lmtp_port
        self.password = password
        self.host = "127.0.0.1"
        self.port = free_ports(1)[0]
        self.messages: list[RelayedMessage] = []
        self.failures: list[RelayedMessage] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)

    def _hand_off(self, msg: RelayedMessage) -> list[RcptResult]:
        received = (f"Received: from client (localhost [127.0.0.1])\r\n"
                    f"\tby {RELAY_HOSTNAME} (coi test relay) with ESMTPA;\r\n"
                    f"\t{email.utils.formatdate()}\r\n").encode()
        msg.delivered = received + msg.data
        return lmtp_deliver(self.lmtp_host, self.lmtp_port, msg.delivered,
                            msg.rcpts, sender=msg.mail_from or "<>")

    def start(self) -> "SmtpRelay":
        # aiosmtpd warns about AUTH without TLS; on loopback that is the point.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        self._controller = Controller(
            _Handler(self), hostname=self.host, port=self.port,
            server_hostname=RELAY_HOSTNAME, authenticator=self._authenticate,
            auth_required=True, auth_require_tls=False,
            data_size_limit=64 * 1024 * 1024)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> "SmtpRelay":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def snapshot(self) -> list[RelayedMessage]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[RelayedMessage]:
        """Wait until at least ``count`` messages were relayed in all."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"relay saw {len(self.messages)} messages, wanted {count}")
            time.sleep(0.05)
        return self.snapshot()

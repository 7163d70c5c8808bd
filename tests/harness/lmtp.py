"""LMTP delivery client (RFC 2033) on top of ``smtplib.LMTP``.

Owns the wire side of LMTP delivery. ``smtplib`` reads only one reply after
DATA, but LMTP answers once per accepted recipient, so the transaction is
driven here by hand. The message bytes are sent as they are (only
dot-stuffed), so malformed input such as bare LF line endings reaches Dovecot
unchanged.
"""

from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass

DEFAULT_SENDER = "sender@example.net"


@dataclass(frozen=True)
class RcptResult:
    """Dovecot's final answer for one recipient of one transaction."""

    rcpt: str
    code: int
    message: str
    #: Where the final answer came from: "MAIL", "RCPT", "DATA" (354 stage) or "DELIVERY".
    stage: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


def dot_stuff(msg: bytes) -> bytes:
    """Escape leading dots and end the data with CRLF "." CRLF."""
    data = re.sub(rb"(?m)^\.", b"..", msg)
    if not data.endswith(b"\r\n"):
        data = data[:-1] + b"\r\n" if data.endswith(b"\n") else data + b"\r\n"
    return data + b".\r\n"


class LmtpSession:
    """One LMTP connection that can run many transactions."""

    def __init__(self, host: str, port: int, timeout: float = 60.0):
        self.smtp = smtplib.LMTP(host, port, timeout=timeout)
        code, resp = self.smtp.ehlo("client.example.net")  # LMTP: sends LHLO
        if code != 250:
            self.smtp.close()
            raise smtplib.SMTPHeloError(code, resp)

    def deliver(self, msg: bytes, rcpts: list[str], sender: str = DEFAULT_SENDER
                ) -> list[RcptResult]:
        """One transaction (MAIL, n x RCPT, DATA); one result per recipient, in order."""
        smtp = self.smtp
        results: dict[str, RcptResult] = {}
        code, resp = smtp.mail(sender)
        if code != 250:
            smtp.rset()
            return [RcptResult(r, code, resp.decode(errors="replace"), "MAIL") for r in rcpts]
        accepted = []
        for r in rcpts:
            code, resp = smtp.rcpt(r)
            results[r] = RcptResult(r, code, resp.decode(errors="replace"), "RCPT")
            if code in (250, 251):
                accepted.append(r)
        if not accepted:
            smtp.rset()
            return [results[r] for r in rcpts]
        smtp.putcmd("data")
        code, resp = smtp.getreply()
        if code != 354:
            for r in accepted:
                results[r] = RcptResult(r, code, resp.decode(errors="replace"), "DATA")
            smtp.rset()
            return [results[r] for r in rcpts]
        smtp.send(dot_stuff(msg))
        for r in accepted:
            code, resp = smtp.getreply()
            results[r] = RcptResult(r, code, resp.decode(errors="replace"), "DELIVERY")
        return [results[r] for r in rcpts]

    def close(self) -> None:
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()

    def __enter__(self) -> "LmtpSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def lmtp_deliver(host: str, port: int, msg: bytes, rcpts: list[str],
                 sender: str = DEFAULT_SENDER, timeout: float = 60.0) -> list[RcptResult]:
    """Deliver ``msg`` in ONE LMTP transaction to all ``rcpts``; per-recipient results."""
    with LmtpSession(host, port, timeout=timeout) as s:
        return s.deliver(msg, rcpts, sender)

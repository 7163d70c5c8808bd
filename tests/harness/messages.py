"""Builders for the messages the tests deliver (RFC 5322 bytes, CRLF line endings).

Owns the shape of every well-formed test message: plain mail, COI 1:1 and
group chats, a legacy client's reply into a group, Delta Chat plain,
encrypted and read-receipt (MDN) messages, mailing-list mail, and
near-misses that must NOT be classified as chats. Every builder returns a
``TestMessage`` with a fresh, unique Message-ID so tests can find it again.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from email.utils import format_datetime
from datetime import datetime, timezone

DEFAULT_FROM = "dora@example.net"
DEFAULT_TO = "alice@example.org"


@dataclass(frozen=True)
class TestMessage:
    """A message ready to deliver, plus what a test needs to recognise it."""

    __test__ = False  # not a pytest test class

    raw: bytes
    message_id: str          # without angle brackets
    subject: str
    #: What the COI classifier should say: "plain", "chat", "group", "mdn".
    kind: str
    group_id: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_chat(self) -> bool:
        return self.kind != "plain"


def _token() -> str:
    return uuid.uuid4().hex


def _date() -> str:
    return format_datetime(datetime.now(timezone.utc))


def group_id() -> str:
    """A valid COI group id: ``[0-9A-Za-z_-]{12,}``."""
    return "G" + uuid.uuid4().hex[:15]


def _assemble(headers: list[tuple[str, str]], body: str | bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8")
    if isinstance(body, str):
        body = body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return head + b"\r\n" + body


def _base(mid: str, subject: str, frm: str, to: str) -> list[tuple[str, str]]:
    return [
        ("From", frm),
        ("To", to),
        ("Date", _date()),
        ("Message-ID", f"<{mid}>"),
        ("Subject", subject),
        ("MIME-Version", "1.0"),
    ]


def plain_mail(subject: str | None = None, frm: str = DEFAULT_FROM, to: str = DEFAULT_TO,
               body: str | None = None) -> TestMessage:
    """Ordinary email: nothing chat-like anywhere."""
    mid = f"{_token()}@mail.example.net"
    subject = subject or f"Quarterly report {mid[:8]}"
    headers = _base(mid, subject, frm, to) + [("Content-Type", "text/plain; charset=utf-8")]
    body = body or ("Hello Alice,\n\nplease find the numbers below.\n"
                    ".a line starting with a dot\n\nRegards,\nDora\n")
    return TestMessage(_assemble(headers, body), mid, subject, "plain")


def coi_chat(subject: str | None = None, frm: str = DEFAULT_FROM, to: str = DEFAULT_TO,
             chat_version: bool = True, body: str = "Hi! Lunch today?") -> TestMessage:
    """A COI 1:1 chat: ``chat$`` Message-ID (and, by default, ``Chat-Version``)."""
    mid = f"chat${_token()}@example.net"
    subject = subject or f"Chat: {body[:20]}"
    headers = _base(mid, subject, frm, to)
    if chat_version:
        headers.append(("Chat-Version", "1.0"))
    headers.append(("Content-Type", "text/plain; charset=utf-8"))
    return TestMessage(_assemble(headers, body), mid, subject, "chat")


def coi_group_chat(gid: str | None = None, subject: str | None = None, frm: str = DEFAULT_FROM,
                   to: str = DEFAULT_TO) -> TestMessage:
    """A COI group chat: ``chat$group.<groupid>.<unique>@domain``."""
    gid = gid or group_id()
    mid = f"chat$group.{gid}.{_token()[:12]}@example.net"
    subject = subject or f"Chat: group {gid}"
    headers = _base(mid, subject, frm, to) + [
        ("Chat-Version", "1.0"),
        ("Chat-Group-ID", gid),
        ("Chat-Group-Name", "Climbing crew"),
        ("Content-Type", "text/plain; charset=utf-8"),
    ]
    return TestMessage(_assemble(headers, "Who is in for Saturday?"), mid, subject, "group",
                       group_id=gid)


def legacy_group_reply(gid: str | None = None, frm: str = "erin@legacy.example.com",
                       to: str = DEFAULT_TO) -> TestMessage:
    """A reply from an ordinary mail client: no Chat-Version, normal Message-ID, but the
    FIRST References id is the group chat's ``chat$group.`` id."""
    gid = gid or group_id()
    parent = f"chat$group.{gid}.{_token()[:12]}@example.net"
    mid = f"{_token()}@legacy.example.com"
    subject = "Re: Chat: group plans"
    headers = _base(mid, subject, frm, to) + [
        ("References", f"<{parent}> <{_token()}@legacy.example.com>"),
        ("In-Reply-To", f"<{_token()}@legacy.example.com>"),
        ("Content-Type", "text/plain; charset=utf-8"),
    ]
    return TestMessage(_assemble(headers, "> Who is in?\nMe, from Thunderbird."), mid,
                       subject, "group", group_id=gid)


def deltachat_plain(frm: str = "bot@chat.example.net", to: str = DEFAULT_TO) -> TestMessage:
    """An unencrypted Delta Chat message: Chat-Version 1.0, random UUID@localhost id
    (2.65 sends these only to addresses without a key, and only with
    force_encryption off)."""
    mid = f"{uuid.uuid4()}@localhost"
    subject = "Message from bot@chat.example.net"
    headers = _base(mid, subject, frm, to) + [
        ("Chat-Version", "1.0"),
        ("Autocrypt", f"addr={frm}; prefer-encrypt=mutual; keydata=bWRhdGE="),
        ("Content-Type", 'text/plain; charset="utf-8"; format=flowed; delsp=no'),
    ]
    return TestMessage(_assemble(headers, "hello from delta\n\n-- \nSent with my Delta Chat"),
                       mid, subject, "chat")


#: What the real Delta Chat 2.65 sent (tests/capture_deltachat.py).
CAPTURED_DELTACHAT = Path(__file__).resolve().parents[1] / "fixtures" / "deltachat"


def deltachat_captured(name: str = "03-text-bob-to-alice-1.eml") -> TestMessage:
    """A message the real Delta Chat 2.65 sent, as captured (header-protected:
    every chat header is inside the encryption; the body is cut short)."""
    raw = (CAPTURED_DELTACHAT / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    mid = re.search(rb"(?im)^Message-ID:\s*<([^>]+)>", raw)
    assert mid, name
    return TestMessage(raw, mid[1].decode(), "[...]", "chat")


def deltachat_encrypted(frm: str = "bot@chat.example.net", to: str = DEFAULT_TO) -> TestMessage:
    """A Delta Chat 1.x encrypted message (PGP/MIME, `Chat-Version` still outside).
    Delta Chat 2.x hides every chat header: see ``deltachat_captured``."""
    mid = f"{uuid.uuid4()}@localhost"
    subject = "[...]"
    boundary = f"enc-{_token()[:16]}"
    headers = _base(mid, subject, frm, to) + [
        ("Chat-Version", "1.0"),
        ("Autocrypt", f"addr={frm}; prefer-encrypt=mutual; keydata=bWRhdGE="),
        ("Content-Type",
         f'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{boundary}"'),
    ]
    armored = "\n".join(["-----BEGIN PGP MESSAGE-----", "",
                         *(["wV4DGD2Ez7LyR0gSAQdAZmFrZWNpcGhlcnRleHRmYWtlY2lwaGVydGV4dA=="] * 6),
                         "=Xk2p", "-----END PGP MESSAGE-----"])
    body = (f"--{boundary}\n"
            "Content-Type: application/pgp-encrypted\nContent-Description: PGP/MIME version "
            "identification\n\nVersion: 1\n\n"
            f"--{boundary}\n"
            'Content-Type: application/octet-stream; name="encrypted.asc"\n'
            'Content-Disposition: inline; filename="encrypted.asc"\n\n'
            f"{armored}\n\n--{boundary}--\n")
    return TestMessage(_assemble(headers, body), mid, subject, "chat")


def deltachat_mdn(original_mid: str | None = None, frm: str = "bot@chat.example.net",
                  to: str = DEFAULT_TO) -> TestMessage:
    """A Delta Chat read receipt: multipart/report (disposition-notification) + Chat-Version."""
    mid = f"{uuid.uuid4()}@localhost"
    subject = "Receipt Notification"
    boundary = f"mdn-{_token()[:16]}"
    original_mid = original_mid or f"{uuid.uuid4()}@localhost"
    headers = _base(mid, subject, frm, to) + [
        ("Chat-Version", "1.0"),
        ("Content-Type",
         f'multipart/report; report-type=disposition-notification; boundary="{boundary}"'),
    ]
    body = (f"--{boundary}\n"
            "Content-Type: text/plain; charset=utf-8\n\n"
            "This is a receipt notification.\n\n"
            f"--{boundary}\n"
            "Content-Type: message/disposition-notification\n\n"
            "Reporting-UA: Delta Chat 1.142.0\n"
            f"Original-Recipient: rfc822;{frm}\n"
            f"Final-Recipient: rfc822;{frm}\n"
            f"Original-Message-ID: <{original_mid}>\n"
            "Disposition: manual-action/MDN-sent-automatically; displayed\n\n"
            f"--{boundary}--\n")
    return TestMessage(_assemble(headers, body), mid, subject, "mdn")


def mailing_list(frm: str = "announce@lists.example.com", to: str = DEFAULT_TO) -> TestMessage:
    """Mailing-list traffic: List-Id etc., never a chat."""
    mid = f"{_token()}@lists.example.com"
    subject = "[announce] Release 4.2 is out"
    headers = _base(mid, subject, frm, to) + [
        ("List-Id", "Announcements <announce.lists.example.com>"),
        ("List-Unsubscribe", "<mailto:announce-leave@lists.example.com>"),
        ("List-Post", "NO"),
        ("Precedence", "list"),
        ("Content-Type", "text/plain; charset=utf-8"),
    ]
    return TestMessage(_assemble(headers, "Release notes follow.\n"), mid, subject, "plain")


def near_misses(to: str = DEFAULT_TO) -> list[TestMessage]:
    """Plain mail that merely looks a little chat-like; must stay ordinary mail."""
    out = []
    # chat$ not at the start of the Message-ID
    mid = f"xchat${_token()}@example.net"
    h = _base(mid, "near miss: chat$ inside id", DEFAULT_FROM, to)
    out.append(TestMessage(_assemble(h, "x"), mid, "near miss: chat$ inside id", "plain"))
    # chat$ only in the SECOND References id
    mid = f"{_token()}@example.net"
    h = _base(mid, "near miss: second reference", DEFAULT_FROM, to) + [
        ("References", f"<{_token()}@example.net> <chat$group.{group_id()}.x@example.net>")]
    out.append(TestMessage(_assemble(h, "x"), mid, "near miss: second reference", "plain"))
    # the word chat in Subject and a Delta-style @localhost id without Chat-Version
    mid = f"{uuid.uuid4()}@localhost"
    h = _base(mid, "Chat-Version: 1.0 (in the subject only)", DEFAULT_FROM, to)
    out.append(TestMessage(_assemble(h, "Chat-Version: 1.0\n"), mid,
                           "Chat-Version: 1.0 (in the subject only)", "plain"))
    return out


def with_subject(msg: TestMessage, subject: str) -> TestMessage:
    """Copy of ``msg`` with another Subject (first occurrence replaced)."""
    old = f"Subject: {msg.subject}\r\n".encode()
    assert old in msg.raw
    raw = msg.raw.replace(old, f"Subject: {subject}\r\n".encode(), 1)
    return TestMessage(raw, msg.message_id, subject, msg.kind, msg.group_id, dict(msg.extra))


ALL_CHAT_BUILDERS = {
    "coi_chat": coi_chat,
    "coi_chat_msgid_only": lambda **kw: coi_chat(chat_version=False, **kw),
    "coi_group_chat": coi_group_chat,
    "legacy_group_reply": legacy_group_reply,
    "deltachat_plain": deltachat_plain,
    "deltachat_encrypted": deltachat_encrypted,
    "deltachat_mdn": deltachat_mdn,
}

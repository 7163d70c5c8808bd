"""Assertion helpers that explain themselves when they fail.

Owns how tests locate a delivered message (by Message-ID, across all
folders) and how a failure is reported: every assertion message includes a
dump of the user's folders (uid, flags, subject, Message-ID per message).
"""

from __future__ import annotations

import re

from .imap import Message
from .lmtp import RcptResult

#: Headers Dovecot itself prepends on delivery.
DELIVERY_HEADERS = {"return-path", "delivered-to", "received"}


def dump_folders(folders: dict[str, list[Message]], limit: int = 20) -> str:
    lines = []
    for name in sorted(folders):
        msgs = folders[name]
        lines.append(f"  {name}: {len(msgs)} message(s)")
        for m in msgs[:limit]:
            lines.append(f"    - {m.short()}")
        if len(msgs) > limit:
            lines.append(f"    ... {len(msgs) - limit} more")
    return "\n".join(lines) or "  (no folders)"


def _mid_matches(m: Message, message_id: str) -> bool:
    got = m.header("Message-ID")
    return got is not None and got.strip().strip("<>") == message_id


def locate(folders: dict[str, list[Message]], message_id: str) -> list[Message]:
    """Every stored copy of the message with this Message-ID (no angle brackets)."""
    return [m for msgs in folders.values() for m in msgs if _mid_matches(m, message_id)]


def assert_all_ok(results: list[RcptResult], context: str = "") -> None:
    bad = [r for r in results if not r.ok]
    assert not bad, f"delivery not accepted{(' (' + context + ')') if context else ''}: {bad}"


def assert_stored_once(folders: dict[str, list[Message]], message_id: str, folder: str,
                       chat_keyword: bool, who: str = "") -> Message:
    """Exactly one copy, in ``folder``, with (or without) the ``$Chat`` keyword."""
    copies = locate(folders, message_id)
    where = [c.folder for c in copies]
    ctx = f"\nmessage-id {message_id!r}{(' for ' + who) if who else ''}\nfolders:\n" \
          f"{dump_folders(folders)}"
    assert len(copies) == 1, f"expected exactly 1 stored copy, found {len(copies)} in {where}{ctx}"
    m = copies[0]
    assert m.folder == folder, f"expected the message in {folder!r}, found it in {m.folder!r}{ctx}"
    if chat_keyword:
        assert m.has_chat_keyword, f"expected keyword $Chat, flags are {m.flags}{ctx}"
    else:
        assert not m.has_chat_keyword, f"expected NO $Chat keyword, flags are {m.flags}{ctx}"
    return m


def normalise_crlf(raw: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", raw)


def assert_unmodified(sent: bytes, stored: Message) -> None:
    """``stored`` is ``sent`` (CRLF-normalised) plus only Dovecot's own trace headers."""
    want = normalise_crlf(sent)
    got = stored.raw
    assert got.endswith(want), (
        "stored message differs from what was sent (beyond Dovecot's prepended headers)\n"
        f"--- sent ---\n{want[:1500]!r}\n--- stored ---\n{got[:2000]!r}")
    prefix = got[: len(got) - len(want)]
    names = [ln.split(b":", 1)[0].strip().lower().decode(errors="replace")
             for ln in prefix.split(b"\r\n") if ln and not ln[:1].isspace()]
    extra = [n for n in names if n not in DELIVERY_HEADERS]
    assert not extra, f"unexpected headers prepended on delivery: {extra}\n{prefix!r}"


def folder_counts(folders: dict[str, list[Message]]) -> dict[str, int]:
    return {k: len(v) for k, v in sorted(folders.items())}

"""A small IMAP client for assertions, over ``imaplib.IMAP4`` (plain TCP, loopback).

Owns the IMAP side of the harness: login, LIST/LSUB, EXAMINE, fetching whole
folders as ``Message(uid, flags, raw)``, CAPABILITY, and RFC 5464
SETMETADATA/GETMETADATA (imaplib has no methods for those, so the two
commands are registered in imaplib's command table and sent raw).
"""

from __future__ import annotations

import imaplib
import re
from dataclasses import dataclass

from .config import PASSWORD

# imaplib refuses commands it does not know; METADATA is valid once authenticated.
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))

COI_CONFIG_PREFIX = "/private/vendor/vendor.dovecot/coi/config/"
COI_ENABLED = COI_CONFIG_PREFIX + "enabled"
COI_MESSAGE_FILTER = COI_CONFIG_PREFIX + "message-filter"
COI_MAILBOX_ROOT = COI_CONFIG_PREFIX + "mailbox-root"


class ImapCommandFailed(AssertionError):
    """A command the test relied on got NO/BAD."""


def quote(s: str) -> str:
    """An IMAP quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(tok: bytes) -> str:
    tok = tok.strip()
    if tok.startswith(b'"') and tok.endswith(b'"') and len(tok) >= 2:
        return re.sub(rb'\\(.)', rb'\1', tok[1:-1]).decode("utf-8", "replace")
    return tok.decode("utf-8", "replace")


@dataclass
class Message:
    """One message as fetched: UID, flags (keywords included) and the full raw bytes."""

    uid: int
    flags: list[str]
    raw: bytes
    folder: str = ""

    @property
    def has_chat_keyword(self) -> bool:
        return "$Chat" in self.flags

    def header(self, name: str) -> str | None:
        """First value of a header field (unfolded), or None."""
        head = re.split(rb"\r?\n\r?\n", self.raw, maxsplit=1)[0]
        unfolded = re.sub(rb"\r?\n[ \t]+", b" ", head)
        for line in unfolded.split(b"\n"):
            k, sep, v = line.partition(b":")
            if sep and k.strip().lower() == name.lower().encode():
                return v.strip().decode("utf-8", "replace")
        return None

    def short(self) -> str:
        subj = self.header("Subject")
        mid = self.header("Message-ID")
        return f"uid={self.uid} flags={self.flags} subject={subj!r} message-id={mid!r}"


@dataclass
class ListEntry:
    attrs: list[str]
    separator: str | None
    name: str


_LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<sep>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')


def _parse_list(data: list) -> list[ListEntry]:
    entries = []
    for item in data:
        if item is None:
            continue
        literal = None
        if isinstance(item, tuple):
            item, literal = item[0], item[1]
        m = _LIST_RE.match(item)
        if not m:
            raise ValueError(f"unparsable LIST line {item!r}")
        sep = None if m["sep"] == b"NIL" else _unquote(m["sep"])
        name = literal.decode("utf-8", "replace") if literal is not None else _unquote(m["name"])
        entries.append(ListEntry(m["attrs"].decode().split(), sep, name))
    return entries


class ImapClient:
    """A logged-in (or not yet) IMAP connection to one instance."""

    def __init__(self, host: str, port: int, user: str | None = None,
                 password: str = PASSWORD, timeout: float = 30.0):
        self.conn = imaplib.IMAP4(host, port, timeout=timeout)
        self.user = None
        if user is not None:
            self.login(user, password)

    # -- session -------------------------------------------------------------
    def login(self, user: str, password: str = PASSWORD) -> None:
        typ, data = self.conn.login(user, password)
        if typ != "OK":
            raise ImapCommandFailed(f"LOGIN {user}: {typ} {data}")
        self.user = user

    def close(self) -> None:
        try:
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            try:
                self.conn.shutdown()
            except OSError:
                pass

    def __enter__(self) -> "ImapClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def capabilities(self) -> list[str]:
        """CAPABILITY, asked afresh (so post-login capabilities show)."""
        typ, data = self.conn.capability()
        if typ != "OK":
            raise ImapCommandFailed(f"CAPABILITY: {typ} {data}")
        return data[-1].decode().upper().split()

    # -- folders -------------------------------------------------------------
    def list_entries(self, pattern: str = "*") -> list[ListEntry]:
        typ, data = self.conn.list('""', quote(pattern))
        if typ != "OK":
            raise ImapCommandFailed(f"LIST: {typ} {data}")
        return _parse_list(data)

    def list_folders(self, pattern: str = "*") -> list[str]:
        return [e.name for e in self.list_entries(pattern)]

    def separator(self) -> str:
        typ, data = self.conn.list('""', '""')
        entries = _parse_list(data)
        return entries[0].separator if entries and entries[0].separator else "/"

    def subscribed(self, pattern: str = "*") -> list[str]:
        typ, data = self.conn.lsub('""', quote(pattern))
        if typ != "OK":
            raise ImapCommandFailed(f"LSUB: {typ} {data}")
        return [e.name for e in _parse_list(data)]

    def create(self, folder: str) -> None:
        typ, data = self.conn.create(quote(folder))
        if typ != "OK":
            raise ImapCommandFailed(f"CREATE {folder}: {typ} {data}")

    def examine(self, folder: str) -> int:
        """EXAMINE (read-only SELECT); returns the message count."""
        typ, data = self.conn.select(quote(folder), readonly=True)
        if typ != "OK":
            raise ImapCommandFailed(f"EXAMINE {folder}: {typ} {data}")
        return int(data[0] or 0)

    def select(self, folder: str) -> int:
        typ, data = self.conn.select(quote(folder))
        if typ != "OK":
            raise ImapCommandFailed(f"SELECT {folder}: {typ} {data}")
        return int(data[0] or 0)

    # -- messages ------------------------------------------------------------
    def fetch_folder(self, folder: str) -> list[Message]:
        """All messages of ``folder`` (read-only, \\Seen untouched), in UID order."""
        if self.examine(folder) == 0:
            return []
        typ, data = self.conn.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
        if typ != "OK":
            raise ImapCommandFailed(f"UID FETCH in {folder}: {typ} {data}")
        msgs: list[Message] = []
        i = 0
        while i < len(data):
            item = data[i]
            if isinstance(item, tuple):
                meta = item[0]
                raw = item[1]
                trailer = data[i + 1] if i + 1 < len(data) and isinstance(data[i + 1], bytes) else b""
                meta_all = meta + b" " + trailer
                uid_m = re.search(rb"UID (\d+)", meta_all)
                flags_m = re.search(rb"FLAGS \(([^)]*)\)", meta_all)
                if not uid_m or flags_m is None:
                    raise ValueError(f"unparsable FETCH response {meta_all!r}")
                msgs.append(Message(int(uid_m[1]), flags_m[1].decode().split(), raw, folder))
            i += 1
        msgs.sort(key=lambda m: m.uid)
        return msgs

    def fetch_all_folders(self, strict: bool = True) -> dict[str, list[Message]]:
        """Every folder's messages, keyed by folder name.

        With ``strict=False`` folders that cannot be opened are left out
        (their names are kept in ``self.unreadable``) instead of failing.
        """
        out = {}
        self.unreadable: list[str] = []
        for entry in self.list_entries():
            if "\\Noselect" in entry.attrs or "\\NonExistent" in entry.attrs:
                continue
            try:
                out[entry.name] = self.fetch_folder(entry.name)
            except ImapCommandFailed:
                if strict:
                    raise
                self.unreadable.append(entry.name)
        return out

    # -- METADATA (RFC 5464) -------------------------------------------------
    def setmetadata(self, entry: str, value: str | None, mailbox: str = "") -> tuple[str, str]:
        """SETMETADATA; returns (status, text), e.g. ("NO", "[CANNOT] ...")."""
        val = "NIL" if value is None else quote(value)
        typ, data = self.conn._simple_command("SETMETADATA", quote(mailbox),
                                              f"({entry} {val})")
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        return typ, text

    def setmetadata_ok(self, entry: str, value: str | None, mailbox: str = "") -> None:
        typ, text = self.setmetadata(entry, value, mailbox)
        if typ != "OK":
            raise ImapCommandFailed(f"SETMETADATA {mailbox!r} {entry} {value!r}: {typ} {text}")

    def getmetadata(self, entry: str, mailbox: str = "") -> str | None:
        """GETMETADATA of one entry; None when NIL/absent."""
        typ, data = self.conn._simple_command("GETMETADATA", quote(mailbox), entry)
        if typ != "OK":
            raise ImapCommandFailed(f"GETMETADATA {mailbox!r} {entry}: {typ} {data}")
        typ, data = self.conn._untagged_response(typ, data, "METADATA")
        for item in data:
            if item is None:
                continue
            if isinstance(item, tuple):
                return item[1].decode("utf-8", "replace")
            m = re.search(rb'\(\S+ (NIL|"(?:[^"\\]|\\.)*")\)\s*$', item)
            if m:
                return None if m[1] == b"NIL" else _unquote(m[1])
        return None

    def enable_coi(self, message_filter: str | None = "active") -> None:
        """Turn COI on for the logged-in user the way a COI client does."""
        self.setmetadata_ok(COI_ENABLED, "yes")
        if message_filter is not None:
            self.setmetadata_ok(COI_MESSAGE_FILTER, message_filter)

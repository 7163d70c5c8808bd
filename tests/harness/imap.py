"""A small IMAP client for assertions, over ``imaplib.IMAP4`` (plain TCP, loopback).

Owns the IMAP side of the harness: login, LIST/LSUB, EXAMINE, fetching whole
folders as ``Message(uid, flags, raw)``, CAPABILITY, and RFC 5464
SETMETADATA/GETMETADATA (imaplib has no methods for those, so the two
commands are registered in imaplib's command table and sent raw).
``IdleClient`` is a separate raw-socket connection for IDLE (RFC 2177):
imaplib cannot wait for untagged responses with a timeout. It keeps a
``MailboxView`` of the selected mailbox built from nothing but the server's
untagged responses, as a real client must, so a test can go on after a state
change (NOOP, IDLE, FETCH) and check that what the client was told matches
the server (``check_view``). ``ImapClient.noop`` returns the untagged lines a
NOOP brought.
"""

from __future__ import annotations

import imaplib
import re
import select
import socket
import time
from collections import deque
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


class _RecordingIMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 that also keeps every untagged line, in order (imaplib
    itself only keeps them grouped by type)."""

    def __init__(self, *args, **kwargs):
        self.untagged_lines: list[bytes] = []
        super().__init__(*args, **kwargs)

    def _get_line(self):
        line = super()._get_line()
        if line.startswith(b"* "):
            self.untagged_lines.append(line)
        return line


class ImapClient:
    """A logged-in (or not yet) IMAP connection to one instance."""

    def __init__(self, host: str, port: int, user: str | None = None,
                 password: str = PASSWORD, timeout: float = 30.0):
        self.conn = _RecordingIMAP4(host, port, timeout=timeout)
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

    def noop(self) -> list[bytes]:
        """NOOP; returns the untagged lines it brought (EXPUNGE, EXISTS, FETCH, ...).

        Lines that arrived with earlier commands are not included. Raises if
        the session is gone or NOOP fails: a test that goes on after a state
        change learns both that the session survived and what it was told.
        """
        self.conn.untagged_lines.clear()
        typ, data = self.conn.noop()
        if typ != "OK":
            raise ImapCommandFailed(f"NOOP: {typ} {data}")
        lines = list(self.conn.untagged_lines)
        # imaplib keeps them by type too; drop those so they do not pile up
        self.conn.untagged_responses.clear()
        return lines

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


_SEQ_RE = re.compile(rb"^\* (\d+) (EXPUNGE|EXISTS|FETCH)\b(.*)$", re.I)
_FETCH_UID_RE = re.compile(rb"\bUID (\d+)", re.I)
_FETCH_FLAGS_RE = re.compile(rb"\bFLAGS \(([^)]*)\)", re.I)


class MailboxView:
    """The selected mailbox as a client knows it: only from what the server said.

    ``uids[i]`` is the UID of sequence number ``i + 1`` (None until a FETCH
    told it); ``flags`` maps UIDs to their last reported flags. ``expunged``
    lists the UIDs the client was told are gone (None for unknown ones), in
    order; ``violations`` what a client could not make sense of (a shrinking
    EXISTS, an EXPUNGE or FETCH beyond the message count).
    """

    def __init__(self, exists: int = 0):
        self.uids: list[int | None] = [None] * exists
        self.flags: dict[int, list[str]] = {}
        self.expunged: list[int | None] = []
        self.violations: list[str] = []

    def apply(self, line: bytes) -> None:
        m = _SEQ_RE.match(line)
        if not m:
            return
        n, kind, rest = int(m[1]), m[2].upper(), m[3]
        if kind == b"EXPUNGE":
            if not 1 <= n <= len(self.uids):
                self.violations.append(f"EXPUNGE {n} with {len(self.uids)} messages")
                return
            self.expunged.append(self.uids.pop(n - 1))
        elif kind == b"EXISTS":
            if n < len(self.uids):
                self.violations.append(f"EXISTS {n} after {len(self.uids)} without EXPUNGE")
                del self.uids[n:]
            self.uids.extend([None] * (n - len(self.uids)))
        else:
            if not 1 <= n <= len(self.uids):
                self.violations.append(f"FETCH {n} with {len(self.uids)} messages")
                return
            uid_m, flags_m = _FETCH_UID_RE.search(rest), _FETCH_FLAGS_RE.search(rest)
            if uid_m:
                self.uids[n - 1] = int(uid_m[1])
            uid = self.uids[n - 1]
            if flags_m and uid is not None:
                self.flags[uid] = flags_m[1].decode().split()


class IdleTimeout(AssertionError):
    """The server did not send what an ``IdleClient`` waited for in time."""


_EXISTS_RE = re.compile(rb"^\* (\d+) EXISTS\b", re.I)
_LITERAL_RE = re.compile(rb"\{(\d+)\+?\}$")


class IdleClient:
    """One raw-socket IMAP connection that can sit in IDLE and report what arrives.

    Every line read carries ``time.perf_counter()`` taken right after the
    ``recv`` that completed it, so callers can time notifications. Reads use
    ``select`` with a deadline; nothing is read in the background, so bytes
    the server sends while nobody reads wait in the socket (and get the time
    of the read that picks them up). ``exists`` follows every ``* N EXISTS``
    seen; ``seen`` keeps every untagged line as ``(time, line)``.
    """

    def __init__(self, host: str, port: int, user: str | None = None,
                 password: str = PASSWORD, timeout: float = 30.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        self._lines: deque[tuple[float, bytes]] = deque()
        self._tagno = 0
        self.idle_tag: str | None = None
        self.exists: int | None = None
        self.seen: list[tuple[float, bytes]] = []
        #: the selected mailbox as this client knows it (see ``select``)
        self.view: MailboxView | None = None
        _, greeting = self.read_line()
        if not greeting.startswith(b"* OK"):
            self.close()
            raise ImapCommandFailed(f"unexpected greeting {greeting!r}")
        if user is not None:
            self.login(user, password)

    # -- wire ----------------------------------------------------------------
    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data + b"\r\n")

    def _recv(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise IdleTimeout("timed out waiting for the server")
        ready, _, _ = select.select([self.sock], [], [], remaining)
        if not ready:
            raise IdleTimeout("timed out waiting for the server")
        chunk = self.sock.recv(65536)
        now = time.perf_counter()
        if not chunk:
            raise ConnectionError("IMAP server closed the connection")
        self._buf += chunk
        while True:
            line = self._take_line()
            if line is None:
                return
            self._lines.append((now, line))

    def _take_line(self) -> bytes | None:
        """Cut one complete response line (literals inlined) off the buffer, or None."""
        scan = 0
        while True:
            end = self._buf.find(b"\r\n", scan)
            if end < 0:
                return None
            m = _LITERAL_RE.search(self._buf[scan:end])
            if not m:
                line, self._buf = self._buf[:end], self._buf[end + 2:]
                return line
            scan = end + 2 + int(m[1])  # the literal, then the rest of the response
            if len(self._buf) < scan:
                return None

    def read_line(self, timeout: float | None = None) -> tuple[float, bytes]:
        """The next line (CRLF stripped; literals inlined) with its arrival time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._lines:
            self._recv(deadline)
        t, line = self._lines.popleft()
        if line.startswith(b"* "):
            self.seen.append((t, line))
            m = _EXISTS_RE.match(line)
            if m:
                self.exists = int(m[1])
            if self.view is not None:
                self.view.apply(line)
        return t, line

    def command(self, cmd: str, timeout: float | None = None) -> tuple[str, str, list[bytes]]:
        """Send a tagged command; returns (status, text, untagged lines)."""
        self._tagno += 1
        tag = f"i{self._tagno}"
        self.send(f"{tag} {cmd}")
        untagged = []
        while True:
            _, line = self.read_line(timeout)
            if line.startswith(tag.encode() + b" "):
                status, _, text = line[len(tag) + 1:].decode("utf-8", "replace").partition(" ")
                return status.upper(), text, untagged
            untagged.append(line)

    def command_ok(self, cmd: str, timeout: float | None = None) -> list[bytes]:
        status, text, untagged = self.command(cmd, timeout)
        if status != "OK":
            raise ImapCommandFailed(f"{cmd.split()[0]}: {status} {text}")
        return untagged

    def pipeline(self, cmds: list[str], timeout: float | None = None) -> list[str]:
        """Send all ``cmds`` at once, then collect their statuses (OK/NO/BAD), in order."""
        tags = []
        for cmd in cmds:
            self._tagno += 1
            tags.append(f"i{self._tagno}")
        self.sock.sendall(b"".join(f"{t} {c}\r\n".encode() for t, c in zip(tags, cmds)))
        status = {}
        while len(status) < len(tags):
            _, line = self.read_line(timeout)
            tag, _, rest = line.partition(b" ")
            if tag.decode(errors="replace") in tags:
                status[tag.decode()] = rest.split(b" ", 1)[0].decode().upper()
        return [status[t] for t in tags]

    # -- session -------------------------------------------------------------
    def login(self, user: str, password: str = PASSWORD) -> None:
        self.command_ok(f"LOGIN {quote(user)} {quote(password)}")

    def select(self, folder: str, readonly: bool = False) -> int:
        """SELECT (EXAMINE with ``readonly``); returns the message count (EXISTS).

        Starts a fresh ``view`` and fills in every UID and flag with a FETCH,
        as a client does when it opens a folder.
        """
        self.exists = None
        self.view = MailboxView()
        self.command_ok(f"{'EXAMINE' if readonly else 'SELECT'} {quote(folder)}")
        if self.exists is None:
            raise ImapCommandFailed(f"SELECT {folder}: no EXISTS in the answer")
        if self.exists:
            self.command_ok("FETCH 1:* (UID FLAGS)")
        return self.exists

    def noop(self) -> list[bytes]:
        """NOOP; returns the untagged lines it brought (the view follows them)."""
        return self.command_ok("NOOP")

    def server_uids(self) -> list[int]:
        """The UIDs the server has in this session, by sequence (``FETCH 1:* (UID)``).

        A non-UID FETCH never reports expunges, so this is the session's
        message list as the server keeps it for this client; ``check_view``
        compares it with what the client was told.
        """
        if not self.view or not self.view.uids:
            return []
        out: dict[int, int] = {}
        for line in self.command_ok("FETCH 1:* (UID)"):
            m = _SEQ_RE.match(line)
            uid_m = _FETCH_UID_RE.search(line)
            if m and m[2].upper() == b"FETCH" and uid_m:
                out[int(m[1])] = int(uid_m[1])
        return [out[n] for n in sorted(out)]

    def check_view(self) -> list[int]:
        """Asserts the client's view agrees with the server's session state
        and that nothing the server said was nonsense; returns the UIDs."""
        assert self.view is not None, "no mailbox selected"
        assert not self.view.violations, self.view.violations
        told = list(self.view.uids)  # before the FETCH below fills it in
        server = self.server_uids()
        assert len(server) == len(told), (server, told)
        assert all(t is None or t == s for t, s in zip(told, server)), (server, told)
        return server

    def idle(self, timeout: float | None = None) -> list[bytes]:
        """Send IDLE and wait for the continuation; returns untagged lines before it."""
        if self.idle_tag is not None:
            raise RuntimeError("already idling")
        self._tagno += 1
        tag = f"i{self._tagno}"
        self.send(f"{tag} IDLE")
        before = []
        while True:
            _, line = self.read_line(timeout)
            if line.startswith(b"+"):
                self.idle_tag = tag
                return before
            if line.startswith(tag.encode() + b" "):
                raise ImapCommandFailed(f"IDLE: {line!r}")
            before.append(line)

    def wait_exists(self, at_least: int, timeout: float) -> tuple[float, int]:
        """Read until ``* N EXISTS`` with N >= ``at_least``; returns (arrival time, N).

        Raises ``IdleTimeout`` (naming the untagged lines seen) if none arrives.
        """
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while True:
            try:
                t, line = self.read_line(max(0.0, deadline - time.monotonic()))
            except IdleTimeout:
                got = [ln for _, ln in self.seen[start:]]
                raise IdleTimeout(f"no * N EXISTS with N >= {at_least} within {timeout}s; "
                                  f"untagged lines meanwhile: {got!r}") from None
            m = _EXISTS_RE.match(line)
            if m and int(m[1]) >= at_least:
                return t, int(m[1])

    def wait_untagged(self, pattern: str | bytes, timeout: float) -> tuple[float, bytes]:
        """Read until an untagged line matches ``pattern`` (regex, case-insensitive)."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern, re.I)
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while True:
            try:
                t, line = self.read_line(max(0.0, deadline - time.monotonic()))
            except IdleTimeout:
                got = [ln for _, ln in self.seen[start:]]
                raise IdleTimeout(f"no untagged line matching {rx.pattern!r} within "
                                  f"{timeout}s; untagged lines meanwhile: {got!r}") from None
            if line.startswith(b"* ") and rx.search(line):
                return t, line

    def done(self, timeout: float | None = None) -> tuple[str, str, list[bytes]]:
        """End IDLE; returns (status, text, untagged lines that came before the tagged reply)."""
        if self.idle_tag is None:
            raise RuntimeError("not idling")
        tag, self.idle_tag = self.idle_tag, None
        self.send("DONE")
        untagged = []
        while True:
            _, line = self.read_line(timeout)
            if line.startswith(tag.encode() + b" "):
                status, _, text = line[len(tag) + 1:].decode("utf-8", "replace").partition(" ")
                return status.upper(), text, untagged
            untagged.append(line)

    def close(self) -> None:
        """LOGOUT (ending IDLE first) if the connection still works, then close."""
        try:
            if self.idle_tag is not None:
                self.done(timeout=5)
            self.command("LOGOUT", timeout=5)
        except (OSError, ConnectionError, IdleTimeout, ImapCommandFailed):
            pass
        finally:
            self.sock.close()

    def __enter__(self) -> "IdleClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

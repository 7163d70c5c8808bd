"""Fault-injection helpers for ``tests/test_faults.py`` (issue 6, item 3).

Owns the means of breaking things on purpose, and of counting afterwards:

* ``SmallFs``: a tiny tmpfs mounted over a directory (root only), which can be
  filled to the last byte with a ballast file, emptied again, grown, or
  mounted read-only; always unmounted on exit (after the processes using it
  were stopped; a busy mount is lazily detached as a last resort, never left);
* ``LoopExt4``: a loop-mounted ext4 image with ``errors=remount-ro`` that can be
  forced read-only under running writers (the kernel refuses a plain
  ``remount,ro`` while files are open for writing), then repaired;
* ``deliver_burst``: many LMTP deliveries over a few concurrent sessions that
  behave like an MTA: a temporary failure or a broken connection is retried
  on a fresh connection, and a failure after the message data was sent is
  recorded as *uncertain* (Dovecot may have stored it), because that is where
  a retry can legitimately produce a duplicate;
* ``stored_message_ids``: Message-ID -> number of stored copies, over IMAP,
  across all folders of a user;
* ``plugin_drop_warnings``: the plugin's "event dropped" log lines.

Nothing here starts Dovecot or the sidecar; the tests own those.
"""

from __future__ import annotations

import errno
import os
import re
import smtplib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .instance import DovecotInstance
from .lmtp import RcptResult


# --------------------------------------------------------------------------- small filesystems
def can_mount() -> bool:
    """True if this process may mount filesystems (root with CAP_SYS_ADMIN)."""
    return os.geteuid() == 0


class SmallFs:
    """A tmpfs of ``size`` bytes mounted over ``path`` (created if missing).

    ``uid``/``gid``/``mode`` set the owner and mode of the mount's root, so the
    mail uid can write where it must. Use as a context manager; ``close()``
    unmounts (retrying while busy, then detaching lazily) and is idempotent.
    """

    def __init__(self, path: Path, size: int, *, uid: int = 0, gid: int = 0,
                 mode: int = 0o755, read_only: bool = False):
        self.path = Path(path)
        self.size = size
        self.path.mkdir(parents=True, exist_ok=True)
        opts = f"size={size},mode={mode:o},uid={uid},gid={gid}"
        if read_only:
            opts += ",ro"
        _run(["mount", "-t", "tmpfs", "-o", opts, "coi-faults", str(self.path)])
        self.mounted = True
        self.ballast = self.path / ".ballast"

    def remount(self, *options: str) -> None:
        """``mount -o remount,<options>``, e.g. ``remount("ro")`` or ``remount("rw", "size=1m")``."""
        _run(["mount", "-o", ",".join(("remount",) + options), str(self.path)])

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> int:
        """Grow the ballast file until at most ``leave`` bytes are free; returns the ballast size."""
        with open(self.ballast, "ab") as f:
            while self.free_bytes() > leave:
                chunk = min(65536, self.free_bytes() - leave)
                try:
                    f.write(b"\0" * max(chunk, 1))
                    f.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        return self.ballast.stat().st_size

    def empty(self) -> None:
        """Remove the ballast: the space is back."""
        try:
            self.ballast.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if not self.mounted:
            return
        for _ in range(50):
            proc = subprocess.run(["umount", str(self.path)], capture_output=True, text=True)
            if proc.returncode == 0:
                self.mounted = False
                return
            time.sleep(0.1)
        # Still busy after 5 s: detach it so nothing stays mounted behind the test.
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
        self.mounted = False
        print(f"coi faults: {self.path} was busy; detached lazily", file=sys.stderr)

    def __enter__(self) -> "SmallFs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LoopExt4:
    """A small ext4 filesystem in an image file, loop-mounted over ``path`` with
    ``errors=remount-ro`` (root only).

    ``trigger_error()`` makes the kernel declare a filesystem error through
    ext4's own test hook (``/sys/fs/ext4/<dev>/trigger_fs_error``): the mount
    turns read-only at once, even for files already open for writing, exactly
    as after a real I/O error. ``repair()`` is what an operator does next:
    unmount, ``e2fsck -fy``, mount again (the processes using it must be
    stopped first). ``close()`` unmounts (the loop device is released
    automatically) and deletes the image; it is idempotent.
    """

    def __init__(self, path: Path, image: Path, size: int = 16 << 20, *, uid: int = 0,
                 gid: int = 0, mode: int = 0o755):
        self.path = Path(path)
        self.image = Path(image)
        self.uid, self.gid, self.mode = uid, gid, mode
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(size)
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)])
        self.mounted = False
        self._mount()

    def _mount(self) -> None:
        _run(["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path)])
        self.mounted = True
        os.chown(self.path, self.uid, self.gid)
        os.chmod(self.path, self.mode)
        lost = self.path / "lost+found"
        if lost.is_dir():
            lost.rmdir()

    @property
    def device(self) -> str:
        proc = subprocess.run(["findmnt", "-no", "SOURCE", str(self.path)], capture_output=True,
                              text=True, check=True)
        return Path(proc.stdout.strip()).name

    def options(self) -> str:
        proc = subprocess.run(["findmnt", "-no", "OPTIONS", str(self.path)], capture_output=True,
                              text=True)
        return proc.stdout.strip()

    def trigger_error(self) -> None:
        Path(f"/sys/fs/ext4/{self.device}/trigger_fs_error").write_text("coi fault injection\n")
        deadline = time.monotonic() + 5
        while "ro" not in self.options().split(",") and "emergency_ro" not in self.options():
            if time.monotonic() > deadline:
                raise OSError(f"{self.path} did not turn read-only: {self.options()}")
            time.sleep(0.02)

    def repair(self) -> None:
        self._umount()
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True)
        self._mount()

    def _umount(self) -> None:
        if not self.mounted:
            return
        for _ in range(50):
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode == 0:
                self.mounted = False
                return
            time.sleep(0.1)
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
        self.mounted = False
        print(f"coi faults: {self.path} was busy; detached lazily", file=sys.stderr)

    def close(self) -> None:
        self._umount()
        try:
            self.image.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "LoopExt4":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")


# --------------------------------------------------------------------------- MTA-like delivery
@dataclass
class BurstResult:
    """What ``deliver_burst`` saw."""

    #: index -> final result of every job
    final: dict[int, RcptResult] = field(default_factory=dict)
    #: indexes whose data was sent but whose outcome was not a clear answer
    #: (connection broke, or a 4xx after DATA): a retry may duplicate them.
    uncertain: set[int] = field(default_factory=set)
    #: temporary failures and broken connections that were retried
    retries: int = 0
    reconnects: int = 0
    seconds: float = 0.0

    def failed(self) -> dict[int, RcptResult]:
        return {i: r for i, r in self.final.items() if not r.ok}


def deliver_burst(dc: DovecotInstance, jobs: list[tuple[bytes, str]], connections: int = 4,
                  max_tries: int = 20, on_result=None, pause_between: float = 0.0) -> BurstResult:
    """Deliver ``(raw, user)`` jobs like an MTA: one transaction per job, job ``i``
    on connection ``i % connections``; 4xx answers and broken connections are
    retried (fresh connection, short back-off) up to ``max_tries`` times.

    ``on_result(i, result)`` is called after each final answer (from worker threads).
    """
    out = BurstResult()
    lock = threading.Lock()

    def session():
        for attempt in range(50):
            try:
                return dc.lmtp_session()
            except (smtplib.SMTPException, OSError):
                with lock:
                    out.reconnects += 1
                time.sleep(0.05 * (attempt + 1))
        return dc.lmtp_session()

    def worker(c: int) -> None:
        s = session()
        try:
            for i in range(c, len(jobs), connections):
                raw, user = jobs[i]
                rcpt = user if "@" in user else dc.address(user)
                for attempt in range(max_tries):
                    sent_data = False
                    try:
                        res = s.deliver(raw, [rcpt])[0]
                        sent_data = res.stage == "DELIVERY"
                    except (smtplib.SMTPException, OSError) as exc:
                        # Where did it break? If DATA had been accepted the
                        # message may be stored: remember that.
                        res = RcptResult(rcpt, 0, repr(exc), "CONNECTION")
                        sent_data = True
                    if res.ok:
                        break
                    with lock:
                        out.retries += 1
                        if sent_data:
                            out.uncertain.add(i)
                    try:
                        s.close()
                    except Exception:  # noqa: BLE001 - the connection is gone anyway
                        pass
                    time.sleep(0.05 * (attempt + 1))
                    s = session()
                with lock:
                    out.final[i] = res
                if on_result is not None:
                    on_result(i, res)
                if pause_between:
                    time.sleep(pause_between)
        finally:
            s.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(c,), daemon=True)
               for c in range(min(connections, len(jobs)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    out.seconds = time.monotonic() - t0
    if any(t.is_alive() for t in threads):
        raise TimeoutError("deliver_burst: workers did not finish within 300 s")
    return out


# --------------------------------------------------------------------------- counting
def stored_message_ids(dc: DovecotInstance, user: str) -> dict[str, int]:
    """Message-ID (without brackets) -> number of stored copies, all folders of ``user``."""
    counts: dict[str, int] = {}
    with dc.imap(user) as c:
        for entry in c.list_entries():
            if "\\Noselect" in entry.attrs or "\\NonExistent" in entry.attrs:
                continue
            if c.examine(entry.name) == 0:
                continue
            typ, data = c.conn.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            assert typ == "OK", f"FETCH {user}/{entry.name}: {typ} {data}"
            for item in data:
                if isinstance(item, tuple):
                    m = re.search(rb"Message-ID:\s*<([^>\r\n]*)>", item[1], re.IGNORECASE)
                    key = m[1].decode("utf-8", "replace") if m else ""
                    counts[key] = counts.get(key, 0) + 1
    return counts


DROP_WARNING = re.compile(r"coi: .*event dropped.*\((\d+) not yet reported\)")


def plugin_drop_warnings(dc: DovecotInstance, since: int = 0) -> list[str]:
    """The plugin's rate-limited "event dropped" warnings (at most one a minute per process)."""
    return [ln for ln in dc.log.lines(since) if "event dropped" in ln]

"""Reading the plugin's event spool directly (records separated by 0x1E).

Owns: a spool directory the mail processes can append to (made world-writable
under a fresh temp dir, since they run as another uid), and reading its
records back as dicts, with a bounded wait for records to appear.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def make_spool_dir(prefix: str = "coi-spool-") -> Path:
    """A new directory the mail processes can create ``events.log`` in.

    Not under pytest's tmp dir: that is 0700 root, and the mail processes
    run as an unprivileged uid. The caller removes ``path.parent``.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    spool = root / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    return spool


def spool_records(spool: Path) -> list[dict]:
    """Every record in every file of ``spool``, in file and append order."""
    out = []
    for f in sorted(spool.iterdir()):
        for chunk in f.read_bytes().split(b"\x1e"):
            if chunk.strip():
                out.append(json.loads(chunk))
    return out


def wait_records(spool: Path, pred, n: int = 1, timeout: float = 10.0) -> list[dict]:
    """The records matching ``pred`` once there are ``n`` (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in spool_records(spool) if pred(r)]
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def seen_moves(spool: Path, user: str) -> list[dict]:
    """The ``message`` records of seen-mode moves for ``user``."""
    return [r for r in spool_records(spool)
            if r.get("type") == "message" and r.get("origin") == "seen_move"
            and r.get("user", "").split("@")[0] == user]

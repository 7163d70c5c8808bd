"""Debian's isync (``mbsync``) as a real IMAP sync client of a test instance.

Owns: writing an mbsync configuration that syncs every folder of one user
both ways (new messages, flags, deletions, folder creation; expunges on both
sides) with a local Maildir, running it, and reading and changing that local
Maildir the way a local mail program would (marking a message read by
renaming its file, dropping a new message into a folder).

mbsync is installed by scripts/deps.sh (package ``isync``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .config import PASSWORD


def find_mbsync() -> str:
    path = shutil.which("mbsync")
    if path is None:
        raise AssertionError("mbsync not found: scripts/deps.sh installs Debian's isync")
    return path


class MbsyncClient:
    """One user's two-way sync between the instance and ``root/maildir``."""

    def __init__(self, root: Path, host: str, port: int, user: str, password: str = PASSWORD):
        self.root = root
        self.maildir = root / "maildir"
        self.maildir.mkdir(parents=True, exist_ok=True)
        self.conf = root / "mbsyncrc"
        self.log: list[str] = []
        self.conf.write_text("\n".join([
            "IMAPAccount account",
            f"Host {host}",
            f"Port {port}",
            f"User {user}",
            f"Pass {password}",
            "SSLType None",
            "AuthMechs LOGIN",
            "",
            "IMAPStore far",
            "Account account",
            "",
            "MaildirStore near",
            f"Path {self.maildir}/",
            f"Inbox {self.maildir}/INBOX",
            "SubFolders Verbatim",
            "",
            "Channel both",
            "Far :far:",
            "Near :near:",
            "Patterns *",
            "Create Both",
            "Expunge Both",
            "SyncState *",
            "Sync All",
            "",
        ]))
        self.conf.chmod(0o600)

    def sync(self, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """One ``mbsync both`` run; raises with its output if it fails."""
        proc = subprocess.run([find_mbsync(), "-c", str(self.conf), "both"],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, errors="replace")
        self.log.append(f"$ mbsync (exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            raise AssertionError(f"mbsync exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    # -- the local Maildir ---------------------------------------------------
    def folder_dir(self, folder: str) -> Path:
        return self.maildir / folder

    def folders(self) -> list[str]:
        """Local folders (directories with a cur/), by their IMAP names."""
        out = []
        for cur in sorted(self.maildir.rglob("cur")):
            rel = cur.parent.relative_to(self.maildir)
            out.append(str(rel).replace(os.sep, "/"))
        return out

    def files(self, folder: str) -> list[Path]:
        d = self.folder_dir(folder)
        return sorted(p for sub in ("cur", "new") for p in (d / sub).glob("*") if p.is_file())

    @staticmethod
    def flags_of(path: Path) -> str:
        name = path.name
        return name.split(":2,", 1)[1] if ":2," in name else ""

    @staticmethod
    def message_id(path: Path) -> str:
        head = re.split(rb"\r?\n\r?\n", path.read_bytes(), maxsplit=1)[0]
        m = re.search(rb"^Message-ID:\s*<?([^>\r\n]*)>?", head, re.I | re.M)
        return m[1].decode() if m else ""

    def message_ids(self, folder: str, trashed: bool = False) -> list[str]:
        """Message-IDs of the local folder, skipping messages flagged deleted (T)."""
        return sorted(self.message_id(p) for p in self.files(folder)
                      if trashed or "T" not in self.flags_of(p))

    def mark_seen(self, path: Path) -> Path:
        """Mark one local message read, as a Maildir mail reader does (rename)."""
        flags = self.flags_of(path)
        if "S" in flags:
            return path
        base = path.name.split(":2,", 1)[0]
        new_flags = "".join(sorted(flags + "S"))
        dest = path.parent.parent / "cur" / f"{base}:2,{new_flags}"
        path.rename(dest)
        return dest

    def add_message(self, folder: str, raw: bytes) -> Path:
        """Drop a new message into a local folder (made if missing), as a local
        program would: written in tmp/, then renamed into new/."""
        d = self.folder_dir(folder)
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.{os.getpid()}.coitest"
        tmp = d / "tmp" / name
        tmp.write_bytes(raw)
        dest = d / "new" / name
        tmp.rename(dest)
        return dest

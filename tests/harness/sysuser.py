"""The unprivileged identity that owns the test mailboxes.

As root, Dovecot refuses to access mail as uid 0, so the harness creates (once,
idempotently) a system user ``coitest`` and stores mail under its uid/gid. As an
ordinary user, mail simply belongs to the current uid/gid.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

MAIL_USER_NAME = "coitest"


@dataclass(frozen=True)
class MailIdentity:
    """Who owns the mail files and, when not root, runs all Dovecot services."""

    user: str
    group: str
    uid: int
    gid: int
    running_as_root: bool


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_mail_identity() -> MailIdentity:
    """Return the mail identity, creating the ``coitest`` system user as root if needed."""
    if not is_root():
        pw = pwd.getpwuid(os.geteuid())
        gr = grp.getgrgid(os.getegid())
        return MailIdentity(pw.pw_name, gr.gr_name, pw.pw_uid, gr.gr_gid, False)
    try:
        pw = pwd.getpwnam(MAIL_USER_NAME)
    except KeyError:
        proc = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--user-group",
             "--shell", "/usr/sbin/nologin", MAIL_USER_NAME],
            capture_output=True, text=True)
        # Exit 9 = "already exists" (a concurrent run created it meanwhile).
        if proc.returncode not in (0, 9):
            raise RuntimeError(f"useradd {MAIL_USER_NAME} failed: {proc.stderr.strip()}")
        pw = pwd.getpwnam(MAIL_USER_NAME)
    gr = grp.getgrgid(pw.pw_gid)
    return MailIdentity(pw.pw_name, gr.gr_name, pw.pw_uid, pw.pw_gid, True)


def chown_tree(root: Path, ident: MailIdentity, skip: tuple[Path, ...] = ()) -> None:
    """Give ``root`` and everything below it to the mail identity (no-op when not root)."""
    if not ident.running_as_root:
        return
    skip_set = {p.resolve() for p in skip}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d.resolve() in skip_set:
            dirnames[:] = []
            continue
        os.chown(d, ident.uid, ident.gid, follow_symlinks=False)
        dirnames[:] = [n for n in dirnames if (d / n).resolve() not in skip_set]
        for name in filenames:
            os.chown(d / name, ident.uid, ident.gid, follow_symlinks=False)

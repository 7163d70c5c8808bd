"""``doveadm`` wrappers for one instance (mailbox list/status/fetch, metadata, stop/reload).

Owns every doveadm invocation. Each call runs ``doveadm -c CONF ...`` with a
timeout and raises ``DoveadmError`` (with stderr) on a non-zero exit.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .paths import find_binary


class DoveadmError(AssertionError):
    def __init__(self, args: list[str], proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")


@dataclass
class Doveadm:
    conf_path: Path

    def run(self, *args: str, check: bool = True, timeout: float = 60.0,
            fmt: str | None = None) -> subprocess.CompletedProcess:
        argv = [find_binary("doveadm"), "-c", str(self.conf_path)]
        if fmt:
            argv += ["-f", fmt]
        argv += list(args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, errors="replace")
        if check and proc.returncode != 0:
            raise DoveadmError(argv, proc)
        return proc

    def dsync(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """``doveadm sync|backup ...``. Exit 2 ("Mailbox changes caused a
        desync. You may want to run dsync again", seen on 2.4 for a first
        two-way sync, e.g. "Remote lost mailbox GUID") is run once more, as
        the message says; any other failure raises."""
        proc = self.run(*args, check=False, timeout=timeout)
        if proc.returncode == 2:
            proc = self.run(*args, check=False, timeout=timeout)
        if proc.returncode != 0:
            raise DoveadmError(list(args), proc)
        return proc

    # -- mailboxes -----------------------------------------------------------
    def mailbox_list(self, user: str) -> list[str]:
        out = self.run("mailbox", "list", "-u", user).stdout
        return [line for line in out.splitlines() if line]

    def mailbox_status(self, user: str, fields: str = "messages",
                       mask: str = "*") -> dict[str, dict[str, str]]:
        """``mailbox status`` (non-selectable folders are skipped): folder -> {field: value}."""
        out = self.run("mailbox", "status", "-u", user, fields, mask, fmt="tab").stdout
        return _parse_tab(out, key="mailbox")

    def message_counts(self, user: str) -> dict[str, int]:
        """Folder -> number of messages, for every selectable folder of ``user``."""
        rows = self.mailbox_status(user, "messages", "*")
        return {box: int(row["messages"]) for box, row in rows.items()}

    def fetch(self, user: str, fields: str, query: list[str]) -> list[dict[str, str]]:
        """``doveadm fetch``: one dict per message, e.g. fields "mailbox uid flags hdr.subject"."""
        out = self.run("fetch", "-u", user, fields, *query, fmt="tab").stdout
        return _parse_tab(out)

    # -- METADATA ------------------------------------------------------------
    def metadata_set(self, user: str, key: str, value: str, mailbox: str = "",
                     server: bool = True) -> None:
        args = ["mailbox", "metadata", "set", "-u", user]
        if server:
            args.append("-s")
        self.run(*args, mailbox, key, value)

    def metadata_unset(self, user: str, key: str, mailbox: str = "", server: bool = True) -> None:
        args = ["mailbox", "metadata", "unset", "-u", user]
        if server:
            args.append("-s")
        self.run(*args, mailbox, key)

    def metadata_get(self, user: str, key: str, mailbox: str = "",
                     server: bool = True) -> str | None:
        args = ["mailbox", "metadata", "get", "-u", user]
        if server:
            args.append("-s")
        proc = self.run(*args, mailbox, key, fmt="tab")
        lines = [ln for ln in proc.stdout.splitlines() if ln]
        if len(lines) < 2:
            return None
        return lines[1]

    def enable_coi(self, user: str, message_filter: str = "active") -> None:
        from .imap import COI_ENABLED, COI_MESSAGE_FILTER
        self.metadata_set(user, COI_ENABLED, "yes")
        self.metadata_set(user, COI_MESSAGE_FILTER, message_filter)

    # -- process control -----------------------------------------------------
    def stop(self) -> subprocess.CompletedProcess:
        return self.run("stop", check=False, timeout=30)

    def reload(self) -> None:
        self.run("reload", timeout=30)


def other_maildir_args(dovecot_version: str, maildir: Path) -> list[str]:
    """``-o`` options that point a doveadm command at another Maildir of the
    same user (a dsync replica): 2.3's mail_location, 2.4's mail_driver and
    mail_path. Its location for ``doveadm sync`` is ``maildir:<path>`` on both."""
    if dovecot_version.startswith("2.4"):
        return ["-o", "mail_driver=maildir", "-o", f"mail_path={maildir}"]
    return ["-o", f"mail_location=maildir:{maildir}"]


def _parse_tab(out: str, key: str | None = None):
    lines = [ln for ln in out.splitlines() if ln]
    if not lines:
        return {} if key else []
    header = lines[0].split("\t")
    rows = [dict(zip(header, ln.split("\t"))) for ln in lines[1:]]
    if key is None:
        return rows
    return {r.get(key, ""): r for r in rows}

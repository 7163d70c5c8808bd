"""Real Delta Chat clients for the tests: the pinned core from PyPI, driven over JSON-RPC.

Owns finding the Delta Chat environment that ``scripts/deltachat-env.sh``
installs (a venv with ``deltachat-rpc-server`` and ``deltachat-rpc-client``,
both pinned to ``DELTACHAT_VERSION``), starting one ``deltachat-rpc-server``
process per ``DeltaChatCore`` (many accounts each, every one a separate
device), configuring accounts for a throwaway Dovecot (plain IMAP and SMTP on
loopback, an optional per-transport IMAP folder), and waiting for what a user
would see (messages, reactions, edits) with deadlines: the client library's
own event waits block forever.

A missing environment is an error naming the script that installs it, never a
skip (tests/README.md). The client library is imported from the venv's
site-packages into the test interpreter (both are Debian's python3); the
server binary runs as a child process whose pid we own and stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import PASSWORD

#: The Delta Chat core the tests pin (scripts/deltachat-env.sh installs it).
DELTACHAT_VERSION = "2.65.0"
#: How long a client may take to see a message that went through the relay.
WAIT = 60.0


class DeltaChatMissing(AssertionError):
    """The pinned Delta Chat environment is not installed."""


def default_venv() -> Path:
    """Where scripts/deltachat-env.sh puts the venv when ``COI_DELTACHAT_VENV`` is unset."""
    env = os.environ.get("COI_DELTACHAT_VENV")
    if env:
        return Path(env)
    cache = os.environ.get("COI_CACHE_DIR")
    if not cache:
        cache = "/var/cache/coi" if os.geteuid() == 0 else \
            os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "coi")
    return Path(cache) / f"deltachat-{DELTACHAT_VERSION}"


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise DeltaChatMissing(f"no site-packages in {venv}; run scripts/deltachat-env.sh")
    return found[0]


def load_client(venv: Path | None = None):
    """Import ``deltachat_rpc_client`` from the pinned venv; returns (module, server binary)."""
    venv = venv or default_venv()
    site = _site_packages(venv)
    server = site / "deltachat_rpc_server" / "deltachat-rpc-server"
    if not server.is_file():
        raise DeltaChatMissing(f"{server} missing; run scripts/deltachat-env.sh")
    if str(site) not in sys.path:
        sys.path.append(str(site))
    import deltachat_rpc_client as dc  # noqa: PLC0415 - lives in the venv
    return dc, server


def wait_until(what: str, cond: Callable[[], object], timeout: float = WAIT,
               diag: Callable[[], str] = lambda: "", interval: float = 0.1):
    """Poll ``cond`` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{diag()}")
        time.sleep(interval)


@dataclass(frozen=True)
class Server:
    """Where a Delta Chat transport connects: IMAP of the Dovecot, SMTP of the relay."""

    imap_port: int
    smtp_port: int
    host: str = "127.0.0.1"


class DeltaChatCore:
    """One ``deltachat-rpc-server`` process (one "app" holding several accounts)."""

    def __init__(self, root: Path, name: str = "core"):
        self.dc_module, self.server_bin = load_client()
        self.root = Path(root) / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / "rpc-server.log"
        self._log = None
        self.rpc = None
        self.manager = None

    def start(self) -> "DeltaChatCore":
        self._log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.rpc = self.dc_module.Rpc(accounts_dir=str(self.root / "accounts"),
                                      rpc_server_path=str(self.server_bin),
                                      stderr=self._log, env=env)
        self.rpc.start()
        self.manager = self.dc_module.DeltaChat(self.rpc)
        return self

    def close(self) -> None:
        if self.rpc is not None:
            proc = self.rpc.process
            try:
                self.rpc.close()
            finally:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()  # our own child, by its pid
                    proc.wait(timeout=10)
            self.rpc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "DeltaChatCore":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- {self.log_path}\n" + "\n".join(text[-lines:])

    def add_account(self, addr: str, server: Server, *, imap_folder: str | None = None,
                    displayname: str | None = None, password: str = PASSWORD,
                    config: dict[str, str] | None = None, start_io: bool = True):
        """A configured account on ``server`` (plain IMAP/SMTP), I/O started."""
        account = self.manager.add_account()
        if displayname:
            account.set_config("displayname", displayname)
        for key, value in (config or {}).items():
            account.set_config(key, value)
        params = {
            "addr": addr, "password": password,
            "imapServer": server.host, "imapPort": server.imap_port, "imapSecurity": "plain",
            "smtpServer": server.host, "smtpPort": server.smtp_port, "smtpSecurity": "plain",
            "certificateChecks": "automatic",
        }
        if imap_folder is not None:
            params["imapFolder"] = imap_folder
        account.add_or_update_transport(params)
        if start_io:
            account.bring_online()
        return account


def texts(chat) -> list[str]:
    """The texts of a chat's messages, oldest first (info messages included)."""
    return [m.get_snapshot().text for m in chat.get_messages()]


def find_message(account, chat, text: str):
    """The message of ``chat`` whose text is ``text`` (None if not there yet)."""
    for m in chat.get_messages():
        snap = m.get_snapshot()
        if snap.text == text:
            return m
    return None


def wait_message(account, chat_of: Callable[[], object], text: str, timeout: float = WAIT,
                 diag: Callable[[], str] = lambda: ""):
    """Wait until the chat returned by ``chat_of`` shows a message with ``text``."""
    def look():
        chat = chat_of()
        return chat is not None and find_message(account, chat, text)
    return wait_until(f"message {text!r} on account {account.id}", look, timeout, diag)

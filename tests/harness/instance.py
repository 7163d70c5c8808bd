"""``DovecotInstance``: one throwaway Dovecot on loopback, with its own temp dir.

Owns the lifecycle of a test Dovecot: temp tree (config, passwd-file, homes,
private ``mail_plugin_dir``), free ports, start (``dovecot -F -c CONF`` as a
child process, so its pid is ours), readiness wait, reload, and stop
(``doveadm -c CONF stop``, then wait for the master pid; only that pid is
killed if it will not exit). Every started instance is also stopped by an
``atexit`` safety net. Delivery helpers (LMTP, dovecot-lda), IMAP and doveadm
access hang off the instance for convenience.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path

from . import config as cfgmod
from .config import InstanceConfig, InstanceLayout, MAIL_DOMAIN
from .doveadm import Doveadm
from .imap import ImapClient
from .lmtp import DEFAULT_SENDER, LmtpSession, RcptResult, lmtp_deliver
from .logs import DovecotLog
from .paths import (PLUGIN_INSTALL_NAME, SYSTEM_MODULE_DIR, find_binary, find_lda,
                    plugin_disabled_for_debugging, plugin_so)
from .sysuser import MailIdentity, chown_tree, ensure_mail_identity

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

_live: "weakref.WeakSet[DovecotInstance]" = weakref.WeakSet()


def _stop_all_at_exit() -> None:
    for inst in list(_live):
        try:
            inst.stop()
        except Exception as exc:  # noqa: BLE001 - best effort at interpreter exit
            print(f"coi harness: stopping {inst.tmpdir} at exit failed: {exc}", file=sys.stderr)


atexit.register(_stop_all_at_exit)


def _proc_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    if stat[stat.rindex(")") + 2:].startswith("Z"):
        return None  # a zombie is gone for our purposes
    return stat[stat.index("(") + 1: stat.rindex(")")]


def _proc_identity(pid: int) -> tuple[str, int] | None:
    """(name, start time in clock ticks) of a live process: unlike the pid
    alone, this never matches a later process that reused the pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    if rest[0] == "Z":
        return None
    return stat[stat.index("(") + 1: stat.rindex(")")], int(rest[19])


def _pin(kids: list[tuple[int, str]]) -> list[tuple[int, tuple[str, int]]]:
    """Each (pid, name) with its start time, read now (see _proc_identity)."""
    return [(pid, ident) for pid, _ in kids if (ident := _proc_identity(pid)) is not None]


def _reap_orphans(pinned: list[tuple[int, tuple[str, int]]], timeout: float = 5.0) -> None:
    """Wait for the stopped master's former children; SIGKILL (by pid) any that linger.

    ``pinned`` comes from _pin() before the stop, so a pid that another
    process (another instance's imap-login, say) reuses meanwhile is never
    waited for nor signalled."""
    deadline = time.monotonic() + timeout
    alive = pinned
    while alive and time.monotonic() < deadline:
        alive = [(pid, ident) for pid, ident in alive if _proc_identity(pid) == ident]
        if alive:
            time.sleep(0.05)
    for pid, ident in alive:
        if _proc_identity(pid) == ident:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class PluginMissing(AssertionError):
    """The plugin .so to test does not exist (yet)."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class LdaResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class DovecotInstance:
    """A private Dovecot master with IMAP and LMTP on free loopback ports.

    Use as a context manager, or call ``start()``/``stop()`` yourself. Keyword
    arguments are the fields of ``InstanceConfig`` (plugin, sieve,
    plugin_settings, sieve_before, separator, mail_debug,
    lmtp_save_to_detail_mailbox, mail_location, extra_config, users).
    """

    host = "127.0.0.1"
    domain = MAIL_DOMAIN

    def __init__(self, *, keep_tmp: bool | None = None, **config):
        self.config = InstanceConfig(**config)
        if plugin_disabled_for_debugging():
            self.config.plugin = False
        self.ident: MailIdentity = ensure_mail_identity()
        imap_port, lmtp_port = free_ports(2)
        tmpdir = Path(tempfile.mkdtemp(prefix="dovetest-"))
        self.layout = InstanceLayout(tmpdir, imap_port, lmtp_port)
        self.keep_tmp = keep_tmp if keep_tmp is not None else bool(os.environ.get("COI_KEEP_TMP"))
        #: Set by the test fixtures when a test that used this instance failed.
        self.failed = False
        self.proc: subprocess.Popen | None = None
        self.log = DovecotLog(self.layout.log_path)
        self.doveadm = Doveadm(self.layout.conf_path)
        try:
            self._build_tree()
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise

    # -- convenient paths ----------------------------------------------------
    @property
    def tmpdir(self) -> Path:
        return self.layout.tmpdir

    @property
    def conf_path(self) -> Path:
        return self.layout.conf_path

    @property
    def imap_port(self) -> int:
        return self.layout.imap_port

    @property
    def lmtp_port(self) -> int:
        return self.layout.lmtp_port

    @property
    def log_path(self) -> Path:
        return self.layout.log_path

    @property
    def users(self) -> list[str]:
        return list(self.config.users)

    def home(self, user: str) -> Path:
        return self.layout.home(user)

    def maildir(self, user: str) -> Path:
        return self.home(user) / "Maildir"

    def address(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def chats_folder(self, root: str = "COI") -> str:
        """The chat folder name as IMAP shows it, e.g. ``COI/Chats`` or ``COI.Chats``."""
        return f"{root}{self.config.separator}Chats"

    # -- building the temp tree ----------------------------------------------
    def _build_tree(self) -> None:
        lay = self.layout
        lay.tmpdir.chmod(0o755)
        (lay.tmpdir / "home").mkdir()
        for user in self.config.users:
            self._make_home(user)
        self._build_module_dir()
        lay.sieve_before_path.parent.mkdir()
        lay.log_path.touch()
        lay.log_path.chmod(0o666)  # dovecot-lda writes it after dropping to the mail uid
        self._write_files()
        chown_tree(lay.tmpdir, self.ident, skip=(lay.module_dir,))
        if self.ident.running_as_root:
            os.chown(lay.tmpdir, 0, 0)
            os.chown(lay.conf_path, 0, 0)
            os.chown(lay.log_path, 0, 0)

    def _make_home(self, user: str) -> None:
        home = self.home(user)
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        if self.ident.running_as_root:
            os.chown(home, self.ident.uid, self.ident.gid)

    def _build_module_dir(self) -> None:
        mod = self.layout.module_dir
        mod.mkdir()
        mod.chmod(0o755)
        if not SYSTEM_MODULE_DIR.is_dir():
            raise FileNotFoundError(f"Dovecot module dir {SYSTEM_MODULE_DIR} missing")
        for entry in sorted(SYSTEM_MODULE_DIR.iterdir()):
            if entry.name == PLUGIN_INSTALL_NAME:
                continue
            (mod / entry.name).symlink_to(entry)
        if self.config.plugin:
            self.install_plugin()

    def install_plugin(self, so: Path | None = None) -> Path:
        """Copy the plugin build into the private module dir as lib95_coi_plugin.so.

        Written to a temp name and renamed, so a running process never sees a
        half-written file (DESIGN §2). Raises ``PluginMissing`` if there is no build.
        """
        src = Path(so) if so else plugin_so()
        if not src.is_file():
            raise PluginMissing(
                f"plugin build {src} does not exist; build it (cargo build --release) "
                "or point COI_PLUGIN_SO at it")
        dst = self.layout.module_dir / PLUGIN_INSTALL_NAME
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        tmp.chmod(0o644)
        os.replace(tmp, dst)
        return dst

    def _write_files(self) -> None:
        lay, cfg = self.layout, self.config
        lay.conf_path.write_text(cfgmod.render(cfg, lay, self.ident))
        lay.passwd_path.write_text(cfgmod.render_passwd(cfg, lay, self.ident))
        lay.passwd_path.chmod(0o644)
        if cfg.sieve_before is not None:
            lay.sieve_before_path.write_text(cfg.sieve_before)
            self._chown_mail(lay.sieve_before_path.parent, lay.sieve_before_path)

    def _chown_mail(self, *paths: Path) -> None:
        if self.ident.running_as_root:
            for p in paths:
                os.chown(p, self.ident.uid, self.ident.gid)

    def add_user(self, user: str, **userdb_fields: str) -> None:
        """Add a user to a running instance.

        Dovecot's auth re-reads the passwd-file at most once per second, so
        this waits (bounded) until ``doveadm user`` resolves the new user.
        Prefer declaring users up front (``users=``): that costs nothing.
        """
        self.config.users = {**self.config.users, user: dict(userdb_fields)}
        self._make_home(user)
        tmp = self.layout.passwd_path.with_suffix(".new")
        tmp.write_text(cfgmod.render_passwd(self.config, self.layout, self.ident))
        tmp.chmod(0o644)
        os.replace(tmp, self.layout.passwd_path)
        if self.proc is None:
            return
        deadline = time.monotonic() + 10
        while self.doveadm.run("user", user, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Dovecot auth does not know new user {user!r}")
            time.sleep(0.2)

    def write_user_sieve(self, user: str, script: str) -> None:
        """Install ``script`` as the user's active Sieve script (~/.dovecot.sieve)."""
        home = self.home(user)
        sdir = home / "sieve"
        sdir.mkdir(exist_ok=True)
        path = sdir / "main.sieve"
        path.write_text(script)
        link = home / ".dovecot.sieve"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("sieve/main.sieve")
        for p in (sdir, path):
            self._chown_mail(p)
        if self.ident.running_as_root:
            os.chown(link, self.ident.uid, self.ident.gid, follow_symlinks=False)

    def maildir_folder_path(self, user: str, folder: str) -> Path:
        """On-disk directory of ``folder`` (Maildir++ layout: ``.A.B``; INBOX is the root)."""
        if folder.upper() == "INBOX":
            return self.maildir(user)
        return self.maildir(user) / ("." + folder.replace(self.config.separator, "."))

    def block_folder_with_file(self, user: str, folder: str) -> Path:
        """Make ``folder`` unusable: replace its maildir directory by a regular file.

        Also drops the mailbox list index so Dovecot does not trust a cached
        view of the folder. Dovecot itself answers a save into such a folder
        with a temporary failure ("Not a directory"), not a not-found error.
        """
        path = self.maildir_folder_path(user, folder)
        if path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("this regular file blocks the maildir folder\n")
        self._chown_mail(path)
        for idx in self.maildir(user).glob("dovecot.list.index*"):
            idx.unlink()
        return path

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "DovecotInstance":
        if self.proc is not None:
            return self
        dovecot = find_binary("dovecot")
        self._stderr_path = self.tmpdir / "dovecot.stderr"
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [dovecot, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
        _live.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                _live.discard(self)
                self.failed = True
                raise RuntimeError(
                    f"dovecot exited with {rc} during startup (config {self.conf_path}):\n"
                    f"{self._stderr_path.read_text(errors='replace')}\n"
                    f"--- log tail ---\n{self.log.tail()}")
            # The master binds its listeners before it writes master.pid:
            # "started" means both, or a stop right away finds no pid.
            if (_port_open(self.imap_port) and _port_open(self.lmtp_port)
                    and self.master_pid() is not None):
                return self
            if time.monotonic() > deadline:
                self.failed = True
                self.stop()
                raise TimeoutError(f"dovecot did not open ports {self.imap_port}/"
                                   f"{self.lmtp_port} within {START_TIMEOUT}s")
            time.sleep(0.05)

    def master_pid(self) -> int | None:
        try:
            return int((self.layout.base_dir / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the master (doveadm stop, wait, kill our pid only if needed); idempotent."""
        proc = self.proc
        kids: list[tuple[int, tuple[str, int]]] = []
        if proc is not None and proc.poll() is None:
            kids = _pin(self.child_processes())
            try:
                self.doveadm.stop()
            except Exception:  # noqa: BLE001 - fall back to signalling our own child
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.proc = None
        _live.discard(self)
        _reap_orphans(kids)
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if not self.tmpdir.exists():
            return
        if self.keep_tmp or self.failed:
            print(f"coi harness: kept Dovecot temp dir {self.tmpdir}", file=sys.stderr)
            return
        for _ in range(20):
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            if not self.tmpdir.exists():
                return
            time.sleep(0.1)
        print(f"coi harness: could not remove {self.tmpdir}", file=sys.stderr)

    def child_processes(self) -> list[tuple[int, str]]:
        """(pid, name) of the master's direct children, from /proc."""
        master = self.master_pid()
        out = []
        if master is None:
            return out
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1: stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == master:
                out.append((int(entry), comm))
        return sorted(out)

    def reload(self) -> None:
        """``doveadm reload``; returns once the old generation of processes is gone.

        Right after a reload, an old lmtp process may still accept a connection
        and answer "421 Shutting down", or serve it with the old config. So wait
        until every pre-reload child except anvil and log (which survive) has
        exited, then until the listeners answer. Close your own connections first.
        """
        old = {pid for pid, name in self.child_processes() if name not in ("anvil", "log")}
        self.doveadm.reload()
        deadline = time.monotonic() + START_TIMEOUT
        while old & {pid for pid, _ in self.child_processes()}:
            if time.monotonic() > deadline:
                raise TimeoutError(f"old Dovecot processes still alive after reload: {old}")
            time.sleep(0.02)
        while not (_port_open(self.imap_port) and _port_open(self.lmtp_port)):
            if time.monotonic() > deadline:
                raise TimeoutError("dovecot listeners did not come back after reload")
            time.sleep(0.05)

    def reconfigure(self, **changes) -> None:
        """Change config fields, rewrite the files (and plugin copy), reload if running."""
        self.config = replace(self.config, **changes)
        if plugin_disabled_for_debugging():
            self.config.plugin = False
        if self.config.plugin and not (self.layout.module_dir / PLUGIN_INSTALL_NAME).exists():
            self.install_plugin()
        self._write_files()
        if self.proc is not None:
            self.reload()

    def __enter__(self) -> "DovecotInstance":
        try:
            return self.start()
        except BaseException:
            self.failed = True
            self.stop()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.failed = True
        self.stop()

    # -- delivery ------------------------------------------------------------
    def rcpt(self, user: str, detail: str | None = None) -> str:
        return f"{user}+{detail}@{self.domain}" if detail else self.address(user)

    def lmtp_deliver(self, msg: bytes, rcpts: list[str], sender: str = DEFAULT_SENDER
                     ) -> list[RcptResult]:
        """One LMTP transaction; bare user names are turned into addresses."""
        rcpts = [r if "@" in r else self.address(r) for r in rcpts]
        return lmtp_deliver(self.host, self.lmtp_port, msg, rcpts, sender)

    def lmtp_session(self) -> LmtpSession:
        return LmtpSession(self.host, self.lmtp_port)

    def lmtp_deliver_parallel(self, jobs: list[tuple[bytes, str]], connections: int = 4,
                              on_result=None) -> list[RcptResult]:
        """Deliver ``(msg, rcpt)`` jobs over ``connections`` concurrent LMTP sessions.

        One transaction (one RCPT) per job; job ``i`` goes over connection
        ``i % connections``. Returns the results in job order. ``on_result(i,
        result)`` is called as each finishes (from the worker threads). A
        connection that breaks reports its remaining jobs as code 0.
        """
        return self.lmtp_deliver_timed(jobs, connections, on_result)[0]

    def lmtp_deliver_timed(self, jobs: list[tuple[bytes, str]], connections: int = 4,
                           on_result=None) -> tuple[list[RcptResult], float]:
        """:meth:`lmtp_deliver_parallel`, also returning the seconds the deliveries
        took: sessions are connected first, then all start together (benchmarks)."""
        jobs = [(raw, r if "@" in r else self.address(r)) for raw, r in jobs]
        results: list[RcptResult | None] = [None] * len(jobs)
        n_conn = min(connections, len(jobs))
        start = threading.Barrier(n_conn + 1)

        def worker(c: int) -> None:
            mine = range(c, len(jobs), connections)
            session = None
            try:
                session = self.lmtp_session()
            except Exception as exc:  # noqa: BLE001 - reported as failed results
                error = exc
            start.wait()
            try:
                if session is None:
                    raise error
                with session as s:
                    for i in mine:
                        raw, rcpt = jobs[i]
                        results[i] = s.deliver(raw, [rcpt])[0]
                        if on_result is not None:
                            on_result(i, results[i])
            except Exception as exc:  # noqa: BLE001 - reported as failed results
                for i in mine:
                    if results[i] is None:
                        results[i] = RcptResult(jobs[i][1], 0, repr(exc), "CONNECTION")

        threads = [threading.Thread(target=worker, args=(c,), daemon=True)
                   for c in range(n_conn)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        return [r for r in results if r is not None], elapsed

    def lda_deliver(self, user: str, msg: bytes, sender: str = DEFAULT_SENDER,
                    extra_args: tuple[str, ...] = (), timeout: float = 60.0) -> LdaResult:
        """Run ``dovecot-lda -c CONF -d USER -f SENDER`` with the message on stdin."""
        argv = [find_lda(), "-c", str(self.conf_path), "-d", user, "-f", sender, *extra_args]
        proc = subprocess.run(argv, input=msg, capture_output=True, timeout=timeout)
        return LdaResult(proc.returncode, proc.stdout.decode(errors="replace"),
                         proc.stderr.decode(errors="replace"))

    # -- access --------------------------------------------------------------
    def imap(self, user: str | None = None) -> ImapClient:
        """A new IMAP connection, logged in as ``user`` if given."""
        return ImapClient(self.host, self.imap_port, user)

    def folders(self, user: str, strict: bool = True) -> dict:
        """All folders of ``user`` with their messages, over IMAP (see fetch_all_folders)."""
        with self.imap(user) as c:
            return c.fetch_all_folders(strict=strict)

    def enable_coi(self, user: str, message_filter: str | None = "active") -> None:
        """SETMETADATA enabled=yes (+ message-filter) over IMAP, as a COI client would."""
        with self.imap(user) as c:
            c.enable_coi(message_filter)

    def log_text(self, since: int = 0) -> str:
        return self.log.text(since)

    def assert_no_panic_or_fatal(self, since: int = 0) -> None:
        self.log.assert_no_panic_or_fatal(since)

    def __repr__(self) -> str:
        return (f"<DovecotInstance {self.tmpdir} imap={self.imap_port} lmtp={self.lmtp_port} "
                f"plugin={self.config.plugin} sieve={self.config.sieve_loaded}>")

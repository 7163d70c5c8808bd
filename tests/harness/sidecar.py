"""``SidecarProcess``: the real ``coi-sidecar`` daemon as a child process of the tests.

Owns the sidecar side of the event tests: a private tree (``spool/``,
``state/``, ``run/events.sock``, ``sidecar.toml``, ``sidecar.log``), rendering
the TOML config (spool, socket, state dir, metrics on a free loopback port,
webhooks with short retry schedules), start (wait for ``/healthz``), SIGKILL,
graceful stop (SIGTERM, wait, then SIGKILL of our own pid only), restart with
the same state, the ``check-config``/``dead-letters`` commands, scraping and
parsing ``/metrics`` with a Prometheus text-format parser
(``prometheus_client.parser``, Debian ``python3-prometheus-client``), and
reading the daemon's peak RSS. Every started process is also stopped by an
``atexit`` safety net.

The tree is created so that the plugin, running in Dovecot's delivering
processes as the mail uid, can append to the spool and ring the socket: the
spool directory is owned by the mail uid (group-writable; owned by the mail
uid when run as root), the socket has mode 0666.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .instance import free_ports
from .paths import REPO_ROOT
from .sysuser import MailIdentity, ensure_mail_identity

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
#: The test vector secret of DESIGN §5 (any whsec_ secret works).
TEST_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

_live: "weakref.WeakSet[SidecarProcess]" = weakref.WeakSet()


def _stop_all_at_exit() -> None:
    for sc in list(_live):
        try:
            sc.kill()
        except Exception as exc:  # noqa: BLE001 - best effort at interpreter exit
            print(f"coi harness: killing sidecar {sc.pid} at exit failed: {exc}",
                  file=sys.stderr)


atexit.register(_stop_all_at_exit)


class SidecarMissing(AssertionError):
    """The coi-sidecar binary to test does not exist (yet)."""


def sidecar_bin() -> Path:
    """``$COI_SIDECAR_BIN`` or ``target/release/coi-sidecar``; missing is an error."""
    env = os.environ.get("COI_SIDECAR_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "release" / "coi-sidecar"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise SidecarMissing(f"sidecar binary {path} does not exist; build it "
                             "(cargo build --release -p coi-sidecar) or set COI_SIDECAR_BIN")
    return path


def _toml(value) -> str:
    """A TOML value for str/bool/int/float/list (JSON string escapes are valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


@dataclass
class Webhook:
    """One ``[[webhook]]`` endpoint of the test config (short retries by default)."""

    name: str
    url: str
    secrets: Sequence[str] = (TEST_SECRET,)
    kinds: Sequence[str] = ()
    folders: Sequence[str] = ()
    format: str = "standard"
    timeout_secs: int = 5
    concurrency: int = 4
    retry_schedule_secs: Sequence[int] = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    deadline_secs: int = 600

    def render(self) -> str:
        keys = ["name", "url", "secrets", "kinds", "folders", "format", "timeout_secs",
                "concurrency", "retry_schedule_secs", "deadline_secs"]
        return "[[webhook]]\n" + "".join(f"{k} = {_toml(getattr(self, k))}\n" for k in keys)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict
    value: float


@dataclass
class Metrics:
    """One parsed ``/metrics`` scrape."""

    text: str
    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        from prometheus_client.parser import text_string_to_metric_families
        m = cls(text)
        for fam in text_string_to_metric_families(text):
            m.types[fam.name] = fam.type
            for s in fam.samples:
                m.samples.append(Sample(s.name, dict(s.labels), float(s.value)))
        return m

    def names(self) -> set[str]:
        return {s.name for s in self.samples}

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.samples)

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples named ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.samples:
            if s.name == name and label in s.labels:
                out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
        return out

    def histogram(self, name: str) -> tuple[list[tuple[float, float]], float, float]:
        """(cumulative buckets [(le, count)], count, sum) of an unlabelled histogram."""
        buckets = sorted((float(s.labels["le"]), s.value) for s in self.samples
                         if s.name == name + "_bucket")
        return buckets, self.value(name + "_count"), self.value(name + "_sum")

    def histogram_quantile(self, name: str, q: float) -> float:
        """Prometheus-style quantile estimate (linear within the bucket)."""
        buckets, count, _ = self.histogram(name)
        if not count:
            return float("nan")
        rank = q * count
        prev_le, prev_c = 0.0, 0.0
        for le, c in buckets:
            if c >= rank:
                if le == float("inf"):
                    return prev_le
                if c == prev_c:
                    return le
                return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
            prev_le, prev_c = le, c
        return prev_le


class SidecarProcess:
    """The real daemon with a private tree; not started until ``start()``.

    Create it before the Dovecot instance and pass ``plugin_settings()`` to
    it, so the plugin writes into this sidecar's spool.
    """

    def __init__(self, webhooks: Iterable[Webhook] = (), *, root: Path | None = None,
                 scan_interval_ms: int = 200, rotate_bytes: int = 1 << 20,
                 socket_mode: str = "0666", allowed_uids: Sequence[int] = (),
                 allowed_gids: Sequence[int] = (), log_level: str = "info",
                 shutdown_grace_secs: int = 2, allow_private_addresses: bool = True,
                 commit_window_ms: int | None = None,
                 commit_window_max_ms: int | None = None, keep_tmp: bool | None = None,
                 extra_toml: str = "", command: str = "run"):
        self.binary = sidecar_bin()
        self.ident: MailIdentity = ensure_mail_identity()
        self.webhooks = list(webhooks)
        self.scan_interval_ms = scan_interval_ms
        self.rotate_bytes = rotate_bytes
        self.socket_mode = socket_mode
        self.allowed_uids = list(allowed_uids)
        self.allowed_gids = list(allowed_gids)
        self.log_level = log_level
        self.shutdown_grace_secs = shutdown_grace_secs
        self.allow_private_addresses = allow_private_addresses
        #: ``spool_commit_window_ms`` (None: the sidecar's default).
        self.commit_window_ms = commit_window_ms
        #: ``spool_commit_window_max_ms`` (None: the sidecar's default).
        self.commit_window_max_ms = commit_window_max_ms
        #: TOML sections appended to the config (e.g. ``[queue]``/``[jetstream]``).
        self.extra_toml = extra_toml
        #: ``run`` or ``dispatch`` (fleet mode).
        self.command = command
        self.keep_tmp = keep_tmp if keep_tmp is not None else bool(os.environ.get("COI_KEEP_TMP"))
        self.failed = False
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="coisc-"))
        self.root.chmod(0o755)
        self.spool_dir = self.root / "spool"
        self.state_dir = self.root / "state"
        self.run_dir = self.root / "run"
        self.socket_path = self.run_dir / "events.sock"
        self.config_path = self.root / "sidecar.toml"
        self.log_path = self.root / "sidecar.log"
        for d in (self.spool_dir, self.state_dir, self.run_dir):
            d.mkdir(exist_ok=True)
        self.run_dir.chmod(0o755)
        # The mail uid appends here; the sidecar (us, possibly root) reads,
        # renames and deletes.
        self.spool_dir.chmod(0o775)
        if self.ident.running_as_root:
            os.chown(self.spool_dir, self.ident.uid, self.ident.gid)
        self.metrics_port = free_ports(1)[0]
        self.proc: subprocess.Popen | None = None
        #: pids of every process this object started (for the record).
        self.pids: list[int] = []
        self.write_config()

    # -- config ---------------------------------------------------------------
    def plugin_settings(self) -> dict[str, str]:
        """Plugin settings that make Dovecot's plugin emit into this sidecar."""
        return {"coi_spool_path": str(self.spool_dir),
                "coi_sidecar_socket": str(self.socket_path)}

    def render_config(self) -> str:
        out = [
            "# Generated by tests/harness/sidecar.py",
            f"spool_dir = {_toml(self.spool_dir)}",
            f"spool_rotate_bytes = {self.rotate_bytes}",
            f"spool_scan_interval_ms = {self.scan_interval_ms}",
            *([f"spool_commit_window_ms = {self.commit_window_ms}"]
              if self.commit_window_ms is not None else []),
            *([f"spool_commit_window_max_ms = {self.commit_window_max_ms}"]
              if self.commit_window_max_ms is not None else []),
            f"state_dir = {_toml(self.state_dir)}",
            "",
            "[socket]",
            f"path = {_toml(self.socket_path)}",
            f"mode = {_toml(self.socket_mode)}",
            f"allowed_uids = {_toml(self.allowed_uids)}",
            f"allowed_gids = {_toml(self.allowed_gids)}",
            "",
            "[metrics]",
            f"listen = {_toml(f'127.0.0.1:{self.metrics_port}')}",
            "",
            "[logging]",
            'format = "text"',
            f"level = {_toml(self.log_level)}",
            "",
            "[delivery]",
            f"allow_private_addresses = {_toml(self.allow_private_addresses)}",
            f"shutdown_grace_secs = {self.shutdown_grace_secs}",
            "",
        ]
        out += [w.render() for w in self.webhooks]
        if self.extra_toml:
            out.append(self.extra_toml)
        return "\n".join(out) + "\n"

    def write_config(self) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(self.render_config())
        os.replace(tmp, self.config_path)

    # -- lifecycle ---------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> "SidecarProcess":
        """Start the daemon and wait until ``/healthz`` answers 200."""
        if self.running:
            return self
        self.write_config()
        with open(self.log_path, "ab") as log:
            log.write(f"--- coi harness: starting {self.binary} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(self.binary), self.command, "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pids.append(self.proc.pid)
        _live.add(self)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                _live.discard(self)
                self.failed = True
                raise RuntimeError(f"coi-sidecar exited with {rc} during startup "
                                   f"(config {self.config_path}):\n{self.log_tail()}")
            try:
                status, body = self.get("/healthz", timeout=1.0)
                if status == 200:
                    return self
                last = f"{status} {body.strip()[:200]}"
            except OSError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                self.failed = True
                self.kill()
                raise TimeoutError(f"coi-sidecar not healthy within {timeout}s "
                                   f"(last /healthz: {last}):\n{self.log_tail()}")
            time.sleep(0.02)

    def kill(self) -> int | None:
        """SIGKILL our process (by pid) and reap it; returns its exit status."""
        proc, self.proc = self.proc, None
        _live.discard(self)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"coi harness: sidecar {proc.pid} ignored SIGTERM for {timeout}s; "
                      "killing it", file=sys.stderr)
                return self.kill()
        self.proc = None
        _live.discard(self)
        return proc.returncode

    def restart(self) -> "SidecarProcess":
        """Stop gracefully and start again with the same state dir."""
        self.stop()
        return self.start()

    def signal(self, sig: int) -> None:
        if self.proc is None:
            raise RuntimeError("sidecar is not running")
        self.proc.send_signal(sig)

    def close(self) -> None:
        """Stop the daemon and remove the tree (kept when ``failed``/``keep_tmp``)."""
        try:
            self.stop()
        finally:
            if self.keep_tmp or self.failed:
                print(f"coi harness: kept sidecar dir {self.root}", file=sys.stderr)
            else:
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "SidecarProcess":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.failed = True
        self.close()

    # -- commands ------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """``coi-sidecar ARGS --config CONF`` to completion (text output)."""
        return subprocess.run([str(self.binary), *args, "--config", str(self.config_path)],
                              capture_output=True, text=True, timeout=timeout)

    # -- HTTP: /healthz and /metrics ---------------------------------------------------
    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def healthz(self) -> tuple[int, str]:
        return self.get("/healthz")

    def metrics_text(self) -> str:
        status, body = self.get("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}: {body[:300]}")
        return body

    def metrics(self) -> Metrics:
        return Metrics.parse(self.metrics_text())

    # -- process facts ---------------------------------------------------------------
    def proc_status(self) -> dict[str, str]:
        if self.proc is None:
            return {}
        out = {}
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    out[k] = v.strip()
        except OSError:
            pass
        return out

    def rss_kib(self, field_name: str = "VmHWM") -> int:
        """``VmHWM`` (peak RSS) or ``VmRSS`` of the running daemon, in KiB."""
        v = self.proc_status().get(field_name, "0 kB")
        return int(v.split()[0])

    # -- diagnostics -------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_text().splitlines()
        return f"--- sidecar log {self.log_path} (last {n} lines)\n" + "\n".join(lines[-n:])

    def spool_files(self) -> list[tuple[str, int]]:
        return sorted((p.name, p.stat().st_size) for p in self.spool_dir.iterdir())

    def __repr__(self) -> str:
        return (f"<SidecarProcess {self.root} pid={self.pid} metrics=127.0.0.1:"
                f"{self.metrics_port}>")

#!/usr/bin/python3
"""The floor of a durable event intake: a process that only fsyncs (issue 18).

Owns variants F and Fw of ``bench/pipeline_cost.py``: bound to the doorbell
socket the plugin rings after each append, it does nothing with the spool
but append 64 bytes to its own file on the same disk and ``fdatasync`` it:

* ``--window-ms 0``: once per doorbell, i.e. once per event (what an intake
  that commits every event durably cannot go below);
* ``--window-ms N``: at most once per N ms while doorbells keep coming (what
  the sidecar's group commit cannot go below with the same window).

Everything the real sidecar does beyond that (reading the spool, SQLite,
HTTP, signing) is absent, so Dovecot's rate with this process running is the
ceiling any durable sidecar can reach on the machine.

With ``--forward URL --spool DIR`` (variant Fh) it also does the least a
webhook forwarder must: after each sync it reads the complete records that
appeared in ``DIR/events.log`` and POSTs each, as it is, in order, over one
kept-alive HTTP/1.1 connection (a pre-built request head, the body, then the
fixed-size answer of ``bench/lean_receiver.py``): no queue, no signing, no
JSON, no concurrency. Dovecot's rate with this running is the ceiling of any
implementation that keeps the promise (durable before acknowledged, one
request per event) on the same machine.

On SIGTERM it prints ``fsyncs=<n> doorbells=<n> forwarded=<n>`` and removes
its socket.

Usage: fsync_floor.py SOCKET DATA_FILE [--window-ms N] [--forward URL --spool DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from urllib.parse import urlsplit

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class Forwarder:
    """Reads new complete records of the spool's active file and POSTs each."""

    def __init__(self, url: str, spool: str):
        u = urlsplit(url)
        self.addr = (u.hostname, u.port or 80)
        self.head = (f"POST {u.path or '/'} HTTP/1.1\r\nhost: {u.netloc}\r\n"
                     "content-type: application/json\r\ncontent-length: ").encode()
        self.path = os.path.join(spool, "events.log")
        self.ident = None
        self.offset = 0
        self.sock = None
        self.sent = 0

    def _records(self) -> list[bytes]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if (st.st_dev, st.st_ino) != self.ident or st.st_size < self.offset:
            self.ident, self.offset = (st.st_dev, st.st_ino), 0
        if st.st_size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset)
        end = data.rfind(b"\n") + 1  # complete records only
        self.offset += end
        return [r.lstrip(b"\x1e") for r in data[:end].split(b"\n") if r.strip(b"\x1e")]

    def run(self) -> None:
        for body in self._records():
            if self.sock is None:
                self.sock = socket.create_connection(self.addr)
            self.sock.sendall(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
            got = b""
            while len(got) < len(ANSWER):
                chunk = self.sock.recv(len(ANSWER) - len(got))
                if not chunk:
                    raise ConnectionError("receiver closed the connection")
                got += chunk
            self.sent += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("socket")
    ap.add_argument("data_file")
    ap.add_argument("--window-ms", type=float, default=0.0)
    ap.add_argument("--forward", metavar="URL")
    ap.add_argument("--spool", metavar="DIR")
    a = ap.parse_args()
    fwd = Forwarder(a.forward, a.spool) if a.forward else None
    try:
        os.unlink(a.socket)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(a.socket)
    os.chmod(a.socket, 0o666)
    fd = os.open(a.data_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    window = a.window_ms / 1000
    stop = False
    syncs = bells = 0

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    s.settimeout(0.2)
    last = 0.0
    pending = False
    while not stop:
        try:
            s.recv(4096)
            bells += 1
            pending = True
        except socket.timeout:
            pass
        except InterruptedError:
            continue
        if not pending:
            continue
        now = time.monotonic()
        if window and now - last < window:
            # Absorb the doorbells of the rest of the window, then sync once.
            s.settimeout(max(0.0, window - (now - last)))
            continue
        s.settimeout(0.2)
        os.write(fd, b"x" * 63 + b"\n")
        os.fdatasync(fd)
        syncs += 1
        if fwd is not None:
            fwd.run()
        last = time.monotonic()
        pending = False
    os.unlink(a.socket)
    print(f"fsyncs={syncs} doorbells={bells}"
          + (f" forwarded={fwd.sent}" if fwd is not None else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

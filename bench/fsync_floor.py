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
ceiling any durable sidecar can reach on the machine. On SIGTERM it prints
``fsyncs=<n> doorbells=<n>`` and removes its socket.

Usage: fsync_floor.py SOCKET DATA_FILE [--window-ms N]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("socket")
    ap.add_argument("data_file")
    ap.add_argument("--window-ms", type=float, default=0.0)
    a = ap.parse_args()
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
        last = time.monotonic()
        pending = False
    os.unlink(a.socket)
    print(f"fsyncs={syncs} doorbells={bells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

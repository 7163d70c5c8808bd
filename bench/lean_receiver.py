"""HTTP receivers for the pipeline benchmarks: answer at once, check afterwards.

Owns the far ends of ``bench/pipeline_cost.py``: a webhook endpoint (answers
200) and a Web Push service (answers 201), each in its own process, each an
asyncio HTTP/1.1 server on ``127.0.0.1:0`` with keep-alive. On the clock a
request costs the receiver only the parse of its head, one append to a list
and the answer; everything a check needs (headers, body, arrival and answer
times) is kept, and the checks run afterwards, off the clock, on request:

* webhooks: the Standard Webhooks signature of every request
  (``tests.harness.receiver.verify``), the event fields of its body;
* Web Push: every body decrypted (RFC 8291, ``aes128gcm``) with the
  subscription's private key and the VAPID JWT verified
  (``tests.harness.pushreceiver``), so a push that does not decrypt is an
  error, not a success.

Why not the test receivers (``tests.harness.receiver``,
``tests.harness.pushreceiver``): they check each request on arrival, in a
thread per connection; at a few hundred requests per second on a 2-core
machine that work competes with Dovecot for the CPUs and would be billed to
the pipeline under test. A real endpoint lives on another machine.

Nothing here knows about Dovecot; the parent talks to the child over a pipe.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass

OK_200 = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
OK_201 = b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"


@dataclass
class Raw:
    """One request as received: head (request line + headers), body, times."""

    head: bytes
    body: bytes
    at: float          # time.time() when the head was complete
    answered_at: float

    def headers(self) -> dict[str, str]:
        lines = self.head.decode("latin-1").split("\r\n")
        out = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                out[k.strip().lower()] = v.strip()
        return out

    def path(self) -> str:
        return self.head.split(b" ", 2)[1].decode("latin-1")


class _Protocol(asyncio.Protocol):
    def __init__(self, store: list[Raw], answer: bytes):
        self.store = store
        self.answer = answer
        self.buf = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip() or 0)
                    break
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = self.buf[end + 4:total]
            self.buf = self.buf[total:]
            at = time.time()
            self.transport.write(self.answer)
            self.store.append(Raw(head, body, at, time.time()))


def _serve(conn, answer: bytes, handler) -> None:
    """Child main: the server in an asyncio loop, commands from ``conn`` on a thread."""
    store: list[Raw] = []
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: _Protocol(store, answer), "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    conn.send(port)
    state: dict = {}

    def commands() -> None:
        while True:
            try:
                cmd, arg = conn.recv()
            except EOFError:
                break
            if cmd == "close":
                break
            try:
                if cmd == "count":
                    out = len(store)
                else:
                    out = handler(cmd, arg, store, state, port)
            except Exception as exc:  # noqa: BLE001 - sent to the parent
                out = exc
            conn.send(out)
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=commands, daemon=True).start()
    loop.run_forever()
    server.close()
    conn.close()


# --------------------------------------------------------------------------- webhooks
def _webhook_handler(cmd, arg, store, state, port):
    from tests.harness.receiver import verify
    if cmd == "check":
        since, secret = arg
        out, errors = [], []
        for r in store[since:]:
            hdrs = r.headers()
            try:
                wid = verify(secret, hdrs, r.body, tolerance=None)
            except AssertionError as exc:
                errors.append(str(exc))
                continue
            data = json.loads(r.body).get("data", {})
            out.append({"webhook_id": wid, "ts_ms": data.get("ts_ms"), "user": data.get("user"),
                        "kind": data.get("kind"), "message_id": data.get("message_id"),
                        "at": r.at, "answered_at": r.answered_at})
        return out, errors
    raise ValueError(f"unknown command {cmd!r}")


# --------------------------------------------------------------------------- Web Push
def _push_handler(cmd, arg, store, state, port):
    from tests.harness.pushreceiver import (DecryptError, Subscription, VapidError,
                                            verify_vapid)
    from cryptography.hazmat.primitives.asymmetric import ec
    subs: dict[str, Subscription] = state.setdefault("subs", {})
    if cmd == "subscribe":
        sub_id = arg
        sub = Subscription(sub_id, f"http://127.0.0.1:{port}/push/{sub_id}",
                           ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        subs[sub_id] = sub
        return {"id": sub.id, "endpoint": sub.endpoint,
                "client_json": sub.client_json(state.get("msgtype", "chat"))}
    if cmd == "msgtype":
        state["msgtype"] = arg
        return None
    if cmd == "validation_secret":
        sub = subs[arg]
        for r in reversed(store):
            if r.path() == f"/push/{arg}" and "webpush-validation" in r.headers():
                return json.loads(sub.decrypt(r.body))["validation"]
        return None
    if cmd == "check":
        since, pem, subject = arg
        out, errors = [], []
        for r in store[since:]:
            hdrs = r.headers()
            sub_id = r.path().rsplit("/", 1)[-1]
            sub = subs.get(sub_id)
            if sub is None:
                errors.append(f"push to unknown subscription {r.path()}")
                continue
            try:
                plain = json.loads(sub.decrypt(r.body))
                verify_vapid(hdrs.get("authorization"), sub.endpoint, pem, subject)
            except (DecryptError, VapidError, ValueError) as exc:
                errors.append(f"{sub_id}: {exc}")
                continue
            out.append({"sub": sub_id, "validation": "webpush-validation" in hdrs,
                        "msg_id": plain.get("msg-id"), "at": r.at})
        return out, errors
    raise ValueError(f"unknown command {cmd!r}")


# --------------------------------------------------------------------------- parent side
class LeanReceiver:
    """One receiver process; ``kind`` is ``"webhook"`` (200) or ``"push"`` (201)."""

    def __init__(self, kind: str):
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._lock = threading.Lock()
        answer, handler = (OK_200, _webhook_handler) if kind == "webhook" \
            else (OK_201, _push_handler)
        self._proc = ctx.Process(target=_serve, args=(child, answer, handler), daemon=True,
                                 name=f"lean-{kind}-receiver")
        self._proc.start()
        child.close()
        self.port = self._conn.recv()
        self.pid = self._proc.pid

    def call(self, cmd: str, arg=None):
        with self._lock:
            self._conn.send((cmd, arg))
            out = self._conn.recv()
        if isinstance(out, Exception):
            raise out
        return out

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self) -> int:
        return self.call("count")

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                with self._lock:
                    self._conn.send(("close", None))
            except OSError:
                pass
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout=5)
        self._conn.close()

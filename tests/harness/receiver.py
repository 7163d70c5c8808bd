"""A real HTTP/1.1 webhook receiver for the event tests, and a Standard Webhooks verifier.

Owns the operator's side of the webhook contract: a ``ThreadingHTTPServer`` on
``127.0.0.1:0`` (one thread per connection, keep-alive) that records every
request (method, path, headers, body, arrival time, the status it was given)
and answers what the test scripted:

* ``ok()``: 200 to everything (the default);
* ``fail_first(n, status=503, retry_after=None)``: the first ``n`` requests get
  ``status`` (optionally with ``Retry-After``), then 200;
* ``fail_for(seconds, ...)``: the same for every request arriving during the
  next ``seconds``;
* ``blackhole()``: read the request and never answer (the connection stays
  open until ``release()``, ``ok()`` or ``close()``);
* ``slow(seconds)``: answer 200 after a delay;
* ``set_policy(fn)``: anything else, ``fn(request, index) -> Reply``.

``sign()``/``verify()`` implement Standard Webhooks v1 signatures (HMAC-SHA256
over ``"{webhook-id}.{webhook-timestamp}.{body}"`` with the base64-decoded part
of a ``whsec_`` secret; header ``webhook-signature: v1,<b64> [v1,<b64> ...]``).
Nothing here knows about Dovecot or the sidecar.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Mapping

# --------------------------------------------------------------------------- signatures


class SignatureError(AssertionError):
    """A webhook request whose Standard Webhooks signature does not verify."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    if not secret.startswith("whsec_"):
        raise ValueError(f"not a whsec_ secret: {secret[:10]!r}...")
    return base64.b64decode(secret[len("whsec_"):], validate=True)


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``v1,<base64>`` signature of one payload."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify(secrets: str | Iterable[str], headers: Mapping[str, str], body: bytes,
           tolerance: float | None = 300.0, now: float | None = None) -> str:
    """Check a request's Standard Webhooks headers; returns the ``webhook-id``.

    ``headers`` keys are matched case-insensitively. The signature header may
    carry several space-separated ``v1,<b64>`` entries (key rotation): at
    least one must match one of ``secrets``. With ``tolerance`` set, the
    timestamp must be within that many seconds of ``now``. Raises
    ``SignatureError`` saying what is wrong.
    """
    if isinstance(secrets, str):
        secrets = [secrets]
    lower = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
               if not lower.get(h)]
    if missing:
        raise SignatureError(f"missing header(s) {missing}; got {sorted(lower)}")
    msg_id, ts, sig_header = (lower["webhook-id"], lower["webhook-timestamp"],
                              lower["webhook-signature"])
    if not ts.isdigit():
        raise SignatureError(f"webhook-timestamp {ts!r} is not unix seconds")
    if tolerance is not None:
        now = time.time() if now is None else now
        if abs(now - int(ts)) > tolerance:
            raise SignatureError(f"webhook-timestamp {ts} is {now - int(ts):.0f}s away from now")
    given = sig_header.split()
    bad = [g for g in given if not g.startswith("v1,")]
    if bad:
        raise SignatureError(f"signature entries without the v1, prefix: {bad}")
    for secret in secrets:
        want = sign(secret, msg_id, ts, body)
        if any(hmac.compare_digest(want, g) for g in given):
            return msg_id
    raise SignatureError(f"no signature in {sig_header!r} matches (id {msg_id}, ts {ts}, "
                         f"{len(body)} body bytes)")


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Reply:
    """What to answer one request."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    #: Seconds to wait before answering.
    delay: float = 0.0
    #: Never answer (until the receiver is released or closed).
    hang: bool = False


OK = Reply(200)
HANG = Reply(hang=True)

Policy = Callable[["Request", int], Reply]


@dataclass
class Request:
    """One received request."""

    index: int
    method: str
    path: str
    #: Header names lower-cased (the last value wins if repeated).
    headers: dict[str, str]
    body: bytes
    #: ``time.time()`` when the whole request had been read.
    at: float
    #: ``time.monotonic()`` at the same moment.
    mono: float
    #: The status it was answered with (None: not answered / black-holed).
    status: int | None = None
    #: Local port of the client's connection (shows connection reuse).
    peer_port: int = 0
    answered_at: float | None = None
    extra: dict = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def short(self) -> str:
        body = self.body[:160].decode("utf-8", "replace")
        return (f"#{self.index} {self.method} {self.path} -> {self.status} at {self.at:.3f} "
                f"id={self.webhook_id} body={body!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - silence stderr logging
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = self.server.owner._record(self, body)
        reply = self.server.owner._reply_for(rec)
        if reply.hang:
            # Keep the connection open, answer nothing. Released on close().
            self.server.owner._released.wait()
            self.close_connection = True
            return
        if reply.delay:
            time.sleep(reply.delay)
        self.send_response(reply.status)
        for k, v in reply.headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.body:
            self.wfile.write(reply.body)
        self.wfile.flush()
        self.server.owner._answered(rec, reply.status)

    do_POST = do_PUT = do_GET = do_DELETE = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    owner: "WebhookReceiver"


class WebhookReceiver:
    """Records webhook requests and answers them as scripted. Use ``with`` or ``close()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Condition()
        self._requests: list[Request] = []
        self._policy: Policy = lambda req, i: OK
        self._released = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.owner = self
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"webhook-receiver-{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    # -- address ---------------------------------------------------------------
    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    # -- scripting ---------------------------------------------------------------
    def set_policy(self, policy: Policy) -> None:
        with self._lock:
            self._policy = policy
            if not self._hangs(policy):
                self._released.set()

    @staticmethod
    def _hangs(policy) -> bool:
        return getattr(policy, "may_hang", False)

    def ok(self) -> None:
        """Answer 200 to everything from now on (also releases black-holed requests)."""
        self.set_policy(lambda req, i: OK)

    def fail_first(self, n: int, status: int = 503, retry_after: int | str | None = None
                   ) -> None:
        """The next ``n`` requests get ``status`` (and ``Retry-After``), later ones 200."""
        hdrs = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        fail = Reply(status, hdrs)
        with self._lock:
            start = len(self._requests)
        self.set_policy(lambda req, i: fail if i < start + n else OK)

    def fail_for(self, seconds: float, status: int = 503,
                 retry_after: int | str | None = None) -> None:
        """Requests arriving in the next ``seconds`` get ``status``; later ones 200."""
        hdrs = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        fail = Reply(status, hdrs)
        until = time.monotonic() + seconds
        self.set_policy(lambda req, i: fail if req.mono < until else OK)

    def blackhole(self) -> None:
        """Accept and read every request, never answer (until ``release``/``ok``/``close``)."""
        def policy(req, i):
            return HANG
        policy.may_hang = True  # type: ignore[attr-defined]
        with self._lock:
            self._released.clear()
            self._policy = policy

    def release(self) -> None:
        """Let black-holed handlers go (their connections are closed unanswered)."""
        self._released.set()

    def slow(self, seconds: float, status: int = 200) -> None:
        reply = Reply(status, delay=seconds)
        self.set_policy(lambda req, i: reply)

    # -- internals ---------------------------------------------------------------
    def _record(self, handler: _Handler, body: bytes) -> Request:
        now, mono = time.time(), time.monotonic()
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            rec = Request(len(self._requests), handler.command, handler.path, headers, body,
                          now, mono, peer_port=handler.client_address[1])
            self._requests.append(rec)
            self._lock.notify_all()
        return rec

    def _reply_for(self, rec: Request) -> Reply:
        with self._lock:
            policy = self._policy
        return policy(rec, rec.index)

    def _answered(self, rec: Request, status: int) -> None:
        with self._lock:
            rec.status = status
            rec.answered_at = time.time()
            self._lock.notify_all()

    # -- reading -----------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def count(self) -> int:
        with self._lock:
            return len(self._requests)

    def delivered(self) -> list[Request]:
        """Requests that were answered 2xx."""
        return [r for r in self.requests if r.ok]

    def delivered_ids(self) -> set[str]:
        return {r.webhook_id for r in self.delivered() if r.webhook_id}

    def wait_for(self, cond: Callable[[list[Request]], bool], timeout: float,
                 what: str = "condition") -> list[Request]:
        """Block until ``cond(requests)`` holds; raises TimeoutError with the log tail."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                reqs = list(self._requests)
                if cond(reqs):
                    return reqs
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"webhook receiver: timed out after {timeout}s waiting "
                                       f"for {what}\n{self.log_tail()}")
                self._lock.wait(min(left, 0.25))

    def wait_delivered(self, n: int, timeout: float) -> list[Request]:
        """Wait until ``n`` distinct webhook-ids were answered 2xx."""
        self.wait_for(lambda reqs: len({r.webhook_id for r in reqs if r.ok}) >= n,
                      timeout, f"{n} distinct delivered webhook-ids")
        return self.delivered()

    def log_tail(self, n: int = 25) -> str:
        reqs = self.requests
        ok = sum(1 for r in reqs if r.ok)
        lines = [f"receiver {self.url('')}: {len(reqs)} request(s), {ok} answered 2xx, "
                 f"{len({r.webhook_id for r in reqs})} distinct webhook-ids"]
        lines += [r.short() for r in reqs[-n:]]
        return "\n".join(lines)

    # -- lifecycle -----------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "WebhookReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- in a child process
def _summary(r: Request) -> dict:
    """The compact, picklable facts of one request (event fields parsed if JSON)."""
    out = {"index": r.index, "method": r.method, "path": r.path, "webhook_id": r.webhook_id,
           "status": r.status, "at": r.at, "answered_at": r.answered_at, "ts_ms": None,
           "message_id": None}
    try:
        body = json.loads(r.body)
        data = body.get("data", body)
        out["ts_ms"], out["message_id"] = data.get("ts_ms"), data.get("message_id")
    except (ValueError, AttributeError):
        pass
    return out


def _child_main(conn, host: str) -> None:
    rx = WebhookReceiver(host)
    conn.send(rx.url(""))
    while True:
        try:
            cmd, arg = conn.recv()
        except EOFError:
            break
        if cmd == "close":
            break
        if cmd == "ok":
            rx.ok()
            conn.send(None)
        elif cmd == "blackhole":
            rx.blackhole()
            conn.send(None)
        elif cmd == "count":
            conn.send(rx.count())
        elif cmd == "delivered_ids":
            conn.send(len(rx.delivered_ids()))
        elif cmd == "summaries":
            conn.send([_summary(r) for r in rx.requests[arg:]])
        elif cmd == "log_tail":
            conn.send(rx.log_tail(arg))
        else:
            conn.send(ValueError(f"unknown command {cmd!r}"))
    rx.close()
    conn.close()


class ReceiverProcess:
    """A ``WebhookReceiver`` in its own process (own GIL), driven over a pipe.

    For load tests, where a receiver sharing the interpreter with the load
    generator's threads would be starved and look like a slow endpoint.
    Offers the subset benchmarks need: ``url``, ``ok``, ``blackhole``,
    ``count``, ``delivered_count``, ``summaries(since)``, ``log_tail``.
    """

    def __init__(self, host: str = "127.0.0.1"):
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._lock = threading.Lock()
        self._proc = ctx.Process(target=_child_main, args=(child, host), daemon=True,
                                 name="webhook-receiver")
        self._proc.start()
        child.close()
        self._base = self._conn.recv()
        self.pid = self._proc.pid

    def _call(self, cmd: str, arg=None):
        with self._lock:
            self._conn.send((cmd, arg))
            out = self._conn.recv()
        if isinstance(out, Exception):
            raise out
        return out

    def url(self, path: str = "/hook") -> str:
        return self._base + path

    def ok(self) -> None:
        self._call("ok")

    def blackhole(self) -> None:
        self._call("blackhole")

    def count(self) -> int:
        return self._call("count")

    def delivered_count(self) -> int:
        """Distinct webhook-ids answered 2xx."""
        return self._call("delivered_ids")

    def summaries(self, since: int = 0) -> list[dict]:
        return self._call("summaries", since)

    def log_tail(self, n: int = 25) -> str:
        return self._call("log_tail", n)

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

    def __enter__(self) -> "ReceiverProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""A Web Push service and user agent in one, for the push tests; plus the helpers
that point a coi-sidecar and a test Dovecot at it.

Owns the browser's side of RFC 8030/8291/8292, written here from the RFCs with
``cryptography`` primitives only (Debian ``python3-cryptography``), so the
sidecar's Rust implementation is checked against an independent one:

* ``PushReceiver``: a ``ThreadingHTTPServer`` on ``127.0.0.1:0``. Each
  ``make_subscription()`` creates a P-256 key pair and a 16-byte auth secret
  and an endpoint ``http://127.0.0.1:PORT/push/<id>``; the returned
  ``Subscription`` has ``endpoint``, ``p256dh``, ``auth`` (base64url, as
  browsers give them), the COI ``SETMETADATA`` JSON (``client_json()``) and
  the wire target (``target()``).
* Every request is recorded (``PushRequest``) and checked: the body is
  decrypted (``aes128gcm``: ECDH + HKDF-SHA-256 + AES-128-GCM, padding
  delimiter), the ``Authorization: vapid t=<JWT>, k=<key>`` header is
  verified (ES256 signature against the PEM public key file the sidecar
  wrote, ``k`` equal to that key, ``aud`` = the endpoint's origin, ``exp`` in
  the future and at most 24 h ahead, ``sub`` as expected). What failed is kept
  in ``errors`` instead of raising inside the server thread.
* Answers are scripted: ``reply(status, retry_after=None)`` for everything,
  ``reply_for(subscription, status)`` for one subscription, ``fail_first(n,
  status, retry_after)``; default 201. ``hold(subscription)`` keeps the
  answers to one subscription waiting (the request is recorded at once)
  until ``release(subscription, status)``.
* ``decrypt_aes128gcm()`` and ``verify_vapid()`` are plain functions, tested
  against RFC 8291 Appendix A and against each other.

Helpers for other tests: ``sidecar_push_config()`` renders the ``[webpush]``,
``[deltachat]`` and ``[dovecot]`` sections for a ``SidecarProcess`` (see
``PushSidecar``), and ``doveadm_http_config()`` the dovecot.conf lines of the
doveadm HTTP API (``InstanceConfig.extra_config``). Traffic stays on loopback.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .sidecar import SidecarProcess, _toml

WAIT = 30.0


# --------------------------------------------------------------------------- base64url
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------- RFC 8291
class DecryptError(AssertionError):
    """An aes128gcm body that does not decrypt or is malformed."""


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _point(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.X962,
                               serialization.PublicFormat.UncompressedPoint)


def decrypt_aes128gcm(body: bytes, ua_private: ec.EllipticCurvePrivateKey, auth: bytes) -> bytes:
    """The plaintext of a Web Push message body (RFC 8291 §3.4, RFC 8188 §2).

    Header: salt (16) | rs (4, big-endian) | idlen (1) | keyid (idlen) = the
    sender's ephemeral public key. Then records of at most ``rs`` bytes, each
    AES-128-GCM with nonce = NONCE xor sequence number; the plaintext of a
    record ends in padding: a delimiter (0x01 more records follow, 0x02 last
    record) followed by zero bytes.
    """
    if len(body) < 21:
        raise DecryptError(f"body of {len(body)} bytes has no aes128gcm header")
    salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    if rs < 18:
        raise DecryptError(f"record size {rs} is too small")
    keyid = body[21:21 + idlen]
    if idlen != 65 or len(keyid) != 65:
        raise DecryptError(f"keyid of {idlen} bytes is not an uncompressed P-256 point")
    as_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), keyid)
    ecdh = ua_private.exchange(ec.ECDH(), as_public)
    key_info = b"WebPush: info\x00" + _point(ua_private.public_key()) + keyid
    ikm = _hkdf(auth, ecdh, key_info, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    records = body[21 + idlen:]
    out = b""
    seq = 0
    while records:
        chunk, records = records[:rs], records[rs:]
        iv = (int.from_bytes(nonce, "big") ^ seq).to_bytes(12, "big")
        try:
            plain = AESGCM(cek).decrypt(iv, chunk, None)
        except InvalidTag as exc:
            raise DecryptError(f"record {seq} does not authenticate") from exc
        stripped = plain.rstrip(b"\x00")
        if not stripped:
            raise DecryptError(f"record {seq} has no padding delimiter")
        delimiter = stripped[-1]
        last = not records
        if delimiter != (2 if last else 1):
            raise DecryptError(f"record {seq}: delimiter {delimiter} (last={last})")
        out += stripped[:-1]
        seq += 1
    return out


# --------------------------------------------------------------------------- RFC 8292
class VapidError(AssertionError):
    """An Authorization header that is not a valid VAPID token for the request."""


def verify_vapid(header: str | None, endpoint: str, public_key_pem: bytes,
                 subject: str | None = None, now: float | None = None) -> dict:
    """Check ``Authorization: vapid t=<JWT>, k=<key>``; returns the JWT claims."""
    if not header or not header.startswith("vapid "):
        raise VapidError(f"Authorization is not the vapid scheme: {header!r}")
    params = {}
    for part in header[len("vapid "):].split(","):
        name, _, value = part.strip().partition("=")
        params[name] = value
    if set(params) != {"t", "k"}:
        raise VapidError(f"vapid parameters {sorted(params)} are not t and k")
    public = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise VapidError("the PEM key is not a P-256 public key")
    if unb64url(params["k"]) != _point(public):
        raise VapidError("k is not the server's public key")
    pieces = params["t"].split(".")
    if len(pieces) != 3:
        raise VapidError("t is not a JWS compact serialisation")
    jose = json.loads(unb64url(pieces[0]))
    if jose.get("alg") != "ES256":
        raise VapidError(f"JWT alg {jose.get('alg')!r} is not ES256")
    signature = unb64url(pieces[2])
    if len(signature) != 64:
        raise VapidError(f"ES256 signature of {len(signature)} bytes (want r||s, 64)")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, f"{pieces[0]}.{pieces[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise VapidError("the JWT signature does not verify") from exc
    claims = json.loads(unb64url(pieces[1]))
    parts = urlsplit(endpoint)
    origin = f"{parts.scheme}://{parts.netloc}"
    if claims.get("aud") != origin:
        raise VapidError(f"aud {claims.get('aud')!r} is not the endpoint's origin {origin!r}")
    now = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, int) or not (now < exp <= now + 24 * 3600):
        raise VapidError(f"exp {exp!r} is not within the next 24 hours of {int(now)}")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not (sub.startswith("mailto:") or sub.startswith("https:")):
        raise VapidError(f"sub {sub!r} is not a mailto: or https: contact")
    if subject is not None and sub != subject:
        raise VapidError(f"sub {sub!r} != {subject!r}")
    return claims


# --------------------------------------------------------------------------- the receiver
@dataclass
class Subscription:
    """One subscription of the simulated user agent."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    auth_secret: bytes = field(repr=False)

    @property
    def p256dh(self) -> str:
        return b64url(_point(self.private_key.public_key()))

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def client_json(self, msgtype: str = "chat", client: str = "coi tests",
                    device: str = "pushreceiver") -> str:
        """The JSON a client sets at ``.../webpush/subscriptions/<id>``."""
        return json.dumps({"client": client, "device": device, "msgtype": msgtype,
                           "resource": {"endpoint": self.endpoint,
                                        "keys": {"p256dh": self.p256dh, "auth": self.auth}}})

    def target(self) -> dict:
        """The ``WebPushTargetV1`` of a spool record."""
        return {"subscription_id": self.id, "endpoint": self.endpoint,
                "p256dh": self.p256dh, "auth": self.auth}

    def decrypt(self, body: bytes) -> bytes:
        return decrypt_aes128gcm(body, self.private_key, self.auth_secret)


@dataclass
class PushRequest:
    """One request the push service received, with what the checks found."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int
    subscription: Subscription | None
    plaintext: bytes | None = None
    claims: dict | None = None
    errors: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self):
        if self.plaintext is None:
            raise AssertionError(f"request to {self.path} was not decrypted: {self.errors}")
        return json.loads(self.plaintext)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - keep stderr quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, extra = self.server.owner._handle(self.command, self.path, self.headers, body)
        self.send_response(status)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: "PushReceiver"):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class PushReceiver:
    """Push service + user agent (see the module docs). Use as a context manager."""

    def __init__(self, vapid_public_key: Path | None = None, subject: str | None = None):
        #: The sidecar's PEM public key file (read at each request: it may
        #: appear only after the sidecar's first start).
        self.vapid_public_key = Path(vapid_public_key) if vapid_public_key else None
        self.subject = subject
        self._lock = threading.Lock()
        self._subs: dict[str, Subscription] = {}
        self._requests: list[PushRequest] = []
        self._default: tuple[int, str | None] = (201, None)
        self._per_sub: dict[str, tuple[int, str | None]] = {}
        self._fail_first: list[tuple[int, str | None]] = []
        self._policy: Callable[[PushRequest, int], tuple[int, str | None]] | None = None
        #: subscription id -> (released, status to answer once released)
        self._held: dict[str, tuple[threading.Event, list[int]]] = {}
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="pushreceiver", daemon=True)
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "PushReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- subscriptions -------------------------------------------------------------
    def make_subscription(self, sub_id: str | None = None) -> Subscription:
        """A new subscription: key pair, auth secret, endpoint on this receiver."""
        sub_id = sub_id or "sub-" + secrets.token_hex(8)
        sub = Subscription(sub_id, f"{self.base_url}/push/{sub_id}",
                           ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        with self._lock:
            self._subs[sub_id] = sub
        return sub

    # -- scripting -----------------------------------------------------------------
    def reply(self, status: int, retry_after: int | str | None = None) -> None:
        """Answer ``status`` to every request (unless more specific rules apply)."""
        with self._lock:
            self._default = (status, None if retry_after is None else str(retry_after))

    def reply_for(self, sub: Subscription | str, status: int,
                  retry_after: int | str | None = None) -> None:
        key = sub.id if isinstance(sub, Subscription) else sub
        with self._lock:
            self._per_sub[key] = (status, None if retry_after is None else str(retry_after))

    def fail_first(self, n: int, status: int = 429, retry_after: int | str | None = None) -> None:
        """The next ``n`` requests get ``status``, then the other rules apply."""
        with self._lock:
            self._fail_first = [(status, None if retry_after is None else str(retry_after))] * n

    def set_policy(self, fn: Callable[[PushRequest, int], tuple[int, str | None]] | None) -> None:
        with self._lock:
            self._policy = fn

    def hold(self, sub: Subscription | str) -> None:
        """Requests to ``sub`` wait for ``release()`` before they are answered."""
        key = sub.id if isinstance(sub, Subscription) else sub
        with self._lock:
            self._held[key] = (threading.Event(), [201])

    def release(self, sub: Subscription | str, status: int) -> None:
        """Answer the held requests to ``sub`` (and later ones) with ``status``."""
        key = sub.id if isinstance(sub, Subscription) else sub
        with self._lock:
            released, answer = self._held.pop(key)
            answer[0] = status
            self._per_sub[key] = (status, None)
        released.set()

    # -- the server side -----------------------------------------------------------
    def _handle(self, method: str, path: str, headers, body: bytes) -> tuple[int, list]:
        hdrs = {k.lower(): v for k, v in headers.items()}
        sub_id = path.rsplit("/", 1)[-1] if path.startswith("/push/") else None
        with self._lock:
            sub = self._subs.get(sub_id) if sub_id else None
            index = len(self._requests)
        req = PushRequest(method, path, hdrs, body, time.monotonic(), 0, sub)
        self._check(req)
        with self._lock:
            if self._policy is not None:
                status, retry_after = self._policy(req, index)
            elif self._fail_first:
                status, retry_after = self._fail_first.pop(0)
            elif sub is not None and sub.id in self._per_sub:
                status, retry_after = self._per_sub[sub.id]
            elif sub is None:
                status, retry_after = 404, None
            else:
                status, retry_after = self._default
            held = self._held.get(sub.id) if sub is not None else None
            req.status = status
            self._requests.append(req)
        if held is not None:
            released, answer = held
            released.wait(WAIT)
            status = req.status = answer[0]
        return status, ([("Retry-After", retry_after)] if retry_after else [])

    def _check(self, req: PushRequest) -> None:
        if req.subscription is None:
            req.errors.append(f"no subscription at {req.path}")
            return
        if req.header("content-encoding") != "aes128gcm":
            req.errors.append(f"Content-Encoding {req.header('content-encoding')!r}")
        try:
            req.plaintext = req.subscription.decrypt(req.body)
        except (DecryptError, ValueError) as exc:
            req.errors.append(f"decrypt: {exc}")
        if self.vapid_public_key is not None:
            try:
                pem = self.vapid_public_key.read_bytes()
                req.claims = verify_vapid(req.header("authorization"), req.subscription.endpoint,
                                          pem, self.subject)
            except (VapidError, OSError, ValueError) as exc:
                req.errors.append(f"vapid: {exc}")

    # -- reading -------------------------------------------------------------------
    def requests(self, sub: Subscription | str | None = None) -> list[PushRequest]:
        key = sub.id if isinstance(sub, Subscription) else sub
        with self._lock:
            return [r for r in self._requests
                    if key is None or (r.subscription is not None and r.subscription.id == key)]

    def wait_for(self, n: int, sub: Subscription | str | None = None,
                 timeout: float = WAIT) -> list[PushRequest]:
        """Wait until at least ``n`` requests (to ``sub``) arrived; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests(sub)
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(got)} of {n} push requests arrived within {timeout}s: "
                                   f"{[(r.path, r.status) for r in self.requests()]}")
            time.sleep(0.02)

    def log_tail(self, n: int = 15) -> str:
        lines = [f"{r.method} {r.path} -> {r.status} errors={r.errors}"
                 for r in self.requests()[-n:]]
        return "push receiver requests:\n" + "\n".join(lines)


# --------------------------------------------------------------------------- helpers
def doveadm_http_config(port: int, api_key: str) -> str:
    """dovecot.conf lines that open the doveadm HTTP API on 127.0.0.1:``port``
    (in 2.4 syntax, ``listen`` instead of ``address``, when the harness renders
    2.4: ``$COI_DOVECOT_VERSION``)."""
    v24 = os.environ.get("COI_DOVECOT_VERSION", "2.3").startswith("2.4")
    return "\n".join([
        f"doveadm_api_key = {api_key}",
        "service doveadm {",
        "  inet_listener http {",
        "    listen = 127.0.0.1" if v24 else "    address = 127.0.0.1",
        f"    port = {port}",
        "  }",
        "}",
    ]) + "\n"


def sidecar_push_config(*, state_dir: Path, public_key: Path, subject: str,
                        webpush: bool = True, deltachat_proxy: str | None = None,
                        doveadm_url: str | None = None, doveadm_key_file: Path | None = None,
                        ttl_secs: int = 86400, retry_schedule_secs: Sequence[int] = (1, 1, 1, 1, 1),
                        validation_deadline_secs: int = 300) -> str:
    """The ``[webpush]``/``[deltachat]``/``[dovecot]`` sections for a test sidecar
    (private addresses allowed: every endpoint is on loopback)."""
    out = [
        "[webpush]",
        f"enabled = {_toml(webpush)}",
        f"vapid_private_key = {_toml(state_dir / 'webpush' / 'vapid-private.pem')}",
        f"vapid_public_key = {_toml(public_key)}",
        f"vapid_subject = {_toml(subject)}",
        f"ttl_secs = {ttl_secs}",
        f"retry_schedule_secs = {_toml(list(retry_schedule_secs))}",
        f"validation_deadline_secs = {validation_deadline_secs}",
        "timeout_secs = 5",
        "allow_private_addresses = true",
        "",
        "[deltachat]",
    ]
    if deltachat_proxy:
        out.append(f"proxy_url = {_toml(deltachat_proxy)}")
    out += [f"retry_schedule_secs = {_toml(list(retry_schedule_secs))}", "timeout_secs = 5",
            "allow_private_addresses = true", "", "[dovecot]"]
    if doveadm_url:
        out += [f"doveadm_url = {_toml(doveadm_url)}",
                f"doveadm_api_key_file = {_toml(doveadm_key_file)}"]
    out += [f"retry_schedule_secs = {_toml(list(retry_schedule_secs))}", "timeout_secs = 5"]
    return "\n".join(out) + "\n"


class PushSidecar(SidecarProcess):
    """A ``SidecarProcess`` whose config also carries the push sections.

    ``push_sections`` is the text of ``sidecar_push_config()`` (or anything
    else to append); ``public_key`` is where the VAPID public key will be.
    """

    def __init__(self, webhooks: Iterable = (), *, push_sections: str = "",
                 subject: str = "mailto:postmaster@example.org", **kwargs):
        self.push_sections = push_sections
        self.subject = subject
        super().__init__(webhooks, **kwargs)

    @property
    def vapid_public_key(self) -> Path:
        return self.root / "vapid" / "vapid-public.pem"

    def push_config(self, **kw) -> str:
        """``sidecar_push_config()`` with this sidecar's paths filled in."""
        return sidecar_push_config(state_dir=self.state_dir, public_key=self.vapid_public_key,
                                   subject=self.subject, **kw)

    def render_config(self) -> str:
        return super().render_config() + "\n" + getattr(self, "push_sections", "") + "\n"

    def append_records(self, records: Iterable[dict]) -> None:
        """Append spool records (``{"v":1,"type":...}`` dicts) as the plugin does:
        RS + compact JSON + LF, one write each, under a shared flock."""
        import fcntl
        path = self.spool_dir / "events.log"
        for rec in records:
            data = b"\x1e" + json.dumps(rec, separators=(",", ":")).encode() + b"\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o660)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                os.write(fd, data)
            finally:
                os.close(fd)

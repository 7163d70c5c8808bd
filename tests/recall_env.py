"""Shared set-up of the recall and read-status tests (tests/test_recall.py,
tests/test_read_status.py): a real Dovecot with the plugin, the real
coi-sidecar with the doveadm HTTP API configured, and a webhook receiver.

Sessions use the users' addresses as user names (the passwd file is keyed
by the local part; Dovecot keeps the name as given), as recall requires
(docs/recall.md): the requester's user name is compared with the
authenticated sender that delivery recorded.
"""

from __future__ import annotations

import json
import os
import time

from tests.harness import DovecotInstance, WebhookReceiver, free_ports
from tests.harness.pushreceiver import PushReceiver, PushSidecar, doveadm_http_config
from tests.harness.sidecar import Webhook

API_KEY = "recall-doveadm-key"
RECALL = "/private/vendor/vendor.dovecot/coi/recall/"
READ_STATUS = "/private/vendor/vendor.dovecot/coi/config/read-status"
ENABLED = "/private/vendor/vendor.dovecot/coi/config/enabled"
WAIT = 30.0


def addr(name: str) -> str:
    return f"{name}@example.org"


def wait_until(what: str, cond, timeout: float = WAIT, diag=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{diag()}")
        time.sleep(0.05)


SUBS = "/private/vendor/vendor.dovecot/webpush/subscriptions/"
SUBJECT = "mailto:postmaster@example.org"


class Env:
    """A running Dovecot + sidecar + webhook receiver (+ push service)."""

    def __init__(self, dc: DovecotInstance, sc: PushSidecar, hooks: WebhookReceiver,
                 push: PushReceiver | None = None):
        self.dc, self.sc, self.hooks, self.push = dc, sc, hooks, push

    def subscribe(self, user: str, sub, msgtype: str = "chat") -> None:
        """Web Push subscription over IMAP, validated as a client does."""
        with self.dc.imap(user) as c:
            c.setmetadata_ok(SUBS + sub.id, sub.client_json(msgtype))
            req = self.push.wait_for(1, sub)[0]
            c.setmetadata_ok(SUBS + sub.id + "/validate", req.json()["validation"])
            assert c.noop() == []

    def diag(self) -> str:
        return "\n".join([self.sc.log_tail(), self.dc.log.tail(40)])

    def notices(self, kind: str) -> list[dict]:
        out = []
        for r in self.hooks.requests:
            try:
                body = r.json()
            except ValueError:
                continue
            if body.get("type") == kind:
                out.append(body)
        return out

    def recall_state(self, client, request_id: str) -> dict | None:
        value = client.getmetadata(RECALL + request_id)
        return None if value is None else json.loads(value)

    def wait_recall_done(self, client, request_id: str, timeout: float = WAIT) -> dict:
        return wait_until(f"recall {request_id} done",
                          lambda: (lambda s: s if s and s["state"] == "done" else None)(
                              self.recall_state(client, request_id)),
                          timeout, self.diag)


def is_24() -> bool:
    return os.environ.get("COI_DOVECOT_VERSION", "2.3").startswith("2.4")


def doveadm_config(port: int) -> str:
    """The doveadm HTTP API on 127.0.0.1:``port`` (2.3 or 2.4 syntax)."""
    if not is_24():
        return doveadm_http_config(port, API_KEY)
    return (f"doveadm_api_key = {API_KEY}\nservice doveadm {{\n  inet_listener http {{\n"
            f"    listen = 127.0.0.1\n    port = {port}\n  }}\n}}\n")


def hold_config(ms: int) -> str:
    """dovecot.conf lines passing COI_TEST_RECALL_HOLD_MS to Dovecot's processes
    (docs/recall.md, "Testing the race")."""
    if is_24():
        return f"import_environment {{\n  COI_TEST_RECALL_HOLD_MS = {ms}\n}}\n"
    return f"import_environment = $import_environment COI_TEST_RECALL_HOLD_MS={ms}\n"


def start_env(users: list[str], plugin_settings: dict[str, str], extra_config: str = "",
              webpush: bool = False, **dovecot_kw) -> tuple:
    """Starts everything; returns (env, stop)."""
    hooks = WebhookReceiver()
    hooks.__enter__()
    port = free_ports(1)[0]
    sc = PushSidecar([Webhook("ops", hooks.url("/hook"), kinds=["recall", "read"])], log_level="debug",
                     subject=SUBJECT)
    push = PushReceiver(vapid_public_key=sc.vapid_public_key, subject=SUBJECT) if webpush else None
    key_file = sc.root / "doveadm-api-key"
    key_file.write_text(API_KEY + "\n")
    sc.push_sections = sc.push_config(webpush=webpush, doveadm_url=f"http://127.0.0.1:{port}/doveadm/v1",
                                      doveadm_key_file=key_file)
    dc = None

    def stop():
        if dc is not None:
            dc.stop()
        if push is not None:
            push.close()
        sc.close()
        hooks.__exit__(None, None, None)

    try:
        sc.start()
        settings = dict(sc.plugin_settings())
        if webpush:
            wait_until("the VAPID key", sc.vapid_public_key.exists)
            settings["coi_webpush_vapid_key"] = str(sc.vapid_public_key)
        settings.update(plugin_settings)
        dc = DovecotInstance(plugin_settings=settings, extra_config=doveadm_config(port) + extra_config,
                             users=users, **dovecot_kw)
        dc.start()
    except BaseException:
        stop()
        raise
    return Env(dc, sc, hooks, push), stop

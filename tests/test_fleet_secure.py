"""Fleet mode with the NATS server locked down as docs/fleet.md tells
operators to run it: TLS with a private CA, client certificates verified,
and accounts with a user for the publishers and one for the dispatchers.

Real parts only: one ``nats-server`` with JetStream, ``tls { verify: true }``
and an ``accounts`` block; certificates from a throwaway CA
(tests/harness/tlsca.py); Dovecot with the plugin and its publishing
``coi-sidecar``; a ``coi-sidecar dispatch``; an HTTP receiver that checks
every Standard Webhooks signature.

* with the right settings the chats arrive as verified webhooks, and the
  server's own connection list shows both clients on TLS, each
  authenticated as its own user;
* a publisher with a wrong password, without the private CA, or without its
  client certificate is refused by the server: delivery goes on, the events
  wait in the spool, the failures are counted and logged; once the setting
  is mended (and the sidecar restarted, as fleet settings need), every one
  of them arrives.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness import DovecotInstance
from tests.harness import messages as M
from tests.harness.nats import NatsCluster
from tests.harness.receiver import WebhookReceiver, verify
from tests.harness.sidecar import TEST_SECRET, SidecarProcess, Webhook
from tests.harness.tlsca import TestCA

USERS = {"alice": {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}}
ENVELOPE_FROM = "envelope-sender@example.net"
PUBLISHER, DISPATCHER = "coi-publisher", "coi-dispatcher"


def server_conf(ca: TestCA, cert: Path, key: Path, passwords: dict[str, str]) -> str:
    users = "\n".join(f'      {{ user: "{u}", password: "{p}" }}' for u, p in passwords.items())
    return f"""
tls {{
  cert_file: "{cert}"
  key_file: "{key}"
  ca_file: "{ca.ca_file}"
  verify: true
  timeout: 5
}}
accounts {{
  COI {{
    jetstream: enabled
    users: [
{users}
    ]
  }}
}}
"""


def jetstream_toml(cluster: NatsCluster, *, user: str, password_file: Path, ca: Path | None,
                   client: tuple[Path, Path] | None) -> str:
    urls = ", ".join(f'"{u}"' for u in cluster.urls())
    lines = ["[queue]", 'engine = "jetstream"', "", "[jetstream]", f"servers = [{urls}]",
             'stream = "COI_SECURE"', 'dead_letter_stream = "COI_SECURE_DEAD"', "replicas = 1",
             "publish_timeout_secs = 2", "ack_wait_secs = 4",
             f'user = "{user}"', f'password_file = "{password_file}"']
    if ca is not None:
        lines.append(f'tls_ca_file = "{ca}"')
    if client is not None:
        lines += [f'tls_client_cert_file = "{client[0]}"', f'tls_client_key_file = "{client[1]}"']
    return "\n".join(lines) + "\n"


class Secure:
    """The locked-down fleet: CA, server, publisher backend, dispatcher."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.ca = TestCA(tmp / "pki")
        srv_cert, srv_key = self.ca.issue("nats-server", server=True)
        self.pub_client = self.ca.issue("publisher", server=False)
        self.disp_client = self.ca.issue("dispatcher", server=False)
        self.passwords = {PUBLISHER: "pub-Secret-1", DISPATCHER: "disp-Secret-2"}
        self.pub_pw = tmp / "publisher.password"
        self.disp_pw = tmp / "dispatcher.password"
        self.pub_pw.write_text(self.passwords[PUBLISHER] + "\n")
        self.disp_pw.write_text(self.passwords[DISPATCHER] + "\n")
        self.cluster = NatsCluster(1, extra_conf=server_conf(self.ca, srv_cert, srv_key, self.passwords))
        self.rx = WebhookReceiver()
        self.hooks = [Webhook("main", self.rx.url("/hook"))]
        self.sc = SidecarProcess(self.hooks, extra_toml=self.publisher_toml())
        self.dc = DovecotInstance(plugin=True, users=USERS, plugin_settings=self.sc.plugin_settings())
        self.dispatcher = SidecarProcess(self.hooks, command="dispatch", extra_toml=jetstream_toml(
            self.cluster, user=DISPATCHER, password_file=self.disp_pw, ca=self.ca.ca_file,
            client=self.disp_client))

    def publisher_toml(self, *, ca: bool = True, client: bool = True) -> str:
        return jetstream_toml(self.cluster, user=PUBLISHER, password_file=self.pub_pw,
                              ca=self.ca.ca_file if ca else None,
                              client=self.pub_client if client else None)

    def start(self) -> "Secure":
        self.cluster.start()
        self.dc.start()
        self.sc.start()
        self.dispatcher.start()
        return self

    def connections(self) -> list[dict]:
        url = f"http://127.0.0.1:{self.cluster.http_ports[0]}/connz?auth=true"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r).get("connections") or []

    def delivered(self) -> set[str]:
        got = set()
        for r in self.rx.requests:
            if r.path == "/hook" and r.ok:
                verify(TEST_SECRET, r.headers, r.body)
                got.add(r.json()["data"]["message_id"])
        return got

    def send(self, n: int) -> set[str]:
        msgs = [M.coi_chat(to=self.dc.address("alice")) for _ in range(n)]
        for m in msgs:
            assert self.dc.lmtp_deliver(m.raw, ["alice"], sender=ENVELOPE_FROM)[0].ok
        return {f"<{m.message_id}>" for m in msgs}

    def wait_delivered(self, want: set[str], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not want <= self.delivered():
            assert time.monotonic() < deadline, (
                f"{len(want - self.delivered())} of {len(want)} never arrived{self.diag()}")
            time.sleep(0.2)

    def diag(self) -> str:
        return (f"\n--- publisher:\n{self.sc.log_tail(25)}\n--- dispatcher:\n{self.dispatcher.log_tail(25)}"
                f"\n{self.cluster.log_tail(15)}\n--- {self.rx.log_tail(10)}")

    def close(self, failed: bool) -> None:
        for p in (self.sc, self.dispatcher):
            p.failed = p.failed or failed
            p.close()
        self.dc.failed = self.dc.failed or failed
        self.dc.stop()
        self.cluster.failed = self.cluster.failed or failed
        self.cluster.close()
        self.rx.close()


@pytest.fixture
def secure(request, tmp_path):
    fleet = Secure(tmp_path)
    try:
        yield fleet.start()
    finally:
        rep = getattr(request.node, "rep_call", None)
        failed = rep is None or rep.failed
        if failed:
            print(f"\n==== diagnostics of {request.node.name}{fleet.diag()}", flush=True)
        fleet.close(failed)


def test_tls_with_client_certificates_and_accounts_carry_the_chats(secure):
    sent = secure.send(3)
    secure.wait_delivered(sent)
    conns = {c.get("authorized_user"): c for c in secure.connections()}
    assert {PUBLISHER, DISPATCHER} <= set(conns), f"connections by user: {sorted(map(str, conns))}"
    for user in (PUBLISHER, DISPATCHER):
        c = conns[user]
        assert c.get("tls_version", "").startswith("1.") and c.get("account") == "COI", json.dumps(c)
    stored = secure.sc.metrics().value("coi_fleet_published_events_total", result="stored")
    assert stored >= 3, stored
    shown = secure.sc.cli("check-config")
    assert shown.returncode == 0, shown.stderr
    assert "TLS required" in shown.stdout and f"user {PUBLISHER}" in shown.stdout, shown.stdout
    assert secure.passwords[PUBLISHER] not in shown.stdout + secure.sc.log_text()


@pytest.mark.parametrize("fault", ["wrong password", "no CA", "no client certificate"])
def test_a_refused_publisher_keeps_the_events_until_the_setting_is_mended(secure, fault):
    first = secure.send(1)
    secure.wait_delivered(first)
    sc = secure.sc
    sc.stop()
    if fault == "wrong password":
        secure.pub_pw.write_text("not-the-password\n")
    else:
        sc.extra_toml = secure.publisher_toml(ca=fault != "no CA", client=fault != "no client certificate")
        sc.write_config()
    sc.start()
    during = secure.send(5)
    deadline = time.monotonic() + 30
    while sc.metrics().value("coi_fleet_published_events_total", result="failed") == 0:
        assert time.monotonic() < deadline, f"publishing never failed ({fault}){secure.diag()}"
        time.sleep(0.2)
    time.sleep(1)
    assert not during & secure.delivered(), f"{fault}: delivered although the server refused the publisher"
    assert sum(size for _, size in sc.spool_files()) > 0, "the events must wait in the spool"
    # The operator learns why from one warning, not from "IO error".
    why = {"wrong password": "authorization violation", "no CA": "invalid peer certificate",
           "no client certificate": "badcertificate"}[fault]
    warnings = [ln for ln in sc.log_text().lower().splitlines() if "cannot connect to the nats servers" in ln]
    assert warnings and why in warnings[-1], f"{fault}: the warning does not say {why!r}: {warnings}{secure.diag()}"

    sc.stop()
    secure.pub_pw.write_text(secure.passwords[PUBLISHER] + "\n")
    sc.extra_toml = secure.publisher_toml()
    sc.write_config()
    sc.start()
    secure.wait_delivered(first | during, timeout=60)
    secure.dc.assert_no_panic_or_fatal()

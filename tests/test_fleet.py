"""Fleet mode end to end (docs/fleet.md): backends publish to a real 3-node
JetStream cluster, shared dispatchers send the webhooks.

Real parts only: three ``nats-server`` nodes clustered on loopback ports
(stream replicas 3), two Dovecot instances with the plugin, each with its own
``coi-sidecar`` whose intake publishes (``[queue] engine = "jetstream"``), two
``coi-sidecar dispatch`` processes, one HTTP receiver that checks every
Standard Webhooks signature.

* during a stream of LMTP deliveries to both backends, one NATS node, one
  dispatcher and one publishing sidecar are SIGKILLed: every stored message
  still reaches the receiver as a verified webhook, each under one event id;
  duplicates are counted and reported;
* with the whole cluster stopped, a publishing sidecar keeps the events in
  its spool (nothing delivered, the offset does not move, the failures are
  counted); when the cluster is back, they all arrive.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest

from tests.harness import DovecotInstance
from tests.harness import messages as M
from tests.harness.nats import NatsCluster
from tests.harness.receiver import SignatureError, WebhookReceiver, verify
from tests.harness.sidecar import TEST_SECRET, SidecarProcess, Webhook

ACTIVE = {"coi_default_enabled": "yes", "coi_default_message_filter": "active"}
USERS = {"alice": ACTIVE, "bob": {}}
ENVELOPE_FROM = "envelope-sender@example.net"
ACK_WAIT_SECS = 4


def fleet_toml(cluster: NatsCluster, stream: str, replicas: int = 3) -> str:
    urls = ", ".join(f'"{u}"' for u in cluster.urls())
    return (
        "[queue]\nengine = \"jetstream\"\n\n"
        "[jetstream]\n"
        f"servers = [{urls}]\n"
        f"stream = \"{stream}\"\n"
        f"dead_letter_stream = \"{stream}_DEAD\"\n"
        f"replicas = {replicas}\n"
        "publish_timeout_secs = 2\n"
        f"ack_wait_secs = {ACK_WAIT_SECS}\n"
    )


@dataclass
class Fleet:
    cluster: NatsCluster
    rx: WebhookReceiver
    backends: list[tuple[DovecotInstance, SidecarProcess]] = field(default_factory=list)
    dispatchers: list[SidecarProcess] = field(default_factory=list)

    def diag(self) -> str:
        parts = [""]
        for i, (dc, sc) in enumerate(self.backends):
            parts.append(f"--- backend {i} sidecar:\n{sc.log_tail(25)}")
        for i, d in enumerate(self.dispatchers):
            parts.append(f"--- dispatcher {i}:\n{d.log_tail(25)}")
        parts.append(self.cluster.log_tail(10))
        parts.append("--- " + self.rx.log_tail(10))
        return "\n".join(parts)


@pytest.fixture
def make_fleet(request):
    made: list[Fleet] = []
    extras: list = []

    def make(backends: int, dispatchers: int, stream: str) -> Fleet:
        cluster = NatsCluster(3)
        extras.append(cluster)
        cluster.start()
        rx = WebhookReceiver()
        extras.append(rx)
        fleet = Fleet(cluster, rx)
        made.append(fleet)
        toml = fleet_toml(cluster, stream)
        hooks = [Webhook("main", rx.url("/hook"), concurrency=8)]
        for _ in range(backends):
            sc = SidecarProcess(hooks, extra_toml=toml)
            dc = DovecotInstance(plugin=True, users=USERS, plugin_settings=sc.plugin_settings())
            fleet.backends.append((dc, sc))
            dc.start()
            sc.start()
        for _ in range(dispatchers):
            d = SidecarProcess(hooks, extra_toml=toml, command="dispatch")
            fleet.dispatchers.append(d)
            d.start()
        return fleet

    yield make
    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    for fleet in made:
        if failed:
            print(f"\n==== diagnostics of {request.node.name}{fleet.diag()}", flush=True)
        procs = [sc for _, sc in fleet.backends] + fleet.dispatchers
        for p in procs:
            p.failed = p.failed or failed
            try:
                p.close()
            except Exception as exc:  # noqa: BLE001 - stop everything, then report
                print(f"teardown: {exc!r}")
        for dc, _ in fleet.backends:
            dc.failed = dc.failed or failed
            try:
                dc.stop()
            except Exception as exc:  # noqa: BLE001
                print(f"teardown: {exc!r}")
    for x in extras:
        if failed and isinstance(x, NatsCluster):
            x.failed = True
        try:
            x.close()
        except Exception as exc:  # noqa: BLE001
            print(f"teardown: {exc!r}")


def verified_by_message_id(rx: WebhookReceiver) -> tuple[dict[str, set], int]:
    """Message-ID -> webhook-ids of 2xx requests whose signature verified; and the 2xx count."""
    out: dict[str, set] = defaultdict(set)
    ok = 0
    for r in rx.requests:
        if r.path != "/hook" or not r.ok:
            continue
        try:
            wid = verify(TEST_SECRET, r.headers, r.body)
        except SignatureError as exc:
            raise AssertionError(f"a delivered webhook does not verify: {exc}: {r.short()}") from None
        body = r.json()
        assert body["data"]["id"] == wid, f"payload id != webhook-id: {r.short()}"
        out[body["data"]["message_id"]].add(wid)
        ok += 1
    return out, ok


def wait_all(fleet: Fleet, sent: set[str], timeout: float) -> dict[str, set]:
    deadline = time.monotonic() + timeout
    while True:
        got, _ = verified_by_message_id(fleet.rx)
        missing = sent - set(got)
        if not missing:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(missing)} of {len(sent)} stored messages never arrived as a "
                                 f"verified webhook, e.g. {sorted(missing)[:5]}{fleet.diag()}")
        time.sleep(0.2)


def test_kill_a_nats_node_a_dispatcher_and_a_publisher_during_deliveries(make_fleet):
    fleet = make_fleet(backends=2, dispatchers=2, stream="COI_CHAOS")
    # A receiver slower than the deliveries (2 dispatchers x 8 x 50 ms): each
    # dispatcher holds messages when it is killed.
    fleet.rx.slow(0.05)
    total = 800
    #: Deliveries per second per backend: slow enough that the stream of
    #: deliveries outlasts a stream leader election (a few seconds).
    rate = 50
    jobs: list[tuple[int, M.TestMessage, str]] = []
    for i in range(total):
        b = i % 2
        dc = fleet.backends[b][0]
        user = "alice" if i % 3 else "bob"
        msg = M.coi_chat(to=dc.address(user)) if user == "alice" else M.plain_mail(to=dc.address(user))
        jobs.append((b, msg, user))
    done = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(b: int):
        dc = fleet.backends[b][0]
        try:
            start = time.monotonic()
            for k, (raw, user) in enumerate([(m.raw, u) for bb, m, u in jobs if bb == b]):
                res = dc.lmtp_deliver(raw, [user], sender=ENVELOPE_FROM)
                assert res[0].ok, f"backend {b}: LMTP delivery failed: {res}"
                with lock:
                    done["n"] += 1
                time.sleep(max(0.0, start + (k + 1) / rate - time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in range(2)]
    for t in threads:
        t.start()

    def at(fraction: float) -> int:
        while done["n"] < total * fraction and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        return done["n"]

    kills = []
    # Dispatcher 0 is killed while it holds messages: they come back to
    # dispatcher 1 after ack_wait.
    at(0.15)
    deadline = time.monotonic() + 30
    while (held_at_kill := fleet.dispatchers[0].metrics().value("coi_fleet_dispatch_in_flight_messages")) == 0:
        assert time.monotonic() < deadline, "dispatcher 0 never held a message" + fleet.diag()
        time.sleep(0.02)
    kills.append(("dispatcher 0", done["n"]))
    assert fleet.dispatchers[0].kill() == -9
    # A NATS node (a stream replica, perhaps its leader): the stream and the
    # consumer elect new leaders; publishes and pulls are retried meanwhile.
    kills.append(("nats n0", at(0.35)))
    fleet.cluster.kill_node(0)
    kills.append(("publishing sidecar of backend 1", at(0.65)))
    assert fleet.backends[1][1].kill() == -9
    time.sleep(1.0)
    # The backend's events waited in its spool; its sidecar comes back (as
    # systemd would restart it) and publishes them.
    fleet.backends[1][1].start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "deliveries did not finish"
    if errors:
        raise errors[0]
    assert all(n < total for _, n in kills), f"a kill came after the stream ended: {kills}"

    sent = {f"<{m.message_id}>" for _, m, _ in jobs}
    got = wait_all(fleet, sent, timeout=120)
    unexpected = set(got) - sent
    assert not unexpected, f"events for messages the test did not send: {sorted(unexpected)[:5]}"
    split = {m: ids for m, ids in got.items() if len(ids) != 1}
    assert not split, f"a message under more than one event id: {list(split.items())[:3]}"
    _, ok = verified_by_message_id(fleet.rx)
    duplicates = ok - len(sent)
    # The surviving dispatcher acknowledges everything (the dead one's
    # messages come back to it after ack_wait); the stream ends empty.
    d = fleet.dispatchers[1]
    deadline = time.monotonic() + 30
    while True:
        m = d.metrics()
        info = fleet.cluster.stream_info("COI_CHAOS") or {}
        left = (info.get("state") or {}).get("messages")
        if left == 0 and m.value("coi_fleet_dispatch_in_flight_messages") == 0:
            break
        assert time.monotonic() < deadline, f"stream not drained: {left} messages left, {m.value('coi_fleet_dispatch_in_flight_messages')} held{fleet.diag()}"
        time.sleep(0.3)
    assert held_at_kill > 0, "the dispatcher killed held nothing: the kill proved nothing"
    # What it held came back from the stream to the survivor after ack_wait.
    assert m.value("coi_fleet_redeliveries_total") > 0, "no redelivery after a dispatcher died holding messages"
    assert m.value("coi_fleet_acked_messages_total", outcome="delivered") > 0
    published = sum(sc.metrics().value("coi_fleet_published_events_total", result="stored")
                    for _, sc in fleet.backends)
    print(f"\nfleet chaos: {total} stored messages, {ok} verified 2xx webhooks, "
          f"{duplicates} duplicates; kills at (what, deliveries done): {kills}; "
          f"messages held by dispatcher 0 when killed: {held_at_kill:.0f}; "
          f"events stored in the stream by the publishers still running: {published:.0f}; "
          f"redeliveries seen by dispatcher 1: {m.value('coi_fleet_redeliveries_total'):.0f}")
    for dc, _ in fleet.backends:
        dc.assert_no_panic_or_fatal()


def test_stopped_cluster_keeps_events_in_the_spool_until_it_is_back(make_fleet):
    fleet = make_fleet(backends=1, dispatchers=1, stream="COI_OUTAGE")
    dc, sc = fleet.backends[0]
    first = M.coi_chat(to=dc.address("alice"))
    assert dc.lmtp_deliver(first.raw, ["alice"], sender=ENVELOPE_FROM)[0].ok
    wait_all(fleet, {f"<{first.message_id}>"}, timeout=30)

    fleet.cluster.stop()
    msgs = [M.coi_chat(to=dc.address("alice")) for _ in range(40)]
    results = dc.lmtp_deliver_parallel([(m.raw, "alice") for m in msgs], 2)
    assert all(r.ok for r in results), "delivery must not depend on the sidecar or the stream"
    deadline = time.monotonic() + 30
    while sc.metrics().value("coi_fleet_published_events_total", result="failed") == 0:
        assert time.monotonic() < deadline, "publishing never failed with the cluster stopped" + fleet.diag()
        time.sleep(0.2)
    time.sleep(2)
    got, _ = verified_by_message_id(fleet.rx)
    assert set(got) == {f"<{first.message_id}>"}, "nothing can be delivered while the stream is down"
    spool_bytes = sum(size for _, size in sc.spool_files())
    assert spool_bytes > 0, f"the events must wait in the spool: {sc.spool_files()}"

    fleet.cluster.start()
    sent = {f"<{m.message_id}>" for m in msgs} | {f"<{first.message_id}>"}
    got = wait_all(fleet, sent, timeout=90)
    _, ok = verified_by_message_id(fleet.rx)
    m = sc.metrics()
    print(f"\nfleet outage: {len(msgs)} messages during the outage all arrived; "
          f"{ok - len(sent)} duplicates; failed publishes counted: "
          f"{m.value('coi_fleet_published_events_total', result='failed'):.0f}")
    dc.assert_no_panic_or_fatal()


def test_dispatch_retries_dead_letters_and_replays_like_local_mode(make_fleet):
    """A dispatcher runs the local mode's senders: the retry schedule with
    ``Retry-After``, a 400 as a dead letter (acknowledged only then, copied to
    the dead-letter stream), listed and replayed with ``dead-letters``."""
    fleet = make_fleet(backends=1, dispatchers=1, stream="COI_DL")
    dc, _ = fleet.backends[0]
    d = fleet.dispatchers[0]
    fleet.rx.fail_first(2, status=503, retry_after=1)
    first = M.coi_chat(to=dc.address("alice"))
    assert dc.lmtp_deliver(first.raw, ["alice"], sender=ENVELOPE_FROM)[0].ok
    wait_all(fleet, {f"<{first.message_id}>"}, timeout=30)
    reqs = fleet.rx.requests
    assert [r.status for r in reqs] == [503, 503, 200], fleet.rx.log_tail()
    assert len({r.webhook_id for r in reqs}) == 1, "a retry keeps the event id"
    gaps = [b.mono - a.mono for a, b in zip(reqs, reqs[1:])]
    assert all(g >= 0.75 for g in gaps), f"retried sooner than the 1 s schedule / Retry-After: {gaps}"

    fleet.rx.fail_first(1, status=400)
    second = M.coi_chat(to=dc.address("alice"))
    assert dc.lmtp_deliver(second.raw, ["alice"], sender=ENVELOPE_FROM)[0].ok
    deadline = time.monotonic() + 30
    while d.metrics().value("coi_fleet_acked_messages_total", outcome="dead_letter") < 1:
        assert time.monotonic() < deadline, "the dead letter's message was never acknowledged" + fleet.diag()
        time.sleep(0.1)
    m = d.metrics()
    assert m.value("coi_dead_letters_total", endpoint="main") == 1
    assert m.value("coi_fleet_acked_messages_total", outcome="delivered") == 1
    dead = fleet.cluster.stream_info("COI_DL_DEAD") or {}
    assert (dead.get("state") or {}).get("messages") == 1, f"dead-letter stream: {dead}"
    events = fleet.cluster.stream_info("COI_DL") or {}
    assert (events.get("state") or {}).get("messages") == 0, f"event stream not empty: {events}"
    event_id = fleet.rx.requests[-1].webhook_id
    listed = d.cli("dead-letters", "list")
    assert listed.returncode == 0 and event_id in listed.stdout, (listed.stdout, listed.stderr)
    replay = d.cli("dead-letters", "replay", event_id)  # while the dispatcher runs
    assert replay.returncode == 0, (replay.stdout, replay.stderr)
    got = wait_all(fleet, {f"<{first.message_id}>", f"<{second.message_id}>"}, timeout=30)
    assert got[f"<{second.message_id}>"] == {event_id}
    assert "0 dead letter(s)" in d.cli("dead-letters", "list").stdout

    # The fleet-wide view: the dead-letter stream, listed and replayed
    # through the event stream (for a dispatcher that is gone, or from any host).
    fleet.rx.fail_first(1, status=400)
    third = M.coi_chat(to=dc.address("alice"))
    assert dc.lmtp_deliver(third.raw, ["alice"], sender=ENVELOPE_FROM)[0].ok
    deadline = time.monotonic() + 30
    while d.metrics().value("coi_fleet_acked_messages_total", outcome="dead_letter") < 2:
        assert time.monotonic() < deadline, "the second dead letter was never acknowledged" + fleet.diag()
        time.sleep(0.1)
    third_id = fleet.rx.requests[-1].webhook_id
    listed = d.cli("dead-letters", "list", "--stream")
    assert listed.returncode == 0, (listed.stdout, listed.stderr)
    assert third_id in listed.stdout and event_id in listed.stdout, listed.stdout
    assert "2 dead letter(s) in the stream" in listed.stdout, listed.stdout
    replay = d.cli("dead-letters", "replay", "--stream", third_id)
    assert replay.returncode == 0 and "1 dead letter(s) replayed" in replay.stdout, (replay.stdout, replay.stderr)
    got = wait_all(fleet, {f"<{m.message_id}>" for m in (first, second, third)}, timeout=30)
    assert got[f"<{third.message_id}>"] == {third_id}, "a replay keeps the event id"
    after = d.cli("dead-letters", "list", "--stream").stdout
    assert third_id not in after and "1 dead letter(s) in the stream" in after, after
    assert "0 dead letter(s)" in d.cli("dead-letters", "list").stdout, "the dispatcher's own dead letter went back to pending"

"""The \\Seen race of recall (docs/recall.md, "Race freedom"), repeated.

A recall must never remove a copy whose \\Seen was committed, and a \\Seen
committed while the recall runs must win. The plugin checks the flag and
writes its expunge request while holding the mailbox's transaction log lock.
Here the recipient's IMAP session sets \\Seen at a random moment while the
recall runs, round after round. The plugin is told to wait inside its locked
section (COI_TEST_RECALL_HOLD_MS), so the \\Seen lands there in many rounds:
without the lock it would be committed between the check and the expunge.

Ground truth is the mailbox's own transaction log (``doveadm dump`` of
dovecot.index.log): in no round may a \\Seen flag update of the copy come
before the recall's expunge request. Each round also checks what the client
and the sender see: ``already-read`` rounds keep the copy with \\Seen,
``recalled`` rounds remove it, and the recipient's session is told EXPUNGE.
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time

import pytest

from tests.harness import IdleClient
from tests.harness import submission as S
from tests.harness.paths import find_binary
from tests.recall_env import RECALL, addr, hold_config, start_env

ROUNDS = 40
HOLD_MS = 80
MAIL_SEEN = 8


@pytest.fixture(scope="module")
def env():
    e, stop = start_env(["alice", "carol"], {"coi_recall": "yes", "coi_sender_trust": "received"},
                        extra_config=hold_config(HOLD_MS))
    try:
        yield e
    finally:
        stop()


def log_records(maildir) -> list[tuple[str, str]]:
    """(type, detail) of every record of INBOX's transaction log, oldest first."""
    out = []
    for name in ("dovecot.index.log.2", "dovecot.index.log"):
        path = maildir / name
        if not path.exists():
            continue
        text = subprocess.run([find_binary("doveadm"), "dump", str(path)], check=True,
                              capture_output=True, text=True).stdout
        kind = None
        for line in text.splitlines():
            m = re.match(r"record: offset=\d+, type=([^,]+),", line)
            if m:
                kind = m[1]
            elif kind and line.startswith(" - "):
                out.append((kind, line[3:]))
    return out


def seen_before_expunge(records, uid: int) -> bool:
    """Whether a session's \\Seen update of ``uid`` precedes the expunge request of it."""
    seen_at = expunge_at = None
    for i, (kind, detail) in enumerate(records):
        if kind == "flag-update" and seen_at is None:
            m = re.match(r"uids=(\d+)-(\d+) \(flags \+(\d+)-", detail)
            if m and int(m[1]) <= uid <= int(m[2]) and int(m[3]) & MAIL_SEEN:
                seen_at = i
        if kind == "expunge-guid" and expunge_at is None and re.match(rf"uid={uid} ", detail):
            expunge_at = i
    return seen_at is not None and expunge_at is not None and seen_at < expunge_at


def test_a_committed_seen_always_wins(env):
    alice, carol = addr("alice"), addr("carol")
    maildir = env.dc.home("carol") / "Maildir"
    session = IdleClient(env.dc.host, env.dc.imap_port, carol)
    outcomes = {"already-read": 0, "recalled": 0}
    contested = 0
    rng = random.Random(15)
    try:
        session.select("INBOX")
        for n in range(ROUNDS):
            raw, mid = S.submitted(alice, [carol], f"race {n}")
            assert all(r.ok for r in env.dc.lmtp_deliver(raw, [carol], sender=alice))
            session.noop()
            session.command_ok(f"FETCH {len(session.view.uids)} (UID FLAGS)")
            uid = session.view.uids[-1]
            assert uid is not None
            # a third of the rounds read right away, the rest any time
            delay = rng.uniform(0.0, 0.005) if n % 3 == 0 else rng.uniform(0.0, 0.2)
            stored = {}

            def read_it():
                time.sleep(delay)
                start = time.monotonic()
                stored["status"], stored["text"], _ = session.command(f"UID STORE {uid} +FLAGS (\\Seen)")
                stored["secs"] = time.monotonic() - start

            reader = threading.Thread(target=read_it)
            with env.dc.imap(alice) as a:
                # the reader's clock starts with the request: some rounds
                # read before the recall gets there, many while it holds
                # the lock, some after
                reader.start()
                a.setmetadata_ok(RECALL + f"race{n}", mid)
                reader.join(10)
                done = env.wait_recall_done(a, f"race{n}")
            outcome = done["recipients"][0]["outcome"]
            assert outcome in outcomes, done
            outcomes[outcome] += 1
            # a STORE that waited for the recall's locked section
            contested += stored.get("secs", 0) > HOLD_MS / 2000
            lines = session.noop()
            records = log_records(maildir)
            assert not seen_before_expunge(records, uid), (n, uid, outcome, stored, records[-12:])
            present = uid in session.view.uids
            if outcome == "already-read":
                assert present and "\\Seen" in session.view.flags.get(uid, []) + \
                    [f for l in lines for f in (["\\Seen"] if b"\\Seen" in l else [])], (n, lines)
            else:
                assert not present and uid in session.view.expunged, (n, lines, stored)
            assert not session.view.violations, session.view.violations
    finally:
        session.close()
    print(f"\nRACE outcomes over {ROUNDS} rounds: {outcomes}; "
          f"{contested} STOREs waited for the recall's locked section")
    # both sides of the race happened, and \\Seen landed inside the
    # critical section, or the test proved nothing
    assert outcomes["already-read"] > 0 and outcomes["recalled"] > 0, outcomes
    assert contested > 0, contested
    env.dc.assert_no_panic_or_fatal()

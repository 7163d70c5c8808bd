#!/usr/bin/python3
"""Reproducer (not a pytest module): concurrent first chats racing on chat-folder creation.

Owns a stress scenario too nondeterministic for the test suite. For each of
N fresh users (COI enabled+active, COI/Chats not created yet) it delivers K
chats at once over K LMTP connections and reports users where any chat did
not end up in COI/Chats. ``--stock`` runs the same race without the plugin,
using ``lmtp_save_to_detail_mailbox`` + ``user+COI/Chats`` (Dovecot's own
autocreate shows the same race: "Mailbox doesn't exist: COI").

Usage: /usr/bin/python3 tests/repro_concurrent_chat_folder.py [--users 30] [--parallel 8] [--stock]
Exit status: 0 no misfiled chat, 1 at least one.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import DovecotInstance  # noqa: E402
from tests.harness import messages as M  # noqa: E402


def race_one(dc: DovecotInstance, user: str, parallel: int, stock: bool) -> dict[str, int]:
    msgs = [M.coi_chat() for _ in range(parallel)]
    rcpt = dc.rcpt(user, "COI/Chats") if stock else dc.address(user)
    sessions = [dc.lmtp_session() for _ in msgs]
    barrier = threading.Barrier(parallel)
    codes = [0] * parallel

    def work(i: int) -> None:
        barrier.wait()
        codes[i] = sessions[i].deliver(msgs[i].raw, [rcpt])[0].code

    threads = [threading.Thread(target=work, args=(i,)) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in sessions:
        s.close()
    counts = dc.doveadm.message_counts(user)
    counts["_codes_not_250"] = sum(1 for c in codes if c != 250)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--stock", action="store_true", help="no plugin; +detail autocreate instead")
    args = ap.parse_args()
    users = [f"race{i}" for i in range(args.users)]
    cfg = dict(plugin=False, lmtp_save_to_detail_mailbox=True) if args.stock else dict(plugin=True)
    bad = 0
    with DovecotInstance(users=users, **cfg) as dc:
        if not args.stock:
            for u in users:
                dc.enable_coi(u, "active")
        for u in users:
            counts = race_one(dc, u, args.parallel, args.stock)
            if counts.get("COI/Chats", 0) != args.parallel or counts["_codes_not_250"]:
                bad += 1
                print(f"{u}: {counts}")
        warn = [ln for ln in dc.log.lines() if "Warning" in ln or "Error" in ln]
        print("\n".join(warn[:10]))
    print(f"{bad}/{args.users} users had a chat outside COI/Chats")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

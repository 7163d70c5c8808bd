#!/usr/bin/python3
"""Turns the logs of bench/versions.sh into the "2.3 and 2.4" section of bench/REPORT.md.

Owns that section only: reads OUTDIR/<version>-<run>.txt, writes markdown
tables with a 2.3 and a 2.4 column for every figure (medians of interleaved
rounds, and the ratios the targets are about), the machine, each run's exact
command and the load average around it. ``--into bench/REPORT.md`` replaces
the section between its markers (bench/report.py keeps it when it rewrites
the rest of the file).

Usage: /usr/bin/python3 bench/versions_report.py OUTDIR [--into bench/REPORT.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

BEGIN = "<!-- versions-report: begin (bench/versions_report.py) -->"
END = "<!-- versions-report: end -->"
VERSIONS = ("2.3", "2.4")
RUNS = [
    ("hot-maildir", "one hot mailbox (1 user, 4 connections), maildir"),
    ("hot-sdbox", "one hot mailbox (1 user, 4 connections), sdbox"),
    ("hot-mdbox", "one hot mailbox (1 user, 4 connections), mdbox"),
    ("many-maildir", "many users (40 users, 4 connections), maildir"),
    ("many-sdbox", "many users (40 users, 4 connections), sdbox"),
    ("push-maildir", "push configured, users without targets (40 users, 4 connections, maildir, "
                     "7 rounds, every user primed with one chat)"),
]
LABELS = {
    "a": "(a) stock: no plugin, all to INBOX",
    "f": "(f) floor: no plugin, sender names the folder (+detail)",
    "b": "(b) coi plugin",
    "c": "(c) Sieve (`sieve_before`: addflag $Chat, fileinto)",
    "e": "(e) coi plugin, events on (spool + sidecar)",
    "p": "(p) (e) + push configured, users without targets",
    "o": "(o) (p) with main's plugin (before the push-target marker)",
}
TARGETS = {"b/f": ("hot: >= 0.90 on one format; many: >= 0.95", None),
           "p/e": (">= 0.98 (push configured costs <= 2 %)", 0.98)}
RATIOS = ["b/f", "b/c", "b/a", "f/a", "e/b", "p/e", "o/e"]


def parse(path: Path) -> dict:
    out = {"medians": {}, "ratios": {}, "per_round": {}, "cmd": "", "load": [], "rounds": {},
           "cpu": {}, "cpu_ratios": {}}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if line.startswith("# ") and " Dovecot " in line and not out["cmd"]:
            out["date"], _, rest = line[2:].partition(" Dovecot ")
            out["cmd"] = rest.split(": ", 1)[1].strip()
        elif line.startswith("# load"):
            out["load"].append(line.split(": ", 1)[1].strip())
        elif m := re.match(r"^\[(\w)\] Dovecot CPU: median (\d+\.\d+) ms per session", line):
            out["cpu"][m.group(1)] = float(m.group(2))
        elif m := re.match(r"^\s+cpu (\w - \w) = (-?\d+\.\d+) ms per session; per round: median "
                           r"(-?\d+\.\d+)", line):
            out["cpu_ratios"][m.group(1).replace(" ", "")] = (float(m.group(2)), float(m.group(3)))
        elif m := re.match(r"^\[(\w)\] .*?\s(\d+\.\d+)\s+((?:\d+\.\d+ ?)+)$", line):
            out["cpu"][m.group(1)] = float(m.group(2))
        elif m := re.match(r"^\s+cpu (\w/\w) = (\d+\.\d+); per round: median (\d+\.\d+)", line):
            out["cpu_ratios"][m.group(1)] = (float(m.group(2)), float(m.group(3)))
        elif m := re.match(r"^\((\w)\) .*?\s(\d+\.\d)\s+((?:\d+ ?)+)$", line):
            out["medians"][m.group(1)] = float(m.group(2))
            out["rounds"][m.group(1)] = m.group(3).split()
        elif m := re.match(r"^\s+(\w/\w) = (\d+\.\d+)(?:.*per round: median (\d+\.\d+))?", line):
            out["ratios"][m.group(1)] = float(m.group(2))
            if m.group(3):
                out["per_round"][m.group(1)] = float(m.group(3))
        elif m := re.match(r"^\((\w)\) [^:]*: median (\d+\.\d+) ms per session"
                           r".*lmtp processes per round \[(.*)\]", line):
            out["medians"][m.group(1)] = float(m.group(2))
            out["rounds"][m.group(1)] = m.group(3)
        elif m := re.match(r"^\s+(\w) - (\w) = (-?\d+\.\d+) ms per session; \w/\w = (\d+\.\d+)",
                           line):
            out["ratios"][f"{m.group(1)}-{m.group(2)}"] = float(m.group(3))
            out["ratios"][f"{m.group(1)}/{m.group(2)}"] = float(m.group(4))
        elif m := re.match(r"^\((\w)\) median (\d+\.\d) system calls per message", line):
            out["medians"][m.group(1)] = float(m.group(2))
        elif m := re.match(r"^\s+(\w) - e = ([+-]\d+\.\d) per message \(([+-]\d+\.\d) %\); by call: (.*)$",
                           line):
            out["ratios"][m.group(1) + "-e"] = (float(m.group(2)), float(m.group(3)), m.group(4))
        elif line.startswith("# exit"):
            out["failed"] = line
    return out


def machine() -> list[str]:
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:  # noqa: BLE001
            return "?"
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), "0")
    d24 = sh("chroot", "/var/cache/coi/trixie", "/usr/sbin/dovecot", "--version")
    return [
        "| | |", "|---|---|",
        f"| CPU | {cpu}, {os.cpu_count()} logical cores (shared: other engineers' tests and "
        "benchmarks ran at the same time, see the load per run) |",
        f"| memory | {int(mem) / 1024 / 1024:.1f} GiB |",
        f"| kernel | Linux {platform.release()} |",
        "| Dovecot 2.3 | " + sh("dovecot", "--version") + " (Debian 12 packages, this host) |",
        f"| Dovecot 2.4 | {d24} (Debian 13 packages in the chroot of scripts/test-dovecot24, "
        "same kernel and disk) |",
        "| 2.4 lmtp defaults | `dovecot_config_version = 2.4.1`: `service lmtp { client_limit = 1; "
        "restart_request_count = 1 }` (one session per process); 2.3: `service_count = 0` "
        "(processes reused) |",
    ]


def fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def section(outdir: Path) -> str:
    logs = {(v, r): parse(outdir / f"{v}-{r}.txt") for v in VERSIONS
            for r, _ in RUNS + [("sessions", "")]}
    out = [BEGIN, "", "## Dovecot 2.3 and 2.4 side by side (issue 14)", "",
           "Generated by `/usr/bin/python3 bench/versions_report.py OUTDIR --into bench/REPORT.md` "
           "from one run of `bench/versions.sh OUTDIR` (commands per table below). Every figure is "
           "the median of 5 interleaved rounds (all variants in turn, then the next round, each "
           "round to fresh users); only ratios count on this shared machine, and the per-round "
           "ratio (neighbours in time) is given next to the ratio of medians.", ""]
    out += machine() + [""]
    for run, title in RUNS:
        out += [f"### {title}", ""]
        present = [v for v in VERSIONS if logs[(v, run)]["medians"]]
        if not present:
            out += ["(not run in this round; bench/logs/issue14/old/ has an earlier 2.3 run)", ""]
            continue
        variants = [k for k in LABELS if any(k in logs[(v, run)]["medians"] for v in VERSIONS)]
        out += ["| msgs/s (median) | 2.3 | 2.4 |", "|---|---|---|"]
        for k in variants:
            out.append(f"| {LABELS[k]} | " + " | ".join(
                fmt(logs[(v, run)]["medians"].get(k)) for v in VERSIONS) + " |")
        for q in RATIOS:
            if not any(q in logs[(v, run)]["ratios"] for v in VERSIONS):
                continue
            cells = []
            for v in VERSIONS:
                r = logs[(v, run)]
                if q not in r["ratios"]:
                    cells.append("–")
                    continue
                pr = r["per_round"].get(q)
                cells.append(f"**{r['ratios'][q]:.3f}**" + (f" (per round {pr:.3f})" if pr else ""))
            target = TARGETS.get(q, ("", None))[0]
            out.append(f"| {q}{' (target ' + target + ')' if target else ''} | " +
                       " | ".join(cells) + " |")
        if any(logs[(v, run)]["cpu"] for v in VERSIONS):
            out += ["", "| Dovecot CPU ms per message (median; all Dovecot processes) | 2.3 | 2.4 |",
                    "|---|---|---|"]
            for k in variants:
                out.append(f"| {LABELS[k]} | " + " | ".join(
                    fmt(logs[(v, run)]["cpu"].get(k), 3) for v in VERSIONS) + " |")
            for q in ("b/f", "b/c", "b/a", "e/b", "p/e", "o/e"):
                if not any(q in logs[(v, run)]["cpu_ratios"] for v in VERSIONS):
                    continue
                cells = []
                for v in VERSIONS:
                    c = logs[(v, run)]["cpu_ratios"].get(q)
                    cells.append("–" if c is None else f"**{c[0]:.3f}** (per round {c[1]:.3f})")
                out.append(f"| CPU {q} | " + " | ".join(cells) + " |")
        out.append("")
        for v in VERSIONS:
            r = logs[(v, run)]
            if r["cmd"]:
                out.append(f"- {v}: `{r['cmd']}` at {r.get('date', '?')}, load "
                           f"{' → '.join(r['load'])}" + (f" **{r['failed']}**" if r.get("failed")
                                                          else ""))
        out.append("")
    out += ["### Per LMTP session (one message per connection, sessions one after another)", ""]
    out += ["| ms per session (median) | 2.3 | 2.4 |", "|---|---|---|"]
    sess = {v: logs[(v, "sessions")] for v in VERSIONS}
    for k, label in (("a", "(a) no plugin, plain mail to INBOX"),
                     ("n", "(n) coi plugin loaded, plain mail to INBOX"),
                     ("f", "(f) no plugin, +detail to COI/Chats (floor)"),
                     ("b", "(b) coi plugin, chat to COI/Chats")):
        out.append(f"| {label} | " + " | ".join(fmt(sess[v]["medians"].get(k), 2)
                                                for v in VERSIONS) + " |")
    for q, label in (("n-a", "n − a: loading and running the plugin, plain-mail session"),
                     ("b-f", "b − f: the plugin's share of a chat session"),
                     ("f-a", "f − a: a chat to a second folder instead of plain mail to INBOX")):
        out.append(f"| {label} | " + " | ".join(
            (fmt(sess[v]["ratios"].get(q), 2) + " ms" +
             (f" ({sess[v]['ratios'][q.replace('-', '/')]:.3f} ×)"
              if q.replace('-', '/') in sess[v]["ratios"] else ""))
            if q in sess[v]["ratios"] else "–" for v in VERSIONS) + " |")
    for k in "anfb":
        out.append(f"| Dovecot CPU per session ({k}) | " + " | ".join(
            fmt(sess[v]["cpu"].get(k), 2) + " ms" if k in sess[v]["cpu"] else "–"
            for v in VERSIONS) + " |")
    for q, label in (("n-a", "CPU n − a (per-round difference in brackets)"),
                     ("b-f", "CPU b − f (per-round difference in brackets)")):
        out.append(f"| {label} | " + " | ".join(
            f"**{sess[v]['cpu_ratios'][q][0]:+.2f} ms** ({sess[v]['cpu_ratios'][q][1]:+.2f})"
            if q in sess[v]["cpu_ratios"] else "–" for v in VERSIONS) + " |")
    out.append("| lmtp processes serving each round's 60 sessions (a, n, f, b) | " + " | ".join(
        "; ".join(str(sess[v]["rounds"].get(k, "–")) for k in "anfb") for v in VERSIONS) + " |")
    out.append("")
    for v in VERSIONS:
        r = logs[(v, "sessions")]
        if r["cmd"]:
            out.append(f"- {v}: `{r['cmd']}` at {r.get('date', '?')}, load {' → '.join(r['load'])}")
    out += ["", "### What push configured costs a user without targets, counted "
            "(bench/push_syscalls.py)", "",
            "System calls per message of every Dovecot process while one LMTP session delivers "
            "30 messages (plain, COI chat, Delta Chat) to a user who has had one chat before; "
            "calls whose number follows timing (waits, signals, socket I/O) left out; median of "
            "3 interleaved rounds, a fresh user per variant and round.", "",
            "| system calls per message | 2.3 | 2.4 |", "|---|---|---|"]
    sc = {v: parse(outdir / f"{v}-push-syscalls.txt") for v in VERSIONS}
    for k, label in (("e", "(e) events on, push off"),
                     ("p", "(p) push configured, no targets (this build: marker)"),
                     ("o", "(o) push configured, no targets (main's build, before the marker)")):
        out.append(f"| {label} | " + " | ".join(fmt(sc[v]["medians"].get(k)) for v in VERSIONS)
                   + " |")
    for k in ("p", "o"):
        cells = []
        for v in VERSIONS:
            d = sc[v]["ratios"].get(k + "-e")
            cells.append("–" if d is None else f"**{d[1]:+.1f} %** ({d[0]:+.1f}: {d[2]})")
        out.append(f"| {k} − e" + (" (target ≤ +2 %)" if k == "p" else "") + " | " +
                   " | ".join(cells) + " |")
    out.append("")
    for v in VERSIONS:
        if sc[v]["cmd"]:
            out.append(f"- {v}: `{sc[v]['cmd']}` at {sc[v].get('date', '?')}, load "
                       f"{' → '.join(sc[v]['load'])}")
    out += ["", "### Loading the plugin into a fresh process (bench/plugin_load.py)", ""]
    for v in VERSIONS:
        f = outdir / f"{v}-plugin-load.txt"
        if f.exists():
            r = parse(f)
            body = [ln for ln in f.read_text().splitlines() if not ln.startswith("#")]
            out += [f"{v}: `{r['cmd']}` (load {' → '.join(r['load'])})", "", "```", *body, "```", ""]
    out += ["", END]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--into", type=Path, default=None)
    args = ap.parse_args(argv)
    text = section(args.outdir)
    if args.into is None:
        sys.stdout.write(text)
        return 0
    old = args.into.read_text() if args.into.exists() else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + text.rstrip("\n") + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    args.into.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reading and checking Dovecot's log file of one instance.

Owns log access: whole text, text since a mark (byte offset), tail, grep, and
the ``assert_no_panic_or_fatal`` check used after every scenario.
"""

from __future__ import annotations

import re
from pathlib import Path

_BAD = re.compile(r": (Panic|Fatal): ")
#: The plugin's own lines: the word "coi" in lower case (its log prefix, e.g.
#: "coi: ..."). Deliberately does not match "COI/Chats", metadata paths such as
#: ".../coi/config/enabled", "lib95_coi_plugin.so" or the mail user "coitest"
#: (temp dirs are named "dovetest-*" for the same reason).
PLUGIN_WORD = re.compile(r"(?<![\w/.$-])coi(?![\w/.-])")


class DovecotLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def mark(self) -> int:
        """Current end of the log; pass it as ``since`` to look only at newer lines."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def text(self, since: int = 0) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def lines(self, since: int = 0) -> list[str]:
        return self.text(since).splitlines()

    def tail(self, n: int = 60, since: int = 0) -> str:
        return "\n".join(self.lines(since)[-n:])

    def grep(self, needle: str, since: int = 0, ignore_case: bool = True) -> list[str]:
        if ignore_case:
            n = needle.lower()
            return [ln for ln in self.lines(since) if n in ln.lower()]
        return [ln for ln in self.lines(since) if needle in ln]

    def plugin_lines(self, since: int = 0) -> list[str]:
        """Lines written by (or about) the coi plugin."""
        return [ln for ln in self.lines(since) if PLUGIN_WORD.search(ln)]

    def panics_and_fatals(self, since: int = 0) -> list[str]:
        return [ln for ln in self.lines(since) if _BAD.search(ln)]

    def assert_no_panic_or_fatal(self, since: int = 0) -> None:
        bad = self.panics_and_fatals(since)
        assert not bad, "Dovecot logged Panic/Fatal:\n" + "\n".join(bad[:40])

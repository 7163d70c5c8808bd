"""pytest wiring for the real-Dovecot integration tests.

Owns: putting the repository root on ``sys.path`` (so ``tests.harness``
imports), the ``dovecot_factory`` fixture (module-scoped instances that are
always stopped at teardown), and the failure hook that attaches the tail of
each involved Dovecot's log to a failing test's report and keeps its temp dir.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness import DovecotInstance  # noqa: E402

LOG_TAIL_LINES = 80


def _instances_of(item) -> list[DovecotInstance]:
    found = []
    for value in getattr(item, "funcargs", {}).values():
        cands = [value] + [v for v in getattr(value, "__dict__", {}).values()]
        for c in cands:
            if isinstance(c, DovecotInstance) and c not in found:
                found.append(c)
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed and rep.when in ("setup", "call"):
        for inst in _instances_of(item):
            inst.failed = True
            rep.sections.append((
                f"Dovecot log tail ({inst.log_path})",
                inst.log.tail(LOG_TAIL_LINES) or "(log is empty)"))


@pytest.fixture(scope="module")
def dovecot_factory():
    """Start DovecotInstances for a test module; all are stopped at module teardown."""
    started: list[DovecotInstance] = []

    def make(**config) -> DovecotInstance:
        inst = DovecotInstance(**config)
        started.append(inst)
        try:
            inst.start()
        except BaseException:
            inst.failed = True
            raise
        return inst

    yield make
    errors = []
    for inst in reversed(started):
        try:
            inst.stop()
        except Exception as exc:  # noqa: BLE001 - stop all, then report
            errors.append(f"{inst}: {exc}")
    assert not errors, "stopping Dovecot failed: " + "; ".join(errors)

"""Checks of the operator files in ops/ against the real sidecar.

Owns: the promise that ops/coi-alerts.yml and ops/grafana-coi.json only use
metric names (and label names) that coi-sidecar really exports, that the
rules pass promtool (syntax and the unit tests in ops/coi-alerts.test.yml),
and that the dashboard is importable JSON. The metric names are taken from a
scrape of the real daemon (tests/harness/sidecar.py starts it), not from a
list kept by hand.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness.sidecar import SidecarProcess, Webhook  # noqa: E402

RULES = REPO / "ops" / "coi-alerts.yml"
RULE_TESTS = REPO / "ops" / "coi-alerts.test.yml"
DASHBOARD = REPO / "ops" / "grafana-coi.json"

#: Series Prometheus itself makes, not the sidecar.
PROMETHEUS_OWN = {"up"}
#: Labels Prometheus attaches at scrape time.
TARGET_LABELS = {"job", "instance"}
NAME_RE = re.compile(r"\b((?:coi|process)_[a-z0-9_]+|up)\b")
SELECTOR_RE = re.compile(r"\b((?:coi|process)_[a-z0-9_]+)\{([^}]*)\}")
BY_RE = re.compile(r"\bby \(([^)]*)\)\s*\(\s*(?:rate|increase|irate)?\(?\s*((?:coi|process)_[a-z0-9_]+)")


def rule_exprs() -> list[str]:
    """Every expr of the rules file (a tiny YAML reader: rules are plain)."""
    exprs, lines = [], RULES.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)expr:\s*(\|)?\s*(.*)$", lines[i])
        if m:
            if m.group(2):
                indent, body = None, []
                i += 1
                while i < len(lines) and (not lines[i].strip() or indent is None
                                          or lines[i].startswith(indent)):
                    if lines[i].strip():
                        indent = indent or re.match(r"^(\s*)", lines[i]).group(1)
                        if not lines[i].startswith(indent):
                            break
                    body.append(lines[i].strip())
                    i += 1
                exprs.append(" ".join(b for b in body if b))
                continue
            exprs.append(m.group(3))
        i += 1
    return exprs


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    for var in dash["templating"]["list"]:
        if var.get("type") == "query":
            exprs.append(var["definition"])
    return exprs


def family(sample_name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


@pytest.fixture(scope="module")
def scrape():
    """(sample names, {family: label names}) of a real sidecar's /metrics."""
    webhook = Webhook("ops", "http://127.0.0.1:9/never")
    with SidecarProcess([webhook]) as sidecar:
        sidecar.start()
        # coi_errors_total has no series until an error happens: make one
        # the documented way (a reload of an invalid file is refused and
        # counted with stage="reload"), so its labels are visible too.
        good = sidecar.config_path.read_text()
        sidecar.config_path.write_text(good + "\nnot valid toml = = =\n")
        sidecar.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not sidecar.metrics().has("coi_errors_total"):
            assert time.monotonic() < deadline, "an invalid reload was not counted in coi_errors_total"
            time.sleep(0.1)
        sidecar.config_path.write_text(good)
        metrics = sidecar.metrics()
    labels: dict[str, set[str]] = {}
    for s in metrics.samples:
        labels.setdefault(family(s.name), set()).update(s.labels)
        labels.setdefault(s.name, set()).update(s.labels)
    return {s.name for s in metrics.samples} | set(metrics.types), labels


def used_names(exprs: list[str]) -> set[str]:
    return {n for e in exprs for n in NAME_RE.findall(e)}


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_used_is_exported_by_the_sidecar(scrape, source):
    names, _labels = scrape
    exprs = rule_exprs() if source == "rules" else dashboard_exprs()
    assert exprs, f"no expressions found in the {source}"
    used = used_names(exprs) - PROMETHEUS_OWN
    assert any(n.startswith("coi_") for n in used), used
    missing = sorted(n for n in used if n not in names and family(n) not in names)
    assert not missing, f"{source} use metrics the sidecar does not export: {missing}"


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_label_used_exists_on_its_metric(scrape, source):
    _names, labels = scrape
    exprs = rule_exprs() if source == "rules" else dashboard_exprs()
    problems = []
    for expr in exprs:
        for name, matchers in SELECTOR_RE.findall(expr):
            for matcher in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
                if matcher not in TARGET_LABELS and matcher not in labels.get(name, set()):
                    problems.append(f"{name}{{{matcher}}} in {expr}")
        for by_labels, name in BY_RE.findall(expr):
            for label in (x.strip() for x in by_labels.split(",")):
                if label and label not in TARGET_LABELS | {"le"} and \
                        label not in labels.get(name, set()):
                    problems.append(f"by ({label}) over {name} in {expr}")
    assert not problems, "labels the sidecar does not export:\n" + "\n".join(problems)


def test_rules_pass_promtool_check_and_unit_tests():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing (Debian package prometheus; scripts/deps.sh installs it)"
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    unit = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_alerts_named_in_the_issue_exist():
    names = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M))
    for alert in ("CoiSidecarDown", "CoiQueueBackingUp", "CoiDeadLetters", "CoiPluginFallbacks"):
        assert alert in names, f"{alert} missing from {RULES.name}: {sorted(names)}"


def test_dashboard_is_importable_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'job="$job"' in target["expr"], f"{panel['title']}: {target['expr']}"


def test_nats_cluster_configs_are_valid():
    """ops/nats/n*.conf: three members of one cluster, each accepted by nats-server -t."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    assert Path(binary).is_file(), "nats-server is not installed (scripts/deps.sh)"
    confs = sorted((REPO / "ops" / "nats").glob("n*.conf"))
    assert len(confs) == 3, confs
    names = set()
    for conf in confs:
        res = subprocess.run([binary, "-c", str(conf), "-t"], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0 and "is valid" in res.stdout + res.stderr, (conf, res.stdout, res.stderr)
        text = conf.read_text()
        names.add(re.search(r'server_name:\s*"([^"]+)"', text).group(1))
        assert "jetstream" in text and 'name: "coi"' in text, conf
    assert len(names) == 3, f"server names must differ: {names}"

"""Fast checks of the packaging files (the full install test is
packaging/install-test, which boots a Debian 12 container).

Owns: the packaged sidecar config staying in step with
sidecar/sidecar.example.toml, every plugin setting being documented in the
Dovecot snippets (2.3 and 2.4) and in docs/dovecot-2.4.md's 2.3-to-2.4 guide
(whose blocks the Debian 13 install test runs), the snippet loading the
plugin for every protocol without Dovecot warnings, the ABI dependency being
read from the built module, the systemd unit's exposure, and the Debian
version matching Cargo.toml.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "packaging"
EXAMPLE = REPO / "sidecar" / "sidecar.example.toml"
GEN = PKG / "sidecar" / "gen-config"
SNIPPET = PKG / "dovecot" / "95-coi.conf"
SETTINGS_24 = PKG / "dovecot24" / "coi-settings.conf.ext"
DOC_24 = REPO / "docs" / "dovecot-2.4.md"
LOAD = PKG / "dovecot" / "load.conf"
UNIT = PKG / "systemd" / "coi-sidecar.service"
DISPATCH_UNIT = PKG / "systemd" / "coi-sidecar-dispatch.service"
UNITS = pytest.mark.parametrize("unit", [UNIT, DISPATCH_UNIT], ids=lambda u: u.stem)


def sidecar_bin() -> Path:
    path = Path(os.environ.get("COI_SIDECAR_BIN", REPO / "target" / "release" / "coi-sidecar"))
    assert path.is_file(), f"{path} missing: build the sidecar or set COI_SIDECAR_BIN"
    return path


def keys_of(path: Path) -> list[str]:
    p = subprocess.run([sys.executable, str(GEN), "--keys", str(path)],
                       capture_output=True, text=True, check=True)
    return p.stdout.split()


@pytest.fixture(scope="module")
def packaged_config(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "sidecar.toml"
    subprocess.run([sys.executable, str(GEN), str(EXAMPLE), str(out)], check=True)
    return out


def test_packaged_config_shows_every_option_of_the_example(packaged_config):
    example, packaged = keys_of(EXAMPLE), keys_of(packaged_config)
    assert example, "no keys found in the example"
    assert sorted(packaged) == sorted(example), (
        f"only in the example: {sorted(set(example) - set(packaged))}; "
        f"only packaged: {sorted(set(packaged) - set(example))}")


def test_packaged_config_sets_only_the_package_layout(packaged_config):
    active = [line for line in packaged_config.read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    assert active == ["[socket]", 'group = "coi-events"'], active


def test_packaged_config_is_valid_for_the_sidecar(packaged_config):
    p = subprocess.run([str(sidecar_bin()), "check-config", "--config", str(packaged_config)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok (0 webhook endpoint(s))" in p.stdout


def test_gen_config_refuses_a_package_value_without_its_table(tmp_path):
    example = tmp_path / "example.toml"
    example.write_text("# header\n\nspool_dir = \"/x\"\n")
    p = subprocess.run([sys.executable, str(GEN), str(example), str(tmp_path / "out.toml")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "[socket] group" in (p.stderr + p.stdout)


def plugin_settings() -> set[str]:
    """Every coi_* setting name the shim reads (its settings table)."""
    names = set()
    for c in (REPO / "plugin" / "shim").glob("*.c"):
        names.update(re.findall(r'\{\s*"(coi_[a-z0-9_]+)"', c.read_text()))
    return names


def test_every_plugin_setting_is_documented_in_the_snippet():
    settings = plugin_settings()
    assert "coi_default_enabled" in settings and len(settings) >= 7, settings
    text = SNIPPET.read_text()
    missing = sorted(s for s in settings if not re.search(rf"^\s*#{s} =", text, re.M))
    assert not missing, f"95-coi.conf does not document: {missing}"
    documented = set(re.findall(r"^\s*#(coi_[a-z0-9_]+) =", text, re.M))
    assert documented <= settings, f"95-coi.conf documents unknown settings: {documented - settings}"


def test_every_plugin_setting_is_documented_in_the_24_settings_file():
    settings = plugin_settings()
    text = SETTINGS_24.read_text()
    documented = re.findall(r"^#(coi_[a-z0-9_]+) = ", text, re.M)
    assert sorted(documented) == sorted(settings), (
        f"coi-settings.conf.ext: missing {sorted(settings - set(documented))}, "
        f"unknown {sorted(set(documented) - settings)}")
    active = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert not active, f"the packaged 2.4 settings file sets something: {active}"


def scenario():
    """packaging/tests/install_scenario.py as a module (its doc-block parser)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("install_scenario", PKG / "tests" / "install_scenario.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_24_guide_covers_every_setting_in_its_checked_blocks():
    text = DOC_24.read_text()
    settings = plugin_settings()
    table = set(re.findall(r"^\| `(coi_[a-z0-9_]+)` \|", text, re.M))
    assert table == settings, f"table: missing {sorted(settings - table)}, unknown {sorted(table - settings)}"
    blocks = scenario().doc_blocks(text)
    appended = [body for d, body in blocks if d.startswith("install-test:append=")]
    assert len(appended) == 1, [d for d, _ in blocks]
    set_24 = set(re.findall(r"^(coi_[a-z0-9_]+) = ", appended[0], re.M))
    assert set_24 == settings, f"the 2.4 block leaves out {sorted(settings - set_24)}"
    plugin_23 = [body for d, body in blocks if d == "install-test:refused" and "plugin {" in body]
    assert len(plugin_23) == 1
    set_23 = set(re.findall(r"^  (coi_[a-z0-9_]+) = ", plugin_23[0], re.M))
    assert set_23 == settings, f"the 2.3 block leaves out {sorted(settings - set_23)}"


def test_every_checked_block_of_the_24_guide_has_a_known_directive():
    mod = scenario()
    blocks = mod.doc_blocks(DOC_24.read_text())
    fenced = DOC_24.read_text().count("install-test")
    assert len(blocks) >= 10 and len(blocks) <= fenced, "a fence with install-test the parser missed"
    for directive, body in blocks:
        kind = directive.split("=", 1)[0]
        assert kind in ("install-test", "install-test:refused", "install-test:shows",
                        "install-test:append"), directive
        if kind in ("install-test:refused", "install-test:shows"):
            want = mod.expectation(body)
            assert want, body
            if kind == "install-test:shows":
                cmd, sep, shows = want.partition(" prints ")
                assert sep and cmd.startswith("doveconf ") and shows, want


def test_snippet_loads_the_plugin_for_every_protocol_without_warnings(tmp_path):
    doveconf = shutil.which("doveconf")
    assert doveconf, "doveconf missing (dovecot-core)"
    load = tmp_path / "load.conf"
    load.write_text(LOAD.read_text())
    snippet = tmp_path / "95-coi.conf"
    snippet.write_text(SNIPPET.read_text().replace("/var/lib/dovecot-coi/load.conf", str(load)))
    # What an operator with Sieve has in 20-lmtp.conf, before our snippet.
    conf = tmp_path / "dovecot.conf"
    conf.write_text("protocol lmtp {\n  mail_plugins = $mail_plugins sieve\n}\n"
                    f"!include {snippet}\n")

    def plugins(proto: str) -> tuple[list[str], str]:
        p = subprocess.run([doveconf, "-c", str(conf), "-f", f"protocol={proto}", "-h", "mail_plugins"],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout.split(), p.stderr.strip()

    for proto in ("lmtp", "lda", "imap", "doveadm"):
        names, warnings = plugins(proto)
        assert "coi" in names, (proto, names)
        assert not warnings, warnings
    assert plugins("lmtp")[0] == ["sieve", "coi"]
    groups = subprocess.run([doveconf, "-c", str(conf), "-h", "mail_access_groups"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert groups == ["coi-events"]
    # Package removed: load.conf gone, !include_try finds nothing.
    load.unlink()
    for proto in ("lmtp", "imap"):
        names, warnings = plugins(proto)
        assert "coi" not in names and not warnings, (proto, names, warnings)


def test_abi_dependency_is_read_from_the_built_module():
    so = Path(os.environ.get("COI_PLUGIN_SO", REPO / "target" / "release" / "libcoi_plugin.so"))
    assert so.is_file(), f"{so} missing: build the plugin or set COI_PLUGIN_SO"
    config_h = Path("/usr/include/dovecot/config.h").read_text()
    abi = re.search(r'#define DOVECOT_ABI_VERSION "([^"(]+)', config_h).group(1).lower()
    p = subprocess.run([str(PKG / "debian" / "dovecot-abi"), str(so)],
                       capture_output=True, text=True, check=True)
    assert p.stdout.strip() == f"dovecot:Depends=dovecot-core, dovecot-abi-{abi}"
    # Debian's dovecot-core provides exactly that name.
    provides = subprocess.run(["dpkg-query", "-W", "-f=${Provides}", "dovecot-core"],
                              capture_output=True, text=True, check=True).stdout
    assert f"dovecot-abi-{abi}" in provides, provides


def test_abi_script_names_the_series_for_debian_rules():
    so = Path(os.environ.get("COI_PLUGIN_SO", REPO / "target" / "release" / "libcoi_plugin.so"))
    config_h = Path("/usr/include/dovecot/config.h").read_text()
    series = re.search(r'#define DOVECOT_ABI_VERSION "(\d+\.\d+)\.', config_h).group(1)
    p = subprocess.run([str(PKG / "debian" / "dovecot-abi"), "--series", str(so)],
                       capture_output=True, text=True, check=True)
    assert p.stdout.strip() == series == "2.3"


def test_abi_script_fails_on_a_file_without_an_abi(tmp_path):
    bogus = tmp_path / "not-a-plugin.so"
    bogus.write_bytes(b"\x7fELF no version here")
    p = subprocess.run([str(PKG / "debian" / "dovecot-abi"), str(bogus)], capture_output=True, text=True)
    assert p.returncode != 0 and "found 0" in p.stderr


@UNITS
def test_unit_exposure_is_below_2(unit):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing"
    p = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(unit)],
                       capture_output=True, text=True)
    m = re.search(rf"Overall exposure level for {re.escape(unit.name)}: ([0-9.]+)", p.stdout)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) < 2.0, p.stdout


@UNITS
def test_unit_yields_cpu_and_disk_to_dovecot(unit):
    """Delivery first (issue 18): below Dovecot's I/O weight, never idle-class I/O, and the
    CPU left alone (measured: lowering it slowed Dovecot down; docs/performance.md)."""
    keys = dict(ln.split("=", 1) for ln in unit.read_text().splitlines()
                if "=" in ln and not ln.startswith("#"))
    assert 1 <= int(keys["IOWeight"]) < 100, keys.get("IOWeight")
    assert keys["IOSchedulingClass"] == "best-effort", "idle-class fsyncs can starve the intake"
    assert 0 <= int(keys["IOSchedulingPriority"]) <= 7
    assert "CPUWeight" not in keys and "Nice" not in keys, "measured to slow deliveries"
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing"
    p = subprocess.run([analyze, "verify", "--man=no", "--recursive-errors=no", str(unit)],
                       capture_output=True, text=True)
    bad = [ln for ln in (p.stdout + p.stderr).splitlines()
           if re.search(r"CPUWeight|IOWeight|Nice|IOScheduling", ln)]
    assert not bad, bad


def test_debian_version_matches_cargo():
    cargo = re.search(r'^version = "([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
    first = (PKG / "debian" / "changelog").read_text().splitlines()[0]
    assert first.startswith(f"coi ({cargo}-"), first
    spec = (PKG / "rpm" / "coi.spec").read_text()
    assert re.search(rf"^Version:\s+{re.escape(cargo)}$", spec, re.M), "packaging/rpm/coi.spec Version"


DOC_REFERENCE = re.compile(r"docs/([a-z0-9.-]+\.md)|\]\(([a-z0-9.-]+\.md)[)#]")


def packaged_docs() -> dict[str, set[str]]:
    """Each package's documentation, as the Debian .docs files and the RPM
    %doc lines name it (file names under docs/)."""
    found: dict[str, set[str]] = {}
    for pkg in ("dovecot-coi", "coi-sidecar"):
        lines = (PKG / "debian" / f"{pkg}.docs").read_text().split()
        found[f"deb {pkg}"] = {Path(ln).name for ln in lines}
    spec = (PKG / "rpm" / "coi.spec").read_text()
    for pkg in ("dovecot-coi", "coi-sidecar"):
        section = spec.split(f"%files -n {pkg}\n", 1)[1].split("\n%files", 1)[0]
        doc_lines = [ln for ln in section.splitlines() if ln.startswith("%doc ")]
        found[f"rpm {pkg}"] = {Path(p).name for ln in doc_lines for p in ln.split()[1:]}
    return found


def test_every_packaged_doc_exists_and_both_formats_ship_the_same():
    docs = packaged_docs()
    for name, files in docs.items():
        missing = [f for f in files if not (REPO / "docs" / f).is_file()]
        assert not missing, f"{name} names docs that do not exist: {missing}"
    for pkg in ("dovecot-coi", "coi-sidecar"):
        assert docs[f"deb {pkg}"] == docs[f"rpm {pkg}"], pkg


def test_a_packaged_doc_never_points_to_one_the_package_lacks():
    """An operator reading /usr/share/doc on a host with only one of the
    packages (a dispatcher has only coi-sidecar) must find every document
    the installed ones send them to."""
    for name, files in packaged_docs().items():
        dangling = []
        for doc in sorted(files):
            for m in DOC_REFERENCE.finditer((REPO / "docs" / doc).read_text()):
                target = m.group(1) or m.group(2)
                if (REPO / "docs" / target).is_file() and target not in files:
                    dangling.append(f"{doc} -> {target}")
        assert not dangling, f"{name}: {dangling}"


def test_dispatch_unit_runs_the_dispatcher_and_shares_nothing_with_dovecot():
    """The fleet unit: `coi-sidecar dispatch` on its own config and state
    directory (so it can run beside coi-sidecar.service), without the spool,
    the doorbell socket or the group Dovecot's mail processes belong to."""
    lines = [ln for ln in DISPATCH_UNIT.read_text().splitlines() if "=" in ln and not ln.startswith("#")]
    keys = dict(ln.split("=", 1) for ln in lines)
    local = dict(ln.split("=", 1) for ln in UNIT.read_text().splitlines() if "=" in ln and not ln.startswith("#"))
    assert keys["ExecStart"].split()[-1] == "dispatch", keys["ExecStart"]
    assert "--config /etc/coi/dispatch.toml" in keys["ExecStart"]
    assert keys["StateDirectory"] != local["StateDirectory"]
    for absent in ("SupplementaryGroups", "RuntimeDirectory", "ReadWritePaths"):
        assert absent not in keys, absent
    assert "SystemCallFilter=@chown" not in lines
    assert keys["Type"] == "notify" and keys["WatchdogSec"] == local["WatchdogSec"]


def test_every_unit_is_installed_and_listed_by_both_package_formats():
    spec = (PKG / "rpm" / "coi.spec").read_text()
    files = spec.split("%files -n coi-sidecar\n", 1)[1]
    build_debs = (PKG / "build-debs").read_text()
    for unit in sorted((PKG / "systemd").glob("*.service")):
        name = unit.name
        assert re.search(rf"^install -D -m 0644 packaging/systemd/{re.escape(name)} "
                         rf"%{{buildroot}}%{{_unitdir}}/{re.escape(name)}$", spec, re.M), f"spec %install: {name}"
        assert re.search(rf"^%{{_unitdir}}/{re.escape(name)}$", files, re.M), f"spec %files: {name}"
        assert f"packaging/systemd/{name}" in build_debs, f"build-debs: {name}"
    # Only these lines name a unit file on a line of its own: a stray one
    # (as a bad edit once left in %install) breaks rpmbuild.
    install = re.split(r"^%(?:check|clean|pre|post|preun|postun|files|changelog)\b",
                       spec.split("%install\n", 1)[1], maxsplit=1, flags=re.M)[0]
    stray = [ln for ln in install.splitlines() if ln.startswith("%{_unitdir}")]
    assert not stray, stray

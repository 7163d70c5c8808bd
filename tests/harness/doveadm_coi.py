"""``doveadm coi ...`` against a test instance.

doveadm loads its own plugins from a directory compiled into it
(``<moduledir>/doveadm``), not from ``mail_plugin_dir``. The packages put
the symlink ``lib10_doveadm_coi_plugin.so -> ../lib95_coi_plugin.so`` there;
the tests must not touch the system's Dovecot, so each call runs doveadm in
a private mount namespace (``unshare --mount``, root) where that directory
is a bind mount of the instance's own ``doveadm-modules/``, whose only entry
is the same symlink to the instance's plugin copy (the same file as the mail
plugin, as in the packages). Nothing outside that one process sees it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .paths import PLUGIN_INSTALL_NAME, SYSTEM_MODULE_DIR, find_binary

DOVEADM_PLUGIN_NAME = "lib10_doveadm_coi_plugin.so"


def _module_dir(inst) -> Path:
    priv = inst.tmpdir / "doveadm-modules"
    link = priv / DOVEADM_PLUGIN_NAME
    if not link.is_symlink():
        priv.mkdir(exist_ok=True)
        priv.chmod(0o755)
        link.symlink_to(inst.layout.module_dir / PLUGIN_INSTALL_NAME)
    return priv


def doveadm_coi(inst, *args: str, stdin: str | None = None, check: bool = True,
                fmt: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``doveadm -c CONF [-f FMT] coi ARGS`` with the coi doveadm plugin loaded."""
    if os.geteuid() != 0:
        raise AssertionError("doveadm coi tests need root (a private mount namespace)")
    target = SYSTEM_MODULE_DIR / "doveadm"
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"',
            str(_module_dir(inst)), str(target),
            find_binary("doveadm"), "-c", str(inst.conf_path)]
    if fmt:
        argv += ["-f", fmt]
    argv += ["coi", *args]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                          errors="replace", stdin=None if stdin is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    return proc


def status(inst, user: str) -> dict[str, str]:
    """``doveadm -f tab coi status -u USER`` as a dict."""
    lines = doveadm_coi(inst, "status", "-u", user, fmt="tab").stdout.splitlines()
    return dict(zip(lines[0].split("\t"), lines[1].split("\t")))

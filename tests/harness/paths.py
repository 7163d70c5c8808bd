"""Where things live: the repository, the plugin build output and Dovecot's binaries.

Owns every filesystem lookup the harness makes outside its own temp dirs.
A missing binary raises ``MissingBinary`` (a test failure), never a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

#: System directory holding Dovecot's loadable modules (plugins).
SYSTEM_MODULE_DIR = Path(os.environ.get("DOVECOT_MODULE_DIR", "/usr/lib/dovecot/modules"))

#: File name under which Dovecot loads our plugin from ``mail_plugin_dir``.
PLUGIN_INSTALL_NAME = "lib95_coi_plugin.so"


class MissingBinary(RuntimeError):
    """A Dovecot executable the harness needs could not be found."""


def plugin_so() -> Path:
    """The freshly built plugin: ``$COI_PLUGIN_SO`` or ``target/release/libcoi_plugin.so``."""
    env = os.environ.get("COI_PLUGIN_SO")
    if env:
        return Path(env)
    return REPO_ROOT / "target" / "release" / "libcoi_plugin.so"


def plugin_disabled_for_debugging() -> bool:
    """``COI_NO_PLUGIN=1``: never load the plugin (harness debugging only)."""
    return os.environ.get("COI_NO_PLUGIN", "") not in ("", "0")


def find_binary(name: str) -> str:
    """Locate a Dovecot executable: ``$DOVECOT_BIN_DIR``, then ``PATH``, then /usr/sbin."""
    bin_dir = os.environ.get("DOVECOT_BIN_DIR")
    if bin_dir:
        cand = Path(bin_dir) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        cand = Path(d) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    raise MissingBinary(
        f"Dovecot binary {name!r} not found (looked in $DOVECOT_BIN_DIR, PATH, /usr/sbin); "
        "install dovecot-core dovecot-imapd dovecot-lmtpd dovecot-sieve"
    )


def find_lda() -> str:
    """Locate dovecot-lda: ``$DOVECOT_LDA``, ``$DOVECOT_BIN_DIR``, /usr/lib/dovecot, PATH."""
    env = os.environ.get("DOVECOT_LDA")
    cands = [env] if env else []
    bin_dir = os.environ.get("DOVECOT_BIN_DIR")
    if bin_dir:
        cands.append(str(Path(bin_dir) / "dovecot-lda"))
    cands += ["/usr/lib/dovecot/dovecot-lda", "/usr/libexec/dovecot/dovecot-lda"]
    for cand in cands:
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    found = shutil.which("dovecot-lda")
    if found:
        return found
    raise MissingBinary("dovecot-lda not found (looked in $DOVECOT_LDA, $DOVECOT_BIN_DIR, "
                        "/usr/lib/dovecot, PATH); install dovecot-core")

#!/usr/bin/python3
"""What loading the coi plugin costs a fresh process (one command).

Owns the plugin load-time measurement. Dovecot 2.4's lmtp serves one
session per process by default (``restart_request_count = 1``), so every
LMTP connection pays the mail plugins' loading again. This times, in N fresh
processes each, what the loader does for the plugin: ``dlopen`` of
``lib95_coi_plugin.so`` with ``RTLD_NOW | RTLD_GLOBAL`` (mapping, symbol
binding and relocations, Rust's static initialisers; the flags of Dovecot's
module loader, lib/module-dir.c) after
Dovecot's own libraries are loaded, and the ``dlsym`` of its init symbol.
``coi_plugin_init`` itself only registers hooks (no I/O, no allocation
beyond Dovecot's arrays) and needs a running Dovecot, so it is not called
here; the settings are parsed per user, not per process (they are in every
delivery's cost, bench/lmtp_sessions.py).

A tiny C helper is compiled with the host's cc (no Dovecot headers needed)
and run directly (2.3) or inside the Debian 13 chroot (2.4,
``--chroot /var/cache/coi/trixie``); the same binary runs in both.

Usage: /usr/bin/python3 bench/plugin_load.py --so PLUGIN.so [--chroot ROOT] [-n 300]
Prints the median and p90 in microseconds of: Dovecot's libraries alone,
and the plugin on top of them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HELPER = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>
static double now_us(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}
int main(int argc, char **argv) {
    /* argv[1]: the plugin or "-"; argv[2..]: Dovecot's libraries */
    double t0 = now_us();
    for (int i = 2; i < argc; i++)
        if (dlopen(argv[i], RTLD_NOW | RTLD_GLOBAL) == NULL) {
            fprintf(stderr, "%s\n", dlerror()); return 2; }
    double t1 = now_us();
    if (argv[1][0] != '-') {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
        if (h == NULL || dlsym(h, "coi_plugin_init") == NULL) {
            fprintf(stderr, "%s\n", dlerror()); return 3; }
    }
    double t2 = now_us();
    printf("%.1f %.1f\n", t1 - t0, t2 - t1);
    return 0;
}
"""

LIBS = ["libdovecot.so.0", "libdovecot-storage.so.0", "libdovecot-lda.so.0"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--so", type=Path, required=True)
    ap.add_argument("--chroot", type=Path, default=None)
    ap.add_argument("-n", type=int, default=300)
    args = ap.parse_args(argv)
    root = args.chroot
    base = Path(tempfile.mkdtemp(prefix="coi-load-", dir=(root / "tmp") if root else None))
    try:
        (base / "h.c").write_text(HELPER)
        subprocess.run(["cc", "-O2", "-o", str(base / "h"), str(base / "h.c"), "-ldl"], check=True)
        shutil.copyfile(args.so, base / "lib95_coi_plugin.so")
        inside = (lambda p: "/" + str(p.relative_to(root))) if root else str
        libs = [f"/usr/lib/dovecot/{lib}" for lib in LIBS]
        cmd = ([] if root is None else ["chroot", str(root)]) + [inside(base / "h")]
        libs_only, plugin = [], []
        for i in range(args.n):  # interleaved: the two kinds alternate
            for so, out in (("-", libs_only), (inside(base / "lib95_coi_plugin.so"), plugin)):
                res = subprocess.run(cmd + [so, *libs], capture_output=True, text=True, check=True)
                t_libs, t_plugin = map(float, res.stdout.split())
                out.append(t_libs if so == "-" else t_plugin)
        for name, xs in (("Dovecot's libraries (libdovecot, -storage, -lda)", libs_only),
                         ("the coi plugin on top", plugin)):
            xs.sort()
            print(f"{name}: median {statistics.median(xs):.0f} us, "
                  f"p90 {xs[int(len(xs) * 0.9)]:.0f} us (n={len(xs)})")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

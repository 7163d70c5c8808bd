#!/usr/bin/env bash
# scripts/build.sh - builds the plugin (release) and prints where it is.
# The .so is what Dovecot loads as lib95_coi_plugin.so.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p coi-plugin >&2
echo "$PWD/target/release/libcoi_plugin.so"

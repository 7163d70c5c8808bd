#!/usr/bin/env bash
# scripts/build.sh - builds the plugin and the sidecar (release) and prints
# the plugin's path. Dovecot loads the .so as lib95_coi_plugin.so; the
# sidecar is target/release/coi-sidecar.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p coi-plugin -p coi-sidecar >&2
echo "$PWD/target/release/libcoi_plugin.so"

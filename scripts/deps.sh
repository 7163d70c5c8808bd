#!/usr/bin/env bash
# scripts/deps.sh - installs what building and testing coi needs on Debian 12,
# idempotently: nothing is installed when everything is already there.
# Sourced by scripts/demo and scripts/test; run it alone to prepare a machine.
set -euo pipefail

COI_DEBIAN_PACKAGES=(
  dovecot-core dovecot-imapd dovecot-lmtpd dovecot-sieve dovecot-dev
  libclang-dev clang gcc g++ libc6-dev pkg-config
  python3 python3-pytest python3-prometheus-client python3-cryptography
  # a real IMAP sync client for tests/test_sync_client.py
  isync
  # a real MTA for the recall tests' submission path (tests/harness/postfix.py);
  # installed unconfigured, never started as the system MTA (see below)
  postfix
  # real Delta Chat clients (scripts/deltachat-env.sh): a venv for the pinned
  # PyPI packages, and the loopback SMTP relay in front of LMTP
  python3-venv python3-aiosmtpd
  # packaging/: .deb and .rpm builds, lint, the install test's container,
  # promtool for ops/coi-alerts.yml
  debhelper help2man lintian debootstrap systemd-container rpm rpmlint prometheus
  # fleet mode (docs/fleet.md, tests/test_fleet.py): bookworm's NATS server
  # 2.9 has JetStream clustering; the tests start their own instances on
  # loopback ports, never the packaged service
  nats-server
)

coi_missing_packages() {
  local pkg
  for pkg in "${COI_DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || echo "$pkg"
  done
}

coi_install_deps() {
  local missing
  missing=$(coi_missing_packages | tr '\n' ' ')
  if [ -n "${missing// /}" ]; then
    echo "coi: installing Debian packages: $missing" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    # Installing dovecot-core may try to start the system Dovecot; our tests
    # run their own throwaway instances and never need it.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Postfix is only run as throwaway test instances with their own config
    # directory: "No configuration" keeps the package from writing
    # /etc/postfix/main.cf and from starting a system MTA.
    echo "postfix postfix/main_mailer_type select No configuration" |
      "${sudo[@]}" debconf-set-selections
    # shellcheck disable=SC2086
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "coi: no Rust toolchain (cargo) found; install one with rustup (Rust >= 1.89) and re-run" >&2
    return 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  coi_install_deps
fi

#!/usr/bin/env bash
# bench/versions.sh - the delivery benchmarks behind bench/REPORT.md's
# "2.3 and 2.4" tables, one run each: Dovecot 2.3 (this host's packages)
# and 2.4 (the Debian 13 chroot of scripts/test-dovecot24, --exec), same
# plugin source, same commands.
#
#   bench/versions.sh OUTDIR [2.3|2.4 ...]     (default: both, 2.3 first)
#
# Env: COI_BENCH_BASELINE_SO (2.3) / COI_BENCH_BASELINE_SO24 (2.4): another
# plugin build for variant (o) (the push-target comparison, e.g. main's
# before the marker); without them the push runs leave (o) out.
# COI_BENCH_ROUNDS (default 5), COI_BENCH_MESSAGES (per connection and
# round, default 150), COI_BENCH_ONLY="name ..." (only these runs).
# The 2.4 plugin-load run needs the 2.4 build (target/dovecot24), which the
# 2.4 runs before it make.
# Every run's full output goes to OUTDIR/<version>-<name>.txt.
# Needs root for 2.4. Not part of scripts/test.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/versions.sh OUTDIR [2.3|2.4 ...]}
shift
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(2.3 2.4)
mkdir -p "$out"
rounds=${COI_BENCH_ROUNDS:-5}
messages=${COI_BENCH_MESSAGES:-150}

so=$(scripts/build.sh)
export COI_PLUGIN_SO=$so COI_SIDECAR_BIN=$PWD/target/release/coi-sidecar

# name | runner (d24: through scripts/test-dovecot24 on 2.4) | command
runs() {
  local v=$1 baseline=$2 push_variants=ep so24=target/dovecot24/release/libcoi_plugin.so
  [ -z "$baseline" ] || push_variants=epo
  local tp="bench/lmtp_throughput.py --rounds $rounds --messages $messages --connections 4"
  cat <<EOF2
hot-maildir|d24|$tp --users 1 --format maildir --variants afbce
hot-sdbox|d24|$tp --users 1 --format sdbox --variants afbce
hot-mdbox|d24|$tp --users 1 --format mdbox --variants afbc
many-maildir|d24|$tp --users 40 --format maildir --variants afbce
many-sdbox|d24|$tp --users 40 --format sdbox --variants afbc
push-maildir|d24|bench/lmtp_throughput.py --rounds 7 --messages $messages --connections 4 --users 40 --format maildir --variants $push_variants${baseline:+ --baseline-so $baseline}
push-syscalls|d24|bench/push_syscalls.py --rounds 3 --messages 30${baseline:+ --baseline-so $baseline}
sessions|d24|bench/lmtp_sessions.py --rounds $rounds --sessions 60
EOF2
  if [ "$v" = 2.4 ]; then
    echo "plugin-load|host|bench/plugin_load.py --so $so24 --chroot /var/cache/coi/trixie -n 300"
  else
    echo "plugin-load|host|bench/plugin_load.py --so $so -n 300"
  fi
}

for v in "${versions[@]}"; do
  case $v in
    2.3) baseline=${COI_BENCH_BASELINE_SO:-}; d24=() ;;
    2.4) baseline=${COI_BENCH_BASELINE_SO24:-}; d24=(scripts/test-dovecot24 --exec) ;;
    *) echo "unknown version $v" >&2; exit 2 ;;
  esac
  while IFS='|' read -r name where cmd; do
    [ -n "${COI_BENCH_ONLY:-}" ] && [[ " $COI_BENCH_ONLY " != *" $name "* ]] && continue
    runner=()
    [ "$where" = d24 ] && runner=("${d24[@]}")
    # shellcheck disable=SC2086 # cmd is a list of plain words
    set -- $cmd
    log="$out/$v-$name.txt"
    {
      echo "# $(date -u +%FT%TZ) Dovecot $v: ${runner[*]} /usr/bin/python3 $*"
      echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$log"
    echo "== $v $name" >&2
    "${runner[@]}" /usr/bin/python3 "$@" >>"$log" 2>&1 || echo "# exit $?" >>"$log"
    echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$log"
    tail -n 14 "$log" >&2
  done < <(runs "$v" "$baseline")
done

#!/usr/bin/env bash
# bench/versions.sh - the delivery benchmarks behind bench/REPORT.md's
# "2.3 and 2.4" tables, one run each: Dovecot 2.3 (this host's packages)
# and 2.4 (the Debian 13 chroot of scripts/test-dovecot24, --exec), same
# plugin source, same commands.
#
#   bench/versions.sh OUTDIR [2.3|2.4 ...]     (default: both, 2.3 first)
#
# Env: COI_BENCH_BASELINE_SO (2.3) / COI_BENCH_BASELINE_SO24 (2.4): another
# plugin build for variant (o) (the push-target comparison); without them
# the many-users run leaves (o) out. COI_BENCH_ROUNDS (default 5),
# COI_BENCH_MESSAGES (per connection and round, default 150).
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

# name | arguments of bench/lmtp_throughput.py or bench/lmtp_sessions.py
runs() {
  local baseline=$1 many_variants=afbcep
  [ -z "$baseline" ] || many_variants=afbcepo
  cat <<EOF
hot-maildir|bench/lmtp_throughput.py --users 1 --format maildir --variants afbce
hot-sdbox|bench/lmtp_throughput.py --users 1 --format sdbox --variants afbce
hot-mdbox|bench/lmtp_throughput.py --users 1 --format mdbox --variants afbc
many-maildir|bench/lmtp_throughput.py --users 40 --format maildir --variants $many_variants${baseline:+ --baseline-so $baseline}
many-sdbox|bench/lmtp_throughput.py --users 40 --format sdbox --variants afbc
sessions|bench/lmtp_sessions.py --rounds $rounds --sessions 60
EOF
}

for v in "${versions[@]}"; do
  case $v in
    2.3) baseline=${COI_BENCH_BASELINE_SO:-}; runner=() ;;
    2.4) baseline=${COI_BENCH_BASELINE_SO24:-}; runner=(scripts/test-dovecot24 --exec) ;;
    *) echo "unknown version $v" >&2; exit 2 ;;
  esac
  while IFS='|' read -r name cmd; do
    [ -n "${COI_BENCH_ONLY:-}" ] && [[ " $COI_BENCH_ONLY " != *" $name "* ]] && continue
    # shellcheck disable=SC2086 # cmd is a list of plain words
    set -- $cmd
    extra=()
    [ "$1" = bench/lmtp_throughput.py ] && extra=(--rounds "$rounds" --messages "$messages" --connections 4)
    log="$out/$v-$name.txt"
    {
      echo "# $(date -u +%FT%TZ) Dovecot $v: ${runner[*]} /usr/bin/python3 $* ${extra[*]}"
      echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$log"
    echo "== $v $name" >&2
    "${runner[@]}" /usr/bin/python3 "$@" "${extra[@]}" >>"$log" 2>&1 || echo "# exit $?" >>"$log"
    echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$log"
    tail -n 14 "$log" >&2
  done < <(runs "$baseline")
done

#!/bin/sh
# bench/yielding_sidecar.sh - runs target/release/coi-sidecar the way the
# packaged unit schedules it (packaging/systemd/coi-sidecar.service), for
# `bench/pipeline_cost.py --alt Wy:bench/yielding_sidecar.sh` on a machine
# without systemd as PID 1:
#   CPUWeight=20  -> a cpu cgroup with cpu.shares 204 (v1; 1024 = weight 100)
#                    or cpu.weight 20 (v2), when the cgroup can be made;
#   Nice=10       -> nice -n 10;
#   IOSchedulingClass=best-effort, IOSchedulingPriority=7 -> ionice -c 2 -n 7
#                    (takes effect only with the BFQ I/O scheduler).
# IOWeight= has no stand-in here (it needs BFQ and cgroup io control).
# YIELD_NICE (default 10) and YIELD_CPU_WEIGHT (default 20; "none" = no
# cgroup) split the two for experiments.
set -eu
nice_level="${YIELD_NICE:-10}"
weight="${YIELD_CPU_WEIGHT:-20}"
bin="$(cd "$(dirname "$0")/.." && pwd)/target/release/coi-sidecar"
group=coi-bench-yield-$weight
if [ "$weight" = none ]; then
	:
elif [ -d /sys/fs/cgroup/cpu ] && mkdir -p /sys/fs/cgroup/cpu/$group 2>/dev/null; then
	echo $((weight * 1024 / 100)) > /sys/fs/cgroup/cpu/$group/cpu.shares
	echo $$ > /sys/fs/cgroup/cpu/$group/cgroup.procs
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && mkdir -p /sys/fs/cgroup/$group 2>/dev/null; then
	echo "$weight" > /sys/fs/cgroup/$group/cpu.weight
	echo $$ > /sys/fs/cgroup/$group/cgroup.procs
else
	echo "yielding_sidecar: no cpu cgroup; Nice and ionice only" >&2
fi
exec nice -n "$nice_level" ionice -c 2 -n 7 "$bin" "$@"

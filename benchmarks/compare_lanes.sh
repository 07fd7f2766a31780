#!/usr/bin/env bash
# A tri-view comparison on a small CPU machine in two lanes, so that no core waits.
#
# One `atso_nnunet_compare` walks its runs one after another, and a run hands its trainings to the
# executor a batch at a time: a tri-view batch is 3 trainings (one per view), which on 2 slots
# leaves a core idle for a third of the batch. Two invocations side by side keep both cores busy:
#
#   lane A: per seed, labeled-only (the seed's shared M0), then oracle, STSO, self-learning
#   lane B: per seed, ATSO, once lane A's labeled-only run of that seed has finished
#
# (ATSO is the longest run of a seed, about as long as the three others together.) Lane A goes on
# to the next seed's M0 while lane B trains ATSO. Each lane gives `--cpu-jobs 2` (side-by-side
# invocations need --cpu-jobs of at least their number: docs/lab/benchmarks.md). When both lanes
# are done, the tables of every seed and method are written with --report-only.
#
#   benchmarks/compare_lanes.sh --out /work/bench/r1 --seeds 0 1 2 -- -d synthetic -f bench_r1
#
# Everything after `--` goes to every atso_nnunet_compare call (the plan, --nnunet-dir...).
# Rerun the same command to continue after a stop: finished runs are skipped, unfinished ones
# resume. Stop it with `kill -- -<pid of this script>` when started with setsid (the lanes and
# their trainings are in its process group). Logs: <out>/lane_A.log, <out>/lane_B.log.
set -euo pipefail

usage() { echo "usage: $0 --out DIR --seeds S [S ...] [--compare CMD] -- <atso_nnunet_compare plan arguments>" >&2; exit 2; }
out=""; seeds=(); compare=${ATSO_COMPARE:-atso_nnunet_compare}; poll=${LANES_POLL_S:-60}
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --seeds) shift; while [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; do seeds+=("$1"); shift; done ;;
        --compare) compare=$2; shift 2 ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
[ -n "$out" ] && [ ${#seeds[@]} -gt 0 ] && [ $# -gt 0 ] || usage
plan_args=("$@")
mkdir -p "$out"

done_runs() {  # seed, methods...: true when every run's report step is done
    local s=$1; shift
    for m in "$@"; do [ -f "$out/seed$s/$m/state/report.done" ] || return 1; done
}

# A compare that finds a run folder locked by the other lane (at a restart both lanes touch the
# seed's labeled-only run) fails or skips it: each lane runs its compare until its runs are done,
# giving up after 3 failures in a row.
until_done() {  # seed, methods...
    local s=$1; shift
    local fails=0
    until done_runs "$s" supervised "$@"; do
        if "$compare" "${plan_args[@]}" --seeds "$s" --methods "$@" --out "$out" --cpu-jobs 2; then
            fails=0; done_runs "$s" supervised "$@" || sleep "$poll"
        else
            fails=$((fails + 1)); [ "$fails" -lt 3 ] || return 1; sleep "$poll"
        fi
    done
}

lane_a() {
    for s in "${seeds[@]}"; do until_done "$s" oracle stso self; done
}

lane_b() {
    for s in "${seeds[@]}"; do
        until done_runs "$s" supervised; do
            kill -0 "$lane_a_pid" 2>/dev/null || { echo "lane A ended before seed $s's M0 was done" >&2; return 1; }
            sleep "$poll"
        done
        until_done "$s" atso
    done
}

lane_a >> "$out/lane_A.log" 2>&1 &
lane_a_pid=$!
lane_b >> "$out/lane_B.log" 2>&1 &
lane_b_pid=$!
rc=0
wait "$lane_a_pid" || rc=$?
wait "$lane_b_pid" || rc=$?
[ "$rc" -eq 0 ] || { echo "a lane failed (exit $rc): see $out/lane_A.log, $out/lane_B.log" >&2; exit "$rc"; }
"$compare" "${plan_args[@]}" --seeds "${seeds[@]}" --out "$out" --report-only

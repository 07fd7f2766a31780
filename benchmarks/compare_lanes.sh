#!/usr/bin/env bash
# A comparison on a small CPU machine in lanes that share its runs, so that no core waits.
#
# One `atso_nnunet_compare` walks its runs one after another, and a run hands its trainings to the
# executor a batch at a time: a labeled-only run on one view is a single training, a tri-view batch
# 3 trainings on 2 slots; either leaves a core idle. Lanes (two unless --lanes says otherwise) side
# by side keep every core busy. The runs form one queue, in this order:
#
#   per seed: labeled-only (the seed's M0), ATSO, STSO, self-learning, oracle
#
# and each lane takes the first run of the queue that is not done, not taken by another lane and
# whose seed's M0 is done (every other run of a seed adopts that M0, and a comparison skips a seed
# whose labeled-only run another process drives). ATSO, the longest run of a seed (about as long as
# the three others together), starts first; while a seed's M0 trains, the other lane trains the next
# seed's M0 instead of waiting. Each lane gives `--cpu-jobs 2` (side-by-side invocations need
# --cpu-jobs of at least their number: docs/lab/benchmarks.md). When every run is done, the tables
# of every seed and method are written with --report-only.
#
#   benchmarks/compare_lanes.sh --out /work/bench/r1 --seeds 0 1 2 -- -d synthetic -f bench_r1
#
# Everything after `--` goes to every atso_nnunet_compare call (the plan, --nnunet-dir...).
# Rerun the same command to continue after a stop: finished runs are skipped, unfinished ones
# resume (which lane takes them does not matter). Stop it with `kill -- -<pid of this script>` when
# started with setsid (the lanes and their trainings are in its process group). A lane gives up
# after 3 failed calls in a row; the other lanes go on, and take its runs. Logs: <out>/lane_A.log,
# <out>/lane_B.log, ...; which lane took which run: <out>/lanes.log.
set -euo pipefail

usage() { echo "usage: $0 --out DIR --seeds S [S ...] [--lanes N] [--compare CMD] -- <atso_nnunet_compare plan arguments>" >&2; exit 2; }
out=""; seeds=(); lanes=2; compare=${ATSO_COMPARE:-atso_nnunet_compare}; poll=${LANES_POLL_S:-60}
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --seeds) shift; while [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; do seeds+=("$1"); shift; done ;;
        --lanes) lanes=$2; shift 2 ;;
        --compare) compare=$2; shift 2 ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
[ -n "$out" ] && [ ${#seeds[@]} -gt 0 ] && [ $# -gt 0 ] || usage
[[ $lanes =~ ^[1-9]$ ]] || { echo "$0: --lanes must be 1 to 9, got '$lanes'" >&2; exit 2; }
plan_args=("$@")
METHODS=(supervised atso stso self oracle)
mkdir -p "$out"
claims=$out/.lane_claims  # one folder per run a lane has taken; left over from a stopped script: cleared
rm -rf "$claims"; mkdir -p "$claims"

is_done() { [ -f "$out/seed$1/$2/state/report.done" ]; }

all_done() {
    local s m
    for s in "${seeds[@]}"; do for m in "${METHODS[@]}"; do is_done "$s" "$m" || return 1; done; done
}

# Prints "seed method" of the first run this lane may take and takes it (mkdir is atomic: of two
# lanes asking at once, one gets it); fails when none is free now.
take_next() {
    local s m
    for s in "${seeds[@]}"; do
        for m in "${METHODS[@]}"; do
            is_done "$s" "$m" && continue
            [ "$m" = supervised ] || is_done "$s" supervised || continue
            mkdir "$claims/seed$s.$m" 2>/dev/null || continue
            # done between the check and the claim (the lane that ran it has just let go of it)
            if is_done "$s" "$m"; then rmdir "$claims/seed$s.$m"; continue; fi
            echo "$s $m"; return 0
        done
    done
    return 1
}

lane() {  # name
    local name=$1 fails=0 job s m rc
    while ! all_done; do
        if ! job=$(take_next); then sleep "$poll"; continue; fi
        read -r s m <<<"$job"
        echo "$(date -u +%FT%TZ) lane $name: seed $s $m" >> "$out/lanes.log"
        rc=0
        # --methods supervised alone runs the labeled-only run; any other method runs after it (done)
        "$compare" "${plan_args[@]}" --seeds "$s" --methods "$m" --out "$out" --cpu-jobs 2 || rc=$?
        rmdir "$claims/seed$s.$m"
        if [ "$rc" -ne 0 ]; then
            fails=$((fails + 1))
            echo "lane $name: seed $s $m failed (exit $rc), $fails in a row" >&2
            [ "$fails" -lt 3 ] || return 1
            sleep "$poll"
        else
            fails=0
            is_done "$s" "$m" || sleep "$poll"  # skipped (a run folder locked by another lane): again later
        fi
    done
}

names=(A B C D E F G H I)
pids=()
for ((i = 0; i < lanes; i++)); do
    lane "${names[$i]}" >> "$out/lane_${names[$i]}.log" 2>&1 &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
rmdir "$claims" 2>/dev/null || true
all_done || { echo "the lanes ended with runs not done (last lane exit $rc): see $out/lane_*.log, $out/lanes.log" >&2; exit 1; }
"$compare" "${plan_args[@]}" --seeds "${seeds[@]}" --out "$out" --report-only

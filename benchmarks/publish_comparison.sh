#!/usr/bin/env bash
# Publish the finished seeds of a comparison that ran under a pinned package, with this checkout's
# package: check every run is done, re-render the reports, copy the records and tables.
#
#   benchmarks/publish_comparison.sh --out /work/bench/r1 --nnunet-dir /work/bench/r1_nnunet \
#       --dest docs/benchmarks/r1 --seeds 0 1 -- -d synthetic -f bench_r1
#
# 1. Each run folder <out>/seed<s>/<method>/ is dry-run with this package (`atso_nnunet_run --plan
#    <run>/plan.json --run-dir <run> --dry-run`): it must end with "every step is done", else nothing
#    is published and the run is named. A dry run writes the resolved plan and every step's trainer
#    config; a configs/ folder that the run did not have before (M0's, g0, in the runs that adopted
#    the labeled-only run's M0) is removed again, so the records stay as the run made them.
# 2. `atso_nnunet_compare` with the plan arguments after `--`, the seeds and every method, over the
#    finished runs: no training, each run's report is rewritten by this package and the tables
#    (comparison.md/.csv/.json/.png) are made for those seeds.
# 3. `atso_nnunet_publish <out> <dest>`: the records and tables without models.
# Then: the tables' section in docs/results.md, the re-derive command's --seeds there, and the ship
# rule's table (`python benchmarks/ship_rule_regret.py`, docs/without_labels.md and its test) by hand.
#
# Run it only while no comparison drives these seeds (a dry run beside a running run is refused by
# nothing and would race it). ATSO_PY (default .venv/bin) names the folder of the console scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 --out DIR --nnunet-dir DIR --dest DIR --seeds S [S ...] -- <atso_nnunet_compare plan arguments>" >&2; exit 2; }
out=""; nnunet=""; dest=""; seeds=(); bin=${ATSO_PY:-.venv/bin}
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --nnunet-dir) nnunet=$2; shift 2 ;;
        --dest) dest=$2; shift 2 ;;
        --seeds) shift; while [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; do seeds+=("$1"); shift; done ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
[ -n "$out" ] && [ -n "$nnunet" ] && [ -n "$dest" ] && [ ${#seeds[@]} -gt 0 ] && [ $# -gt 0 ] || usage
METHODS=(supervised oracle stso self atso)
err=$(mktemp); trap 'rm -f "$err"' EXIT

for s in "${seeds[@]}"; do
    for m in "${METHODS[@]}"; do
        run=$out/seed$s/$m
        [ -f "$run/plan.json" ] || { echo "publish: $run has no plan.json: seed $s's $m has not run" >&2; exit 1; }
        had=$(ls "$run/configs" 2>/dev/null || true)
        rc=0
        listing=$("$bin/atso_nnunet_run" --plan "$run/plan.json" --run-dir "$run" --nnunet-dir "$nnunet" --dry-run 2>"$err") || rc=$?
        for c in $(ls "$run/configs" 2>/dev/null); do
            grep -qx "$c" <<<"$had" || rm -rf "${run:?}/configs/$c"
        done
        [ "$rc" = 0 ] || { echo "publish: the dry run of $run failed (exit $rc):" >&2; cat "$err" >&2; exit 1; }
        if ! grep -q "every step is done" <<<"$listing"; then
            echo "publish: $run is not finished; steps left:" >&2
            grep -v "(done)" <<<"$listing" | grep "^# " | grep -v "training budget\|^#   " >&2 || true
            exit 1
        fi
        echo "publish: seed $s $m: every step done"
    done
done

"$bin/atso_nnunet_compare" "$@" --nnunet-dir "$nnunet" --seeds "${seeds[@]}" --methods oracle stso self atso --out "$out"
"$bin/atso_nnunet_publish" "$out" "$dest"
echo "publish: $dest written; now docs/results.md (section and re-derive --seeds) and the ship rule's table (benchmarks/ship_rule_regret.py)"

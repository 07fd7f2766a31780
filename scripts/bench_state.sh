#!/usr/bin/env bash
# Keep a long CPU benchmark's resumable state in the repository, so that it survives the loss of
# the machine (or checkout) it runs on: a comparison that needs more CPU hours than one working
# session continues in the next one from its last checkpoints instead of from nothing.
#
#   scripts/bench_state.sh save NAME PATH...   pack PATH... (absolute) into bench_state/NAME.tar.xz
#   scripts/bench_state.sh restore NAME        unpack it where it came from (never over existing files)
#   scripts/bench_state.sh list NAME           what it holds
#
# What is packed: the run folders and nnU-Net folders named, without checkpoint_best.pth (nnU-Net's
# own checkpoint_latest.pth / checkpoint_final.pth are what a run resumes and predicts from).
# Paths are stored absolute (run folders record where
# their nnU-Net folders are), so restore puts them back at the same place.
# Example (the tri-view seed of docs/lab/benchmarks.md):
#   scripts/bench_state.sh save 10pct_triview /work/bench/10pct_triview \
#       /work/bench/nnunet/nnUNet_raw/Dataset985_SynthBenchA \
#       /work/bench/nnunet/nnUNet_raw/Dataset987_SynthBench10pctS0 \
#       /work/bench/nnunet/nnUNet_preprocessed/Dataset987_SynthBench10pctS0
# BENCH_STATE_EXCLUDE="PATTERN ..." leaves out more (tar --exclude patterns), e.g. the models and
# saved probabilities of runs that have finished: a resumed comparison trusts the steps its runs
# recorded as done and never opens them again (keep those of unfinished runs, and M0's while a
# self-learning run still has to start from it):
#   BENCH_STATE_EXCLUDE="*.npz work/bench/10pct_triview/seed0/atso/models work/bench/10pct_triview/seed0/oracle/models" \
#       scripts/bench_state.sh save 10pct_triview ...
# BENCH_STATE_DIR (an absolute path) puts the archives somewhere else than the repository's bench_state/
# (the tests).
# Save only while the benchmark is stopped (or between its steps): a checkpoint being written is
# not a checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${BENCH_STATE_DIR:-bench_state}
die() { echo "bench_state: $*" >&2; exit 1; }

cmd=${1:-}; name=${2:-}
[ -n "$cmd" ] && [ -n "$name" ] || { echo "usage: $0 save NAME PATH... | restore NAME | list NAME" >&2; exit 2; }
case "$name" in *[!A-Za-z0-9_.-]*) die "NAME '$name': letters, digits, '_', '.', '-' only" ;; esac
archive=$STATE/$name.tar.xz

case "$cmd" in
    save)
        shift 2
        [ $# -gt 0 ] || die "save $name: name the folders to pack"
        rel=()
        for p in "$@"; do
            case "$p" in /*) ;; *) die "$p: give absolute paths (they are restored where they were)" ;; esac
            [ -e "$p" ] || die "$p does not exist"
            rel+=("${p#/}")
        done
        mkdir -p "$STATE"
        tmp=$(mktemp "$STATE/.$name.XXXXXX")
        trap 'rm -f "$tmp"' EXIT
        excl=(--exclude=checkpoint_best.pth)
        read -r -a extra <<< "${BENCH_STATE_EXCLUDE:-}"     # split on spaces, no glob expansion
        for x in ${extra[@]+"${extra[@]}"}; do excl+=("--exclude=$x"); done
        tar -C / "${excl[@]}" -cJf "$tmp" "${rel[@]}"
        chmod 644 "$tmp"; mv "$tmp" "$archive"; trap - EXIT
        echo "saved $archive ($(du -h "$archive" | cut -f1)): $*"
        ;;
    restore)
        [ -f "$archive" ] || die "no $archive"
        # nothing is unpacked over a file already there (a run that went on here is newer)
        clash=$(tar -tJf "$archive" | while read -r f; do [ -f "/$f" ] && echo "/$f"; done | head -3 || true)
        [ -z "$clash" ] || die "not restored: files already there (e.g. ${clash//$'\n'/, }); move them away first"
        tar -C / --keep-old-files -xJf "$archive"
        echo "restored $archive under /"
        ;;
    list) [ -f "$archive" ] || die "no $archive"; tar -tJvf "$archive" ;;
    *) echo "usage: $0 save NAME PATH... | restore NAME | list NAME" >&2; exit 2 ;;
esac

"""benchmarks/compare_lanes.sh: lanes share one queue of runs; a seed's other runs start only after
its labeled-only run (M0) is done, a free lane trains the next seed's M0 instead of waiting, every
run is called once with --cpu-jobs 2, a rerun skips what is done, and the tables are written last.

The compare command is a stand-in that logs its arguments and marks its run done (the lanes' order
is what is tested here; the comparison itself is tested in tests/comparison)."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "compare_lanes.sh"
METHODS = ("supervised", "atso", "stso", "self", "oracle")

STAND_IN = """#!/usr/bin/env bash
# logs "start|end <args>"; --methods M (one method) marks seed<s>/M done after a while
out=""; seed=""; methods=""
args="$*"
while [ $# -gt 0 ]; do
  case "$1" in --out) out=$2; shift 2;; --seeds) seed=$2; shift 2;; --methods) methods=$2; shift 2;; *) shift;; esac
done
echo "start $args" >> "$out/calls.log"
if [ -n "$methods" ]; then
  [ "$methods" = supervised ] && sleep 3 || sleep 0.3
  if [ -f "$out/skip_once_$seed.$methods" ]; then rm "$out/skip_once_$seed.$methods"; echo "skipped $args" >> "$out/calls.log"; exit 0; fi
  mkdir -p "$out/seed$seed/$methods/state"; touch "$out/seed$seed/$methods/state/report.done"
fi
echo "end $args" >> "$out/calls.log"
"""


def _stand_in(tmp_path: Path, body: str = STAND_IN) -> Path:
    p = tmp_path / "compare"
    p.write_text(body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return p


def _lanes(tmp_path: Path, out: Path, seeds=("0", "1"), compare: Path = None, timeout=120):
    compare = compare or _stand_in(tmp_path)
    return subprocess.run(["bash", str(SCRIPT), "--out", str(out), "--seeds", *seeds, "--compare", str(compare),
                           "--", "-d", "synthetic", "-f", "bench_r1"],
                          env={**os.environ, "LANES_POLL_S": "0.2"}, capture_output=True, text=True, timeout=timeout)


def _call(out: Path, what: str, s: int, m: str) -> str:
    return f"{what} -d synthetic -f bench_r1 --seeds {s} --methods {m} --out {out} --cpu-jobs 2"


def test_runs_wait_for_their_seeds_m0_a_free_lane_trains_the_next_m0_and_the_tables_come_last(tmp_path):
    out = tmp_path / "cmp"
    r = _lanes(tmp_path, out)
    assert r.returncode == 0, r.stderr
    calls = (out / "calls.log").read_text().splitlines()
    starts = [c for c in calls if c.startswith("start")]
    assert len(starts) == 11  # each of the 10 runs once, then the tables
    assert starts[-1] == f"start -d synthetic -f bench_r1 --seeds 0 1 --out {out} --report-only"
    assert calls.index(starts[-1]) > max(i for i, c in enumerate(calls) if c.startswith("end") and "--report-only" not in c)
    for s in (0, 1):
        m0_end = calls.index(_call(out, "end", s, "supervised"))
        for m in METHODS[1:]:
            assert calls.index(_call(out, "start", s, m)) > m0_end, (s, m)  # only after the seed's M0
    # the second lane does not wait for seed 0's M0: it trains seed 1's meanwhile
    assert calls.index(_call(out, "start", 1, "supervised")) < calls.index(_call(out, "end", 0, "supervised"))
    # ATSO, the longest run, first of its seed
    assert calls.index(_call(out, "start", 0, "atso")) < calls.index(_call(out, "start", 0, "oracle"))
    taken = dict(line.split(" lane ")[1].split(": ")[::-1] for line in (out / "lanes.log").read_text().splitlines())
    assert len(taken) == 10 and {taken["seed 0 supervised"], taken["seed 1 supervised"]} == {"A", "B"}  # which is racy
    assert not (out / ".lane_claims").exists()


def test_a_rerun_skips_finished_runs_and_clears_a_stopped_scripts_claims(tmp_path):
    out = tmp_path / "cmp"
    for m in ("supervised", "atso", "stso"):
        (out / "seed0" / m / "state").mkdir(parents=True)
        (out / "seed0" / m / "state" / "report.done").touch()
    (out / ".lane_claims" / "seed0.self").mkdir(parents=True)  # left by a killed script
    r = _lanes(tmp_path, out, seeds=("0",))
    assert r.returncode == 0, r.stderr
    starts = [c for c in (out / "calls.log").read_text().splitlines() if c.startswith("start")]
    assert sorted(starts[:-1]) == sorted(_call(out, "start", 0, m) for m in ("self", "oracle"))


def test_a_run_skipped_because_its_folder_was_locked_is_taken_again(tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "skip_once_0.stso").touch()
    r = _lanes(tmp_path, out, seeds=("0",))
    assert r.returncode == 0, r.stderr
    calls = (out / "calls.log").read_text().splitlines()
    assert calls.count(_call(out, "start", 0, "stso")) == 2 and (out / "seed0" / "stso" / "state" / "report.done").is_file()


def test_lanes_give_up_after_three_failures_in_a_row_and_say_so(tmp_path):
    failing = _stand_in(tmp_path, "#!/usr/bin/env bash\nexit 3\n")
    out = tmp_path / "cmp"
    r = _lanes(tmp_path, out, seeds=("0",), compare=failing, timeout=60)
    assert r.returncode != 0 and "runs not done" in r.stderr
    for lane in ("A", "B"):
        assert "failed (exit 3), 3 in a row" in (out / f"lane_{lane}.log").read_text()


def test_usage_without_a_plan_or_with_a_bad_lane_count(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path), "--seeds", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    r = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path), "--seeds", "0", "--lanes", "0", "--", "-d", "x"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--lanes must be 1 to 9" in r.stderr

"""benchmarks/compare_lanes.sh: lane B starts a seed's ATSO only after lane A's labeled-only run of
that seed is done, each lane passes --cpu-jobs 2, and the tables are written once at the end.

The compare command is a stand-in that logs its arguments (the lanes' order is what is tested here;
the comparison itself is tested in tests/comparison)."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "compare_lanes.sh"

STAND_IN = """#!/usr/bin/env bash
# logs "<time> <args>"; a call with --methods oracle ... finishes the seed's labeled-only run after a while
out=""; seed=""; methods=""
args="$*"
while [ $# -gt 0 ]; do
  case "$1" in --out) out=$2; shift 2;; --seeds) seed=$2; shift 2;; --methods) shift; methods=""; while [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; do methods="$methods $1"; shift; done;; *) shift;; esac
done
echo "start $args" >> "$out/calls.log"
if [ "$methods" = " oracle stso self" ]; then
  sleep 1; mkdir -p "$out/seed$seed/supervised/state"; echo "M0 $seed" >> "$out/calls.log"
  touch "$out/seed$seed/supervised/state/report.done"; sleep 1
fi
for m in $methods; do mkdir -p "$out/seed$seed/$m/state"; touch "$out/seed$seed/$m/state/report.done"; done
echo "end $args" >> "$out/calls.log"
"""


def _stand_in(tmp_path: Path) -> Path:
    p = tmp_path / "compare"
    p.write_text(STAND_IN)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return p


def test_lanes_wait_for_each_seeds_m0_and_write_the_tables_last(tmp_path):
    out = tmp_path / "cmp"
    r = subprocess.run(["bash", str(SCRIPT), "--out", str(out), "--seeds", "0", "1", "--compare",
                        str(_stand_in(tmp_path)), "--", "-d", "synthetic", "-f", "bench_r1"],
                       env={**os.environ, "LANES_POLL_S": "0.2"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    calls = (out / "calls.log").read_text().splitlines()
    starts = [c for c in calls if c.startswith("start")]
    assert len(starts) == 5 and starts[-1].endswith("--seeds 0 1 --out " + str(out) + " --report-only")
    for s in (0, 1):
        atso = calls.index(f"start -d synthetic -f bench_r1 --seeds {s} --methods atso --out {out} --cpu-jobs 2")
        assert calls.index(f"M0 {s}") < atso  # ATSO of a seed only after that seed's M0
    assert f"start -d synthetic -f bench_r1 --seeds 1 --methods oracle stso self --out {out} --cpu-jobs 2" in calls
    assert calls.index(f"start -d synthetic -f bench_r1 --seeds 0 1 --out {out} --report-only") > max(
        i for i, c in enumerate(calls) if c.startswith("end") and "--report-only" not in c)


def test_lane_b_gives_up_when_lane_a_ends_without_the_m0(tmp_path):
    failing = tmp_path / "compare"
    failing.write_text("#!/usr/bin/env bash\nexit 3\n")
    failing.chmod(0o755)
    out = tmp_path / "cmp"
    r = subprocess.run(["bash", str(SCRIPT), "--out", str(out), "--seeds", "0", "--compare", str(failing), "--",
                        "-d", "synthetic", "-f", "bench_r1"], env={**os.environ, "LANES_POLL_S": "0.2"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "a lane failed" in r.stderr
    assert "lane A ended before seed 0's M0 was done" in (out / "lane_B.log").read_text()


def test_usage_without_a_plan():
    r = subprocess.run(["bash", str(SCRIPT), "--out", "/tmp/x", "--seeds", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr

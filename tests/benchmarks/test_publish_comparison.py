"""benchmarks/publish_comparison.sh: nothing is re-rendered or published while a run is unfinished, the
dry run's new configs are removed again, and the tables are made for exactly the seeds asked.

The console scripts are stand-ins (ATSO_PY) that log their arguments: a dry run answers "every step is
done" where the run folder holds state/report.done and, like the real one, writes configs/g0. What the
real commands do is tested in tests/run and tests/comparison; their chaining over a real finished seed
is in docs/lab/benchmarks.md (r1 seed 0 reproduced byte for byte)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "publish_comparison.sh"
METHODS = ("supervised", "oracle", "stso", "self", "atso")

STAND_INS = {
    "atso_nnunet_run": """#!/usr/bin/env bash
run=""; while [ $# -gt 0 ]; do case "$1" in --run-dir) run=$2; shift 2;; *) shift;; esac; done
mkdir -p "$run/configs/g0"; echo "dry $run" >> "$LOG"
if [ -f "$run/state/report.done" ]; then echo "# every step is done: a run only rewrites the report"
else echo "# g1/train/g1_all/axial"; fi
""",
    "atso_nnunet_compare": '#!/usr/bin/env bash\necho "compare $*" >> "$LOG"\n',
    "atso_nnunet_publish": '#!/usr/bin/env bash\necho "publish $*" >> "$LOG"\n',
}


def _setup(tmp_path: Path, unfinished: str = ""):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STAND_INS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    out = tmp_path / "r1"
    for m in METHODS:
        run = out / "seed0" / m
        (run / "state").mkdir(parents=True)
        (run / "plan.json").write_text("{}")
        (run / "configs" / ("g0" if m == "supervised" else "g1")).mkdir(parents=True)
        if m != unfinished:
            (run / "state" / "report.done").touch()
    env = {**os.environ, "ATSO_PY": str(bin_dir), "LOG": str(tmp_path / "calls.log")}
    cmd = ["bash", str(SCRIPT), "--out", str(out), "--nnunet-dir", str(tmp_path / "nn"), "--dest",
           str(tmp_path / "dest"), "--seeds", "0", "--", "-d", "synthetic", "-f", "bench_r1"]
    return out, env, cmd


def test_finished_seed_is_rerendered_and_published_and_its_configs_left_as_they_were(tmp_path):
    out, env, cmd = _setup(tmp_path)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c for c in calls if c.startswith("dry")] == [f"dry {out}/seed0/{m}" for m in METHODS]
    assert calls[-2:] == [
        f"compare -d synthetic -f bench_r1 --nnunet-dir {tmp_path / 'nn'} --seeds 0 --methods oracle stso self atso --out {out}",
        f"publish {out} {tmp_path / 'dest'}"]
    assert sorted(p.name for p in (out / "seed0" / "stso" / "configs").iterdir()) == ["g1"]  # g0 removed again
    assert sorted(p.name for p in (out / "seed0" / "supervised" / "configs").iterdir()) == ["g0"]  # its own kept


def test_an_unfinished_run_is_named_and_nothing_is_published(tmp_path):
    out, env, cmd = _setup(tmp_path, unfinished="atso")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"{out}/seed0/atso is not finished" in r.stderr and "g1/train/g1_all/axial" in r.stderr
    calls = (tmp_path / "calls.log").read_text()
    assert "compare" not in calls and "publish" not in calls
    assert sorted(p.name for p in (out / "seed0" / "atso" / "configs").iterdir()) == ["g1"]

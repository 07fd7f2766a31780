"""A run folder made before the package was reorganised (issue 27) resumes after it with nothing rerun.

``data/fake_atso_run_8f63ce1.tar.xz`` is the run folder of a tiny ATSO run (two generations, axial
view, the fake nnU-Net of ``fake_nnunet.py``) made with the code of main at commit 8f63ce1, just before the
move; its ``inputs/`` links (absolute paths of the machine that made it) are left out.
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

from atso_nnunet.plan import plan_from_dict
from atso_nnunet.run import steps as runners
from atso_nnunet.run.driver import DriverOptions, run_experiment
from atso_nnunet.run.rundir import RunDir
from fake_nnunet import FakeNnUNetExecutor
from helpers import write_tiny_dataset

ARCHIVE = Path(__file__).parent / "data" / "fake_atso_run_8f63ce1.tar.xz"
PLAN = {"name": "fake", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "FakeExp",
        "labeled": ["tiny_000", "tiny_001", "tiny_002"], "reference": ["tiny_003", "tiny_004", "tiny_005", "tiny_006"],
        "test": ["tiny_007", "tiny_008"], "method": "atso", "generations": 2, "views": ["axial"]}


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_run_made_before_the_move_resumes_with_nothing_rerun(tmp_path, nnunet_paths, monkeypatch):
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    run = RunDir(tmp_path / "run")
    write_tiny_dataset(nnunet_paths.raw, dataset_id=991, name="FakeExp")
    before = _files(run.root / "state")
    reports = {name: (run.root / name).read_bytes() for name in ("report.json", "report.csv")}
    ran = []
    for kind in list(runners.PLUGIN_RUNNERS):
        monkeypatch.setitem(runners.PLUGIN_RUNNERS, kind, lambda ctx, step: ran.append(step.id) or {})
    executor = FakeNnUNetExecutor()

    run_experiment(plan_from_dict(PLAN), DriverOptions(run_dir=run.root, paths=nnunet_paths, executor=executor))

    assert executor.ran == [] and ran == []          # no nnU-Net job, no plugin step
    assert _files(run.root / "state") == before      # every marker found where it was, none added
    assert json.loads((run.root / "plan.json").read_text())["method"] == "atso"
    assert (run.root / "report.csv").read_bytes() == reports["report.csv"]
    # the same report; issue 29 (after the archive was made) adds which trainings were resumed: none,
    # issue 28 the model the run ships: the final one
    after = json.loads((run.root / "report.json").read_text())
    assert after.pop("resumed_trainings") == []
    assert after["without_labels"]["ship"].pop("model") == "final"
    # issue 25 (item 7) adds the pseudo-labels' volume against the labeled cases' mean: not recorded by this run
    assert after["without_labels"].pop("vs_labeled") == {}
    assert all(g.pop("volume_vs_labeled") is None for g in after["generations"])
    # and the words on how M_t is scored name its views and fusion
    made = json.loads(reports["report.json"])
    # and the drift words say 'fused pseudo-labels' (true of the mean fusion too) where they said 'vote'
    made["without_labels"]["drift"]["words"] = made["without_labels"]["drift"]["words"].replace(
        "M0's vote kept", "M0's fused pseudo-labels kept")
    assert after.pop("how_evaluated") == made.pop("how_evaluated").replace(
        "(the paper's M_t);", "(the paper's M_t), axial view only;")
    assert after == made

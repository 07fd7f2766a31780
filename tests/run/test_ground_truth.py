"""Leakage test: a run without the ground truth of R and E, then the ground truth put back."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from helpers import write_tiny_dataset
from helpers import tiny_plan


def _snapshot(run):
    """Markers of every step that is not scoring (content + mtime) and the pseudo-label bytes."""
    markers = {str(p.relative_to(run)): (p.read_text(), p.stat().st_mtime_ns)
               for p in (run / "state").rglob("*.done") if "/evaluate/" not in str(p) and p.name != "report.done"}
    pseudo = {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in (run / "pseudolabels").rglob("*") if p.is_file()}
    return markers, pseudo


def _fake_run(tmp_path):
    """A run folder whose two scoring steps were recorded as unavailable, and the context reopen_scoring reads."""
    from types import SimpleNamespace

    from atso_nnunet.data import layout
    from atso_nnunet.run.rundir import RunDir

    source = write_tiny_dataset(tmp_path / "raw", dataset_id=990, n_labeled=1, n_reference=2, n_test=1)
    experiment = tmp_path / "raw" / "Dataset991_Exp"
    for folder in ("imagesRef", "imagesTs"):
        shutil.copytree(source / folder, experiment / folder)
    run = RunDir(tmp_path / "run")
    steps = [SimpleNamespace(kind="evaluate", id="g0/evaluate/R_g0/R", cases=("tiny_001", "tiny_002"),
                             role="reference_eval", output=tmp_path / "run" / "eval" / "R_g0" / "R.json"),
             SimpleNamespace(kind="evaluate", id="g0/evaluate/M0/E", cases=("tiny_003",), role="test_eval",
                             output=tmp_path / "run" / "eval" / "M0" / "E.json"),
             SimpleNamespace(kind="train", id="g0/train/M0/axial", cases=(), role=None)]
    for step in steps:
        run.mark_done(step.id, 0.0, **({"available": False} if step.kind == "evaluate" else {}))
    run.mark_done("report", 0.0)
    ctx = SimpleNamespace(
        run=run, dataset_dir=experiment, foreground=(1,), plan=SimpleNamespace(eval_label_map={}), path=lambda a: a,
        ground_truth_dir=lambda role: experiment / ("labelsTs" if role == "test_eval" else "labelsRef"),
        image=lambda case: next(experiment.rglob(f"{case}_0000.nii.gz")))
    return source, experiment, run, steps, ctx, layout


def test_reopen_scoring_links_new_ground_truth_and_reopens_only_scoring(tmp_path, caplog):
    import logging

    from atso_nnunet.errors import InputError
    from atso_nnunet.run.ground_truth import reopen_scoring

    caplog.set_level(logging.INFO)
    source, experiment, run, steps, ctx, layout = _fake_run(tmp_path)
    held = tmp_path / "held"
    shutil.move(str(source / "labelsTs"), str(held))
    assert reopen_scoring(ctx, steps, [source]) == ["g0/evaluate/R_g0/R"]
    assert not run.is_done("g0/evaluate/R_g0/R") and not run.is_done("report")
    assert run.is_done("g0/evaluate/M0/E") and run.is_done("g0/train/M0/axial")
    assert (experiment / "labelsRef" / "tiny_001.nii.gz").is_symlink()
    assert "scoring them again" in caplog.text
    # a broken ground-truth file that appears later is named, and nothing is reopened
    shutil.move(str(held), str(source / "labelsTs"))
    bad = source / "labelsTs" / "tiny_003.nii.gz"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(InputError, match="tiny_003"):
        reopen_scoring(ctx, steps, [source])
    assert run.is_done("g0/evaluate/M0/E")


@pytest.mark.slow
def test_nothing_reads_the_ground_truth_of_r_and_e_before_scoring(tmp_path):
    """Take labelsRef / labelsTs away (moved, not chmod: CI runs as root), run to the end, put back."""
    import sys
    import os

    nn = tmp_path / "nn"
    source = write_tiny_dataset(nn / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=3, n_reference=4,
                                n_test=2)
    held = tmp_path / "held_back"
    held.mkdir()
    for folder in ("labelsRef", "labelsTs"):
        shutil.move(str(source / folder), str(held / folder))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "atso_nnunet.cli.run", "--plan", str(tiny_plan(tmp_path)), "--nnunet-dir", str(nn),
           "--run-dir", str(run), "--num-processes", "1"]
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA"}

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    evaluations = sorted((run / "state").rglob("evaluate/**/*.done"))
    assert evaluations and all(json.loads(p.read_text())["available"] is False for p in evaluations)
    report = json.loads((run / "report.json").read_text())
    assert report["final"]["test_dsc_mean"] is None
    assert all(g["test_dsc"] is None and g["reference_dsc"] is None for g in report["generations"])
    assert "–" in (run / "report.md").read_text()
    assert sorted(p.name for p in (run / "pseudolabels" / "R_g1").glob("*.nii.gz")) == \
        [f"tiny_00{i}.nii.gz" for i in range(3, 7)]
    before = _snapshot(run)

    for folder in ("labelsRef", "labelsTs"):
        shutil.move(str(held / folder), str(source / folder))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "nnUNetv2_train" not in res.stderr and "nnUNetv2_predict" not in res.stderr
    assert "scoring them again" in res.stderr
    assert _snapshot(run) == before, "a training, prediction or pseudo-label step ran again"
    report = json.loads((run / "report.json").read_text())
    assert report["final"]["test_dsc_mean"] is not None
    assert all(g["test_dsc"] is not None and g["reference_dsc"] is not None for g in report["generations"])
    assert all(json.loads(p.read_text())["available"] is True for p in evaluations)
    # the ground truth is linked into the experiment dataset
    assert len(list((nn / "nnUNet_raw" / "Dataset991_TinyExp" / "labelsTs").glob("*.nii.gz"))) == 2

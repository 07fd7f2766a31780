"""Diagnosis of a run folder (figures + summary) on a fake run, and its parsers by hand."""
from __future__ import annotations

import numpy as np
import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.evaluation import diagnosis
from atso_nnunet.evaluation.diagnosis.ingested import _registration
from atso_nnunet.evaluation.diagnosis.rundata import foreground
from atso_nnunet.evaluation.diagnosis.volumes import label_set_volumes
from atso_nnunet.nnunet.training_log import parse_training_log, training_log_epochs
from atso_nnunet.run import steps as runners
from atso_nnunet.run.driver import PREPARE, DriverOptions, run_experiment
from atso_nnunet.io import read_array
from atso_nnunet.plan import plan_from_dict
from atso_nnunet.run.rundir import RunDir

from helpers import write_tiny_dataset
from fake_nnunet import FakeNnUNetExecutor

# nnU-Net 2.8 log lines (numpy 2 prints np.float32(...) in the pseudo dice list)
LOG = """\
2026-11-29 15:50:01.000001: Epoch 0
2026-11-29 15:50:01.000002: Current learning rate: 0.03
2026-11-29 15:50:09.000003: train_loss 0.1234
2026-11-29 15:50:09.000004: val_loss -0.05
2026-11-29 15:50:09.000005: Pseudo dice [np.float32(0.25)]
2026-11-29 15:50:09.000006: Epoch time: 8.0 s
2026-11-29 15:50:09.000007: Epoch 1
2026-11-29 15:50:17.000008: train_loss -0.3
2026-11-29 15:50:17.000009: val_loss -0.4
2026-11-29 15:50:17.000010: Pseudo dice [0.5, 0.7]
"""


def test_parse_training_log_reads_losses_and_pseudo_dice():
    out = parse_training_log(LOG)
    assert out["train_loss"] == [0.1234, -0.3]
    assert out["val_loss"] == [-0.05, -0.4]
    assert out["pseudo_dice"] == pytest.approx([0.25, 0.6])


def test_a_continued_training_s_replayed_epochs_are_counted_once_with_the_later_values():
    resumed = """\
2026-11-29 16:00:00.000001: Epoch 1
2026-11-29 16:00:08.000002: train_loss -0.31
2026-11-29 16:00:08.000003: val_loss -0.41
2026-11-29 16:00:08.000004: Pseudo dice [0.8]
2026-11-29 16:00:08.000005: Epoch 2
2026-11-29 16:00:16.000006: train_loss -0.5
2026-11-29 16:00:16.000007: val_loss -0.6
2026-11-29 16:00:16.000008: Pseudo dice [0.9]
"""
    out = training_log_epochs([LOG, resumed])  # LOG ran epochs 0-1; the continued one 1-2
    assert out["train_loss"] == [0.1234, -0.31, -0.5]
    assert out["pseudo_dice"] == pytest.approx([0.25, 0.8, 0.9])
    no_epoch_lines = "\n".join(line for line in LOG.splitlines() if ": Epoch " not in line)
    assert training_log_epochs([no_epoch_lines])["val_loss"] == [-0.05, -0.4]


def test_foreground_counts_mapped_labels_as_organ():
    lab = np.array([0, 1, 2, 3])
    assert foreground(lab, {2: 1}).tolist() == [False, True, True, True]
    assert foreground(lab, {2: 0}).tolist() == [False, True, False, True]


@pytest.fixture
def fake_atso_run(tmp_path, nnunet_paths, monkeypatch):
    """A finished fake ATSO run (1 generation, axial) with one nnU-Net training log."""
    write_tiny_dataset(nnunet_paths.raw, dataset_id=991, name="FakeExp")
    monkeypatch.setitem(runners.PLUGIN_RUNNERS, "ingest", lambda ctx, step: {"empty_cases": []})
    plan = plan_from_dict({
        "name": "fake", "sources": ["Dataset990_Tiny"], "dataset_id": 991, "dataset_name": "FakeExp",
        "labeled": ["tiny_000", "tiny_001", "tiny_002"],
        "reference": ["tiny_003", "tiny_004", "tiny_005", "tiny_006"], "test": ["tiny_007", "tiny_008"],
        "method": "atso", "generations": 1, "views": ["axial"], "metric": "global",
        # R_g1 exists only when the final model learns from it (by default generation T makes no labels)
        "method_options": {"atso": {"final_labels": "last"}}})
    run_dir = tmp_path / "run"
    RunDir(run_dir).mark_done(PREPARE, 0.0)
    run_experiment(plan, DriverOptions(run_dir=run_dir, paths=nnunet_paths, executor=FakeNnUNetExecutor()))
    fold = next((run_dir / "models" / "M0").glob("nnUNet_results/*/*__*__2d/fold_all"))
    (fold / "training_log_2026_11_29_15_50_00.txt").write_text(LOG)
    return run_dir


def test_diagnose_fake_run_writes_figures_and_numbers(fake_atso_run, nnunet_paths, tmp_path):
    out = tmp_path / "diag"
    summary = diagnosis.diagnose_run(fake_atso_run, out, paths=nnunet_paths)
    for name in ("volumes.png", "overlays_R.png", "overlays_E.png", "training.png"):
        assert (out / name).stat().st_size > 1000, name
    text = summary.read_text()
    assert "| R_g0 | R |" in text and "| R_g1 | R |" in text and "| M0 | E |" in text
    assert "| M0 | axial | 2 |" in text

    run = diagnosis.load_run(fake_atso_run, nnunet_paths)
    assert run.pseudo_label_sets == ["R_g0", "R_g1"]
    assert run.test_sets[0] == "M0" and run.test_sets[-1] == "final"
    # volumes by hand for one case: the fake predicts image > 75 HU
    sets = {(s.name, s.part): s for s in label_set_volumes(run)}
    s = sets[("R_g0", "R")]
    img, geom = read_array(run.image_file("tiny_003"))
    gt = read_array(run.gt_file("tiny_003"))[0] > 0
    pred = img > 75
    ml = float(np.prod(geom.spacing)) / 1000
    i = s.cases.index("tiny_003")
    assert s.volume[i] == pytest.approx(pred.sum() * ml)
    assert s.gt_volume[i] == pytest.approx(gt.sum() * ml)
    assert s.fp[i] == pytest.approx((pred & ~gt).sum() * ml)
    assert s.empty == 0


def test_run_without_plan_is_refused(tmp_path):
    with pytest.raises(InputError, match="no plan.json"):
        diagnosis.load_run(tmp_path)


def test_registration_check_finds_a_flip_after_transpose_crop_and_resampling():
    """The ingested mask's centroid, mapped back to mm, matches the original's; a flip does not."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    original = np.zeros((10, 20, 16), bool)  # (z, y, x) file order, spacing (z, y, x) = (3, 1, 1)
    original[2:5, 3:9, 10:14] = True
    original[rng.integers(0, 10, 5), rng.integers(2, 10, 5), rng.integers(2, 15, 5)] = True  # inside the crop
    tf = (2, 0, 1)  # sagittal
    pm = SimpleNamespace(transpose_forward=tf)
    cm = SimpleNamespace(spacing=[3.0, 0.5])  # 2d: in-plane target spacing; axis 0 keeps its own
    props = {"spacing": [3.0, 1.0, 1.0], "bbox_used_for_cropping": [[1, 15], [0, 10], [2, 19]]}
    t = original.transpose(tf)
    cropped = t[1:15, 0:10, 2:19]
    ingested = np.repeat(cropped, 2, axis=2)  # 1 mm -> 0.5 mm along the last axis
    vol_o, vol_p, shift = _registration(original, ingested, props, pm, cm)
    assert vol_p == pytest.approx(vol_o) and shift < 0.1
    _, _, flipped = _registration(original, ingested[:, ::-1], props, pm, cm)
    assert flipped > 5

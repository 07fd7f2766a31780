"""atso_nnunet_view_volumes: per-view and vote DSC and volume of a finished tri-view run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from atso_nnunet.cli.view_volumes import main
from atso_nnunet.evaluation.view_volumes import score_folder


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(path))


def test_vote_keeping_less_foreground_than_each_view_shows(tmp_path, capsys):
    gt = np.zeros((6, 8, 8), np.uint8)
    gt[1:5, 2:6, 2:6] = 1
    labels, run = tmp_path / "labels", tmp_path / "run"
    _write(labels / "c0.nii.gz", gt)
    (run).mkdir()
    (run / "plan.json").write_text(json.dumps({"test": ["c0"]}))
    for view in ("axial", "coronal", "sagittal"):
        _write(run / "predictions" / "M0" / view / "c0.nii.gz", gt)       # every view exact
    half = gt.copy()
    half[3:] = 0                                                            # the vote keeps half
    _write(run / "fused" / "M0" / "E" / "c0.nii.gz", half)
    assert score_folder(run / "fused" / "M0" / "E", labels, ["c0"]) == pytest.approx((200 * 32 / 96, 0.5))
    assert main([str(run), "--labels", str(labels)]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| M0")][0]
    assert row.split(" | ")[1:] == ["100.0", "1.00", "100.0", "1.00", "100.0", "1.00", "66.7", "0.50 |"]


def test_missing_ground_truth_is_refused_before_reading_predictions(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "plan.json").write_text(json.dumps({"test": ["c9"]}))
    (tmp_path / "labels").mkdir()
    assert main([str(tmp_path / "run"), "--labels", str(tmp_path / "labels")]) == 2

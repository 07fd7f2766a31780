"""Evaluation with MONAI metrics, against values computed by hand."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice

from atso_nnunet.errors import InputError
from atso_nnunet.evaluation.metrics import agreement, dice_from_counts, evaluate_folder
from atso_nnunet.io import Geometry, write_array

SHAPE = (6, 5, 4)  # z, y, x
GEOMETRY = Geometry(size=(4, 5, 6), spacing=(0.7, 0.8, 3.0), origin=(1.0, -2.0, 30.0),
                    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def _vol(voxels=(), value=1):
    a = np.zeros(SHAPE, np.uint8)
    for v in voxels:
        a[v] = value
    return a


def _write(folder: Path, case: str, array: np.ndarray, geometry: Geometry = GEOMETRY) -> None:
    write_array(array.astype(np.uint8), geometry, folder / f"{case}.nii.gz")


@pytest.fixture
def folders(tmp_path):
    """Four cases with hand-computed counts (class 1).

    a: pred 3, gt 4, overlap 2 -> TP 2, FP 1, FN 2, DSC 4/7
    b: pred 1, gt 1, no overlap -> TP 0, FP 1, FN 1, DSC 0
    c: both empty -> DSC 1 (convention), no counts
    d: gt empty, pred 2 -> FP 2, DSC 0
    """
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    _write(pred, "a", _vol([(1, 1, 1), (1, 1, 2), (1, 2, 1)]))
    _write(gt, "a", _vol([(1, 1, 1), (1, 1, 2), (2, 1, 1), (2, 1, 2)]))
    _write(pred, "b", _vol([(4, 4, 3)]))
    _write(gt, "b", _vol([(0, 0, 0)]))
    _write(pred, "c", _vol())
    _write(gt, "c", _vol())
    _write(pred, "d", _vol([(3, 3, 3), (3, 3, 2)]))
    _write(gt, "d", _vol())
    return pred, gt


def test_dice_from_counts():
    assert dice_from_counts(2, 1, 2) == pytest.approx(4 / 7)
    assert dice_from_counts(0, 0, 0) == 1.0
    assert dice_from_counts(0, 2, 0) == 0.0


def test_per_case_mean_and_global_dsc_by_hand(folders):
    pred, gt = folders
    r = evaluate_folder(pred, gt, progress=False)
    rows = {c.case: c for c in r.cases}
    assert [c.case for c in r.cases] == ["a", "b", "c", "d"]
    assert rows["a"].dsc[1] == pytest.approx(4 / 7)
    assert (rows["a"].tp[1], rows["a"].fp[1], rows["a"].fn[1]) == (2, 1, 2)
    assert (rows["a"].voxels_pred[1], rows["a"].voxels_gt[1]) == (3, 4)
    assert rows["b"].dsc[1] == 0.0
    assert rows["c"].dsc[1] == 1.0
    assert rows["d"].dsc[1] == 0.0 and rows["d"].fp[1] == 2
    assert r.mean_dsc[1] == pytest.approx((4 / 7 + 0 + 1 + 0) / 4)
    # global: TP 2, FP 1+1+2, FN 2+1 -> 4 / (4 + 4 + 3)
    assert r.global_dsc[1] == pytest.approx(4 / 11)
    assert r.score("mean") == r.mean_dsc[1] and r.score("global") == r.global_dsc[1]
    assert r.mean_hd95 == {} and rows["a"].hd95 == {}


def test_two_cases_global_differs_from_mean(folders):
    pred, gt = folders
    r = evaluate_folder(pred, gt, cases=["a", "b"], progress=False)
    assert r.mean_dsc[1] == pytest.approx(2 / 7)
    assert r.global_dsc[1] == pytest.approx(4 / 9)


def test_dsc_agrees_with_monai_compute_dice(folders):
    pred, gt = folders
    r = evaluate_folder(pred, gt, progress=False)
    import SimpleITK as sitk
    for row in r.cases:
        p = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / f"{row.case}.nii.gz")))
        g = sitk.GetArrayFromImage(sitk.ReadImage(str(gt / f"{row.case}.nii.gz")))
        ref = compute_dice(torch.from_numpy(p[None, None] == 1).float(), torch.from_numpy(g[None, None] == 1).float(),
                           include_background=True, ignore_empty=False)
        assert row.dsc[1] == pytest.approx(float(ref[0, 0]))


def test_label_map_merges_tumour_into_pancreas(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    g = _vol([(1, 1, 1), (1, 1, 2)])
    g[2, 1, 1] = 2
    g[2, 1, 2] = 2                                   # 2 pancreas + 2 tumour voxels
    p = _vol([(1, 1, 1), (2, 1, 1)])                 # 2 voxels labelled 1
    p[3, 1, 1] = 2                                   # and one labelled 2 (mapped too)
    _write(pred, "x", p)
    _write(gt, "x", g)
    plain = evaluate_folder(pred, gt, progress=False)
    assert plain.cases[0].dsc[1] == pytest.approx(2 * 1 / (2 + 2))        # label 1 only
    merged = evaluate_folder(pred, gt, label_map={2: 1}, progress=False)
    # pred {111, 211, 311} vs gt {111, 112, 211, 212}: TP 2, FP 1, FN 2
    assert merged.cases[0].dsc[1] == pytest.approx(4 / 7)
    assert merged.label_map == {2: 1}
    two = evaluate_folder(pred, gt, foreground=(1, 2), progress=False)
    assert two.cases[0].dsc[2] == pytest.approx(0.0) and set(two.mean_dsc) == {1, 2}


def test_hd95_spacing_aware_in_mm(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    _write(gt, "z", _vol([(2, 2, 2)]))
    _write(pred, "z", _vol([(3, 2, 2)]))   # one voxel along z (array axis 0): 3.0 mm
    _write(gt, "x", _vol([(2, 2, 1)]))
    _write(pred, "x", _vol([(2, 2, 3)]))   # two voxels along x (array axis 2): 2 * 0.7 mm
    _write(gt, "e", _vol())
    _write(pred, "e", _vol())              # both empty: 0
    _write(gt, "m", _vol([(2, 2, 2)]))
    _write(pred, "m", _vol())              # prediction empty: undefined
    r = evaluate_folder(pred, gt, hd95=True, progress=False)
    hd = {c.case: c.hd95[1] for c in r.cases}
    assert hd["z"] == pytest.approx(3.0)
    assert hd["x"] == pytest.approx(1.4)
    assert hd["e"] == 0.0
    assert math.isnan(hd["m"])
    assert r.mean_hd95[1] == pytest.approx((0.0 + 3.0 + 1.4) / 3)  # m (undefined) is skipped


def test_hd95_block_shift(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    g = np.zeros((10, 10, 10), np.uint8)
    g[2:6, 2:6, 2:6] = 1
    p = np.zeros_like(g)
    p[3:7, 2:6, 2:6] = 1                    # shifted by one slice along z
    geom = Geometry((10, 10, 10), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    _write(gt, "b", g, geom)
    _write(pred, "b", p, geom)
    r = evaluate_folder(pred, gt, hd95=True, progress=False)
    # the farthest surface voxels (the shifted caps) are one slice = 2 mm away
    assert r.cases[0].hd95[1] == pytest.approx(2.0)
    assert r.cases[0].dsc[1] == pytest.approx(2 * 48 / 128)


def test_json_and_csv(folders, tmp_path):
    pred, gt = folders
    r = evaluate_folder(pred, gt, hd95=True, progress=False)
    js = json.loads(r.to_json(tmp_path / "out" / "eval.json").read_text())
    assert js["n_cases"] == 4 and js["global_dsc"]["1"] == pytest.approx(4 / 11)
    assert js["cases"][3]["hd95"]["1"] is None        # gt empty, prediction not: undefined -> null
    rows = list(csv.DictReader(open(r.to_csv(tmp_path / "out" / "eval.csv"))))
    assert [row["case"] for row in rows] == ["a", "b", "c", "d"]
    assert float(rows[0]["dsc_1"]) == pytest.approx(4 / 7, abs=1e-6)
    assert rows[0]["voxels_pred_1"] == "3" and rows[0]["voxels_gt_1"] == "4"
    assert rows[3]["hd95_1"] == ""
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_missing_predictions_listed(folders):
    pred, gt = folders
    (pred / "b.nii.gz").unlink()
    (pred / "d.nii.gz").unlink()
    with pytest.raises(InputError, match=r"2 case\(s\): b, d"):
        evaluate_folder(pred, gt, progress=False)


def test_geometry_mismatch_names_case(folders):
    pred, gt = folders
    other = Geometry(GEOMETRY.size, (0.7, 0.8, 2.0), GEOMETRY.origin, GEOMETRY.direction)
    _write(pred, "b", _vol(), other)
    with pytest.raises(InputError, match=r"case b.*spacing"):
        evaluate_folder(pred, gt, progress=False)


def test_agreement(folders, tmp_path):
    pred, gt = folders
    ag = agreement(pred, gt, cases=["a", "b", "c"])
    assert ag.per_case == pytest.approx({"a": 4 / 7, "b": 0.0, "c": 1.0})
    assert ag.mean == pytest.approx((4 / 7 + 1) / 3)
    assert agreement(pred, pred).mean == 1.0
    other = tmp_path / "other"
    _write(other, "a", _vol())
    with pytest.raises(InputError, match="b, c, d"):
        agreement(pred, other)

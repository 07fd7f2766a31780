"""Pseudo-labels thresholded to the labeled cases' mean volume (plan key ``pseudo_label_volume``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, read_array, write_array
from atso_nnunet.pseudolabels.fuse import fuse_folders
from atso_nnunet.pseudolabels.volume_prior import (BINS, add_to_histogram, labeled_mean_volume_ml,
                                                   match_pseudo_label_volume, threshold_for_volume, volume_above)

GEOMETRY = Geometry(size=(20, 16, 12), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0),
                    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
SHAPE = (12, 16, 20)   # z, y, x
VOXEL_ML = 2.0 / 1000


def _blob_probability(rng: np.random.Generator, radius: float) -> np.ndarray:
    """A soft ball: foreground probability falling from ~1 at the centre through 0.5 at ``radius``."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    centre = np.array(SHAPE) / 2 + rng.uniform(-1, 1, 3)
    d = np.sqrt(((z - centre[0]) * 2) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    return (1 / (1 + np.exp((d - radius) / 1.5))).astype(np.float32)


def _write_voters(root: Path, cases: dict, n_voters: int = 3, seed: int = 0) -> list:
    """cases: {case: radius}; voters differ by noise; returns the voter folders."""
    rng = np.random.default_rng(seed)
    folders = [root / f"v{i}" for i in range(n_voters)]
    for case, radius in cases.items():
        base = _blob_probability(rng, radius)
        for folder in folders:
            fg = np.clip(base + rng.normal(0, 0.02, SHAPE), 0, 1).astype(np.float32)
            write_array((fg > 0.5).astype(np.uint8), GEOMETRY, folder / f"{case}.nii.gz")
            np.savez_compressed(folder / f"{case}.npz", probabilities=np.stack([1 - fg, fg]))
    return folders


def _labels(root: Path, radii: dict) -> list:
    """Hard balls of the given radii as labeled cases' labels."""
    rng = np.random.default_rng(1)
    files = []
    for case, radius in radii.items():
        f = root / "labelsTr" / f"{case}.nii.gz"
        write_array((_blob_probability(rng, radius) > 0.5).astype(np.uint8), GEOMETRY, f)
        files.append(f)
    return files


def test_threshold_for_volume_hits_a_target_between_bins():
    hist = np.zeros(BINS)
    hist[100:900] = 1.0                     # 1 mL per bin from p = 0.1 to 0.9
    assert threshold_for_volume(hist, 600.0) == pytest.approx(0.3)
    assert volume_above(hist, 0.3) == pytest.approx(600.0)
    assert threshold_for_volume(hist, 400.0) == pytest.approx(0.5)
    assert threshold_for_volume(hist, 10_000.0) == pytest.approx(0.1)   # every bin holding volume, nearest 0.5


def test_histogram_weights_by_voxel_volume():
    hist = np.zeros(10)
    add_to_histogram(hist, np.array([0.05, 0.55, 0.95]), voxel_ml=2.0)
    add_to_histogram(hist, np.array([0.95]), voxel_ml=0.5)
    assert hist.tolist() == [2.0, 0, 0, 0, 0, 2.0, 0, 0, 0, 2.5]


def test_labeled_mean_volume_in_ml(tmp_path):
    files = _labels(tmp_path, {"s0": 3.0, "s1": 5.0})
    counts = [np.count_nonzero(read_array(f)[0]) for f in files]
    assert labeled_mean_volume_ml(files) == pytest.approx(np.mean(counts) * VOXEL_ML)
    with pytest.raises(InputError, match="s9.nii.gz: label of a labeled case not found"):
        labeled_mean_volume_ml([tmp_path / "labelsTr" / "s9.nii.gz"])


@pytest.mark.parametrize("teacher_radius", [3.0, 6.5])
def test_fused_pseudo_labels_get_the_labeled_mean_volume(tmp_path, teacher_radius):
    """An under- (or over-) segmenting teacher's set, fused at the matched threshold, has the labeled
    cases' mean volume within 5 %, where the argmax is far from it."""
    cases = {f"r{i}": teacher_radius + 0.3 * i for i in range(4)}
    folders = _write_voters(tmp_path, cases)
    images = {c: folders[0] / f"{c}.nii.gz" for c in cases}           # any file of the case's geometry
    labeled = _labels(tmp_path, {"s0": 4.5, "s1": 5.0, "s2": 5.5})
    target = labeled_mean_volume_ml(labeled)

    match = match_pseudo_label_volume({c: folders for c in cases}, images, labeled)
    assert match.reached and match.target_ml == pytest.approx(target * len(cases))
    assert (match.threshold < 0.5) == (match.argmax_ml < match.target_ml)

    fuse_folders(folders, tmp_path / "argmax", method="mean", num_classes=2, progress=False)
    fuse_folders(folders, tmp_path / "matched", method="mean", num_classes=2, progress=False,
                 foreground_threshold=match.threshold)
    argmax = np.mean([np.count_nonzero(read_array(tmp_path / "argmax" / f"{c}.nii.gz")[0]) for c in cases]) * VOXEL_ML
    matched = np.mean([np.count_nonzero(read_array(tmp_path / "matched" / f"{c}.nii.gz")[0]) for c in cases]) * VOXEL_ML
    assert abs(matched - target) <= 0.05 * target
    assert abs(argmax - target) > 0.2 * target
    assert match.argmax_ml / len(cases) == pytest.approx(argmax, rel=0.02)


def test_threshold_one_half_is_the_argmax(tmp_path):
    folders = _write_voters(tmp_path, {"r0": 4.0, "r1": 5.0})
    fuse_folders(folders, tmp_path / "argmax", method="mean", num_classes=2, progress=False)
    fuse_folders(folders, tmp_path / "half", method="mean", num_classes=2, progress=False, foreground_threshold=0.5)
    for c in ("r0", "r1"):
        np.testing.assert_array_equal(read_array(tmp_path / "argmax" / f"{c}.nii.gz")[0],
                                      read_array(tmp_path / "half" / f"{c}.nii.gz")[0])


def test_a_teacher_without_spread_is_not_reached_and_warns(tmp_path, caplog):
    folders = _write_voters(tmp_path, {"r0": 3.0})
    for f in folders:                                       # probabilities hardened to 0 / 1
        p = np.load(f / "r0.npz")["probabilities"]
        np.savez_compressed(f / "r0.npz", probabilities=np.round(p).astype(np.float32))
    labeled = _labels(tmp_path, {"s0": 6.0})
    match = match_pseudo_label_volume({"r0": folders}, {"r0": folders[0] / "r0.nii.gz"}, labeled)
    assert not match.reached
    assert "not reached" in caplog.text


def test_foreground_threshold_is_for_a_binary_mean_fusion(tmp_path):
    folders = _write_voters(tmp_path, {"r0": 4.0})
    with pytest.raises(ValueError, match="method='mean' of a binary task"):
        fuse_folders(folders, tmp_path / "out", method="vote", progress=False, foreground_threshold=0.3)

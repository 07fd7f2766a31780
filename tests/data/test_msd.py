"""MSD Task07 conversion through nnU-Net's own MSD converter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atso_nnunet.data import msd
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, read_array, write_array

SHAPE = (5, 12, 10)
GEOM = Geometry(tuple(reversed(SHAPE)), (0.9, 0.9, 2.5), (1.0, -2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
TRAIN, TEST = ["pancreas_001", "pancreas_004", "pancreas_010"], ["pancreas_002"]


def make_task(root: Path) -> dict:
    task = root / "Task07_Pancreas"
    truth = {}
    for i, case in enumerate(TRAIN + TEST):
        rng = np.random.default_rng(i)
        img = rng.integers(-1000, 1000, SHAPE).astype(np.int16)
        folder = "imagesTr" if case in TRAIN else "imagesTs"
        write_array(img, GEOM, task / folder / f"{case}.nii.gz")
        lab = None
        if case in TRAIN:
            lab = rng.integers(0, 3, SHAPE).astype(np.uint8)
            write_array(lab, GEOM, task / "labelsTr" / f"{case}.nii.gz")
        truth[case] = (img, lab)
    (task / "imagesTr" / "._pancreas_001.nii.gz").write_bytes(b"macOS resource fork")
    dj = {"name": "Pancreas", "description": "Pancreas and cancer segmentation", "tensorImageSize": "3D",
          "modality": {"0": "CT"}, "labels": {"0": "background", "1": "pancreas", "2": "cancer"},
          "numTraining": len(TRAIN), "numTest": len(TEST),
          "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in TRAIN],
          "test": [f"./imagesTs/{c}.nii.gz" for c in TEST]}
    (task / "dataset.json").write_text(json.dumps(dj, indent=4))
    return truth


def test_convert_msd_with_nnunet_converter(tmp_path):
    truth = make_task(tmp_path)
    raw = tmp_path / "nnUNet_raw"
    out = msd.convert_msd(tmp_path / "Task07_Pancreas", raw, 802, num_processes=1)

    assert out == raw / "Dataset802_MSDPancreas"
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset802_MSDPancreas"]  # staging removed
    for case, (img, lab) in truth.items():
        folder = "imagesTr" if lab is not None else "imagesTs"
        arr, geom = read_array(out / folder / f"{case}_0000.nii.gz")
        np.testing.assert_array_equal(arr, img)
        assert geom.matches(GEOM)
        if lab is not None:
            seg, _ = read_array(out / "labelsTr" / f"{case}.nii.gz")
            np.testing.assert_array_equal(seg, lab)
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "CT"} and dj["file_ending"] == ".nii.gz"
    assert dj["labels"] == {"background": 0, "pancreas": 1, "cancer": 2}
    assert dj["numTraining"] == 3 and "training" not in dj
    assert msd.MSD_EVAL_LABEL_MAP == {2: 1}

    # second call: already converted, nothing happens
    assert msd.convert_msd(tmp_path / "Task07_Pancreas", raw, 802) == out


def test_convert_msd_bad_input(tmp_path):
    make_task(tmp_path)
    task = tmp_path / "Task07_Pancreas"
    (task / "labelsTr" / "pancreas_004.nii.gz").unlink()
    with pytest.raises(InputError, match="pancreas_004"):
        msd.convert_msd(task, tmp_path / "raw", 802)
    (tmp_path / "raw" / "Dataset802_Other").mkdir(parents=True)
    with pytest.raises(InputError, match="already used"):
        msd.convert_msd(task, tmp_path / "raw", 802)
    with pytest.raises(InputError, match="not found"):
        msd.convert_msd(tmp_path / "nope", tmp_path / "raw2", 802)


def test_cli_msd(tmp_path):
    from atso_nnunet.cli.convert import main

    make_task(tmp_path)
    raw = tmp_path / "raw"
    argv = ["msd", "--task-folder", str(tmp_path / "Task07_Pancreas"), "--raw", str(raw), "--num-processes", "1"]
    assert main(argv) == 0
    assert (raw / "Dataset802_MSDPancreas" / "imagesTr" / "pancreas_004_0000.nii.gz").is_file()
    assert main(["msd", "--task-folder", str(tmp_path / "missing"), "--raw", str(tmp_path / "raw2")]) == 2

"""atso_nnunet_segment: every input is checked before any view runs; a bad one writes nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from atso_nnunet.cli import segment
from atso_nnunet.cli.run import main as run_main
from atso_nnunet.io import write_array

from helpers import TINY_SHAPE, TINY_SPACING, tiny_case, write_tiny_dataset
from helpers import tiny_plan


@pytest.fixture
def fake_run(tmp_path):
    """A run folder whose final models 'exist' (plan.json, dataset.json, empty checkpoints).

    The input checks run before any model is loaded, so no training is needed.
    """
    run = tmp_path / "run"
    write_tiny_dataset(tmp_path / "nn" / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=9, n_reference=0,
                       n_test=0)
    plan = tiny_plan(tmp_path, views=["axial", "coronal"])
    assert run_main(["--plan", str(plan), "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(run),
                     "--dry-run"]) == 0
    for view in ("axial", "coronal"):
        folder = (run / "models" / "final" / "nnUNet_results" / "Dataset991_TinyExp"
                  / f"ATSOSemiTrainer__ATSOPlans_{view}__2d")
        (folder / "fold_all").mkdir(parents=True)
        (folder / "fold_all" / "checkpoint_final.pth").write_bytes(b"")
        (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                                                         "labels": {"background": 0, "pancreas": 1}}))
    return run


def _scans(tmp_path, n=2):
    from atso_nnunet.io import Geometry

    folder = tmp_path / "scans"
    folder.mkdir()
    geom = Geometry(tuple(reversed(TINY_SHAPE)), TINY_SPACING, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    for i in range(n):
        write_array(tiny_case(i)[0], geom, folder / f"scan{i}_0000.nii.gz")
    return folder


def _segment(run, scans, out, caplog):
    caplog.clear()
    rc = segment.main(["--run-dir", str(run), "-i", str(scans), "-o", str(out)])
    return rc, caplog.text


def _nothing_written(out):
    return not out.exists() or not any(out.rglob("*"))


def _called(monkeypatch):
    calls = []
    import atso_nnunet.nnunet.predict as prediction

    monkeypatch.setattr(prediction, "predict_tri_view", lambda *a, **k: calls.append((a, k)) or [])
    return calls


def test_good_inputs_reach_the_prediction(fake_run, tmp_path, monkeypatch, caplog):
    calls = _called(monkeypatch)
    scans = _scans(tmp_path)
    (scans / "notes.txt").write_text("ignored: not an image ending")
    rc, _ = _segment(fake_run, scans, tmp_path / "out", caplog)
    assert rc == 0
    (folders, inputs, *_), _ = calls[0]
    assert sorted(folders) == ["axial", "coronal"]
    assert inputs == {"scan0": [scans / "scan0_0000.nii.gz"], "scan1": [scans / "scan1_0000.nii.gz"]}


def _bad(name, write):
    return pytest.param(write, id=name)


def _write_2d(path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((40, 36), np.int16)), str(path))


def _write_4d(path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 5, 6), np.int16), isVector=False), str(path))


def _write_junk(path):
    path.write_bytes(b"this is a PDF, not a scan")


def _write_truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])


@pytest.mark.parametrize("write, words", [
    (_write_2d, "2D image"), (_write_4d, "4D image"), (_write_junk, "cannot read"), (_write_truncated, "truncated"),
], ids=["2d", "4d", "not-an-image", "truncated"])
def test_bad_input_file_is_named_and_nothing_is_written(fake_run, tmp_path, monkeypatch, caplog, write, words):
    calls = _called(monkeypatch)
    scans = _scans(tmp_path)
    bad = scans / "scan1_0000.nii.gz"
    write(bad)
    out = tmp_path / "out"
    rc, log = _segment(fake_run, scans, out, caplog)
    assert rc == 2 and not calls
    assert str(bad) in log and words in log and "nothing was written" in log
    assert _nothing_written(out)


def test_channel_count_differs_from_the_model(fake_run, tmp_path, monkeypatch, caplog):
    calls = _called(monkeypatch)
    scans = _scans(tmp_path)
    extra = scans / "scan0_0001.nii.gz"
    extra.write_bytes((scans / "scan0_0000.nii.gz").read_bytes())
    out = tmp_path / "out"
    rc, log = _segment(fake_run, scans, out, caplog)
    assert rc == 2 and not calls and str(extra) in log and "1 channel(s)" in log and "'CT'" in log
    assert _nothing_written(out)
    # a two-channel model given one channel
    extra.unlink()
    for ds in fake_run.rglob("dataset.json"):
        if "ATSOPlans" in str(ds.parent):
            ds.write_text(json.dumps({"channel_names": {"0": "CT", "1": "PET"}, "file_ending": ".nii.gz"}))
    rc, log = _segment(fake_run, scans, out, caplog)
    assert rc == 2 and "scan0_0001.nii.gz" in log and "missing image file" in log
    assert _nothing_written(out)


def test_badly_named_image_and_empty_folder(fake_run, tmp_path, monkeypatch, caplog):
    _called(monkeypatch)
    scans = _scans(tmp_path, n=1)
    (scans / "scan9.nii.gz").write_bytes((scans / "scan0_0000.nii.gz").read_bytes())
    rc, log = _segment(fake_run, scans, tmp_path / "out", caplog)
    assert rc == 2 and "scan9.nii.gz" in log and "_0000" in log
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, log = _segment(fake_run, empty, tmp_path / "out", caplog)
    assert rc == 2 and "no <case>_0000.nii.gz images" in log
    rc, log = _segment(fake_run, tmp_path / "nope", tmp_path / "out", caplog)
    assert rc == 2 and "input folder not found" in log
    assert _nothing_written(tmp_path / "out")

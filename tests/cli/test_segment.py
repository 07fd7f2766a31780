"""atso_nnunet_segment: every input is checked before any view runs; a bad one writes nothing."""
from __future__ import annotations

import json
import zipfile

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
        write_checkpoint(folder / "fold_all" / "checkpoint_final.pth")
        (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                                                         "labels": {"background": 0, "pancreas": 1}}))
    return run


def write_checkpoint(path):
    """A file in torch.save's zip format (what the integrity check reads; no model is loaded)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("checkpoint_final/data.pkl", b"not a real pickle: never loaded by these tests")
        archive.writestr("checkpoint_final/version", b"3")


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


# --- issue 29: the run folder, the device and the output folder are checked before any model loads ---


def test_corrupt_plan_json_is_named_with_the_fix(fake_run, tmp_path, monkeypatch, caplog):
    calls = _called(monkeypatch)
    scans = _scans(tmp_path, n=1)
    plan_file = fake_run / "plan.json"
    text = plan_file.read_text()
    plan_file.write_text(text[: len(text) // 2])
    rc, log = _segment(fake_run, scans, tmp_path / "out", caplog)
    assert rc == 2 and not calls and str(plan_file) in log and "not valid JSON" in log and "restore" in log
    assert "Traceback" not in log
    data = json.loads(text)
    data["generations"] = 10 ** 12
    plan_file.write_text(json.dumps(data))
    rc, log = _segment(fake_run, scans, tmp_path / "out", caplog)
    assert rc == 2 and not calls and "generations: 1000000000000 is above the limit" in log
    assert "plan is damaged or was edited" in log
    assert _nothing_written(tmp_path / "out")


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped"])
def test_damaged_checkpoint_is_named_before_any_model_loads(fake_run, tmp_path, monkeypatch, caplog, damage):
    calls = _called(monkeypatch)
    scans = _scans(tmp_path, n=1)
    ckpt = next(fake_run.rglob("checkpoint_final.pth"))
    data = ckpt.read_bytes()
    if damage == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    else:   # one byte of the stored data changed: the archive opens, its checksum fails
        i = data.index(b"not a real pickle")
        ckpt.write_bytes(data[:i] + b"N" + data[i + 1:])
    rc, log = _segment(fake_run, scans, tmp_path / "out", caplog)
    assert rc == 2 and not calls and str(ckpt) in log and "damaged checkpoint" in log and "copy the model" in log
    assert _nothing_written(tmp_path / "out")


def test_unknown_device_is_refused_at_parse_time(fake_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        segment.main(["--run-dir", str(fake_run), "-i", str(tmp_path), "-o", str(tmp_path / "out"),
                      "--device", "tpu"])
    assert e.value.code == 2 and "unknown device 'tpu'" in capsys.readouterr().err


def test_cuda_without_a_gpu_is_refused_before_any_model_loads(fake_run, tmp_path, monkeypatch, caplog):
    import torch

    calls = _called(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    scans = _scans(tmp_path, n=1)
    caplog.clear()
    rc = segment.main(["--run-dir", str(fake_run), "-i", str(scans), "-o", str(tmp_path / "out"), "--device", "cuda"])
    assert rc == 2 and not calls and "--device cuda: torch finds no CUDA GPU" in caplog.text
    assert _nothing_written(tmp_path / "out")


def test_output_that_is_a_file_is_refused(fake_run, tmp_path, capsys):
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"x")
    with pytest.raises(SystemExit) as e:
        segment.main(["--run-dir", str(fake_run), "-i", str(tmp_path), "-o", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument -o/--output" in err and f"{out} is a file, not a folder" in err
    assert out.read_bytes() == b"x"

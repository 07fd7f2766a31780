"""Raw dataset checks: every malformed input gives one InputError naming the case and the file."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import SimpleITK as sitk

from atso_nnunet.cli import check as check_cli
from atso_nnunet.data import layout
from atso_nnunet.data.checks import check_raw_dataset
from atso_nnunet.data.labels import check_label_file, raise_if_problems
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, read_array, write_array

# tiny_dataset (conftest): tiny_000..002 labeled, 003..006 reference, 007..008 test, all with ground truth


def _problems(dataset) -> str:
    with pytest.raises(InputError) as e:
        check_raw_dataset(dataset)
    return str(e.value)


def test_good_dataset_passes_with_a_summary(tiny_dataset):
    summary = check_raw_dataset(tiny_dataset)
    assert summary.cases == {"labeled": 3, "reference": 4, "test": 2}
    assert summary.with_labels == {"labeled": 3, "reference": 4, "test": 2}
    assert summary.labels == {"background": 0, "pancreas": 1}
    assert "labeled: 3 case(s)" in summary.describe()
    assert check_raw_dataset(tiny_dataset, roles=("labeled",)).cases == {"labeled": 3}


def test_missing_image(tiny_dataset):
    layout.image_path(tiny_dataset, layout.IMAGES_TR, "tiny_001").unlink()
    msg = _problems(tiny_dataset)
    assert "tiny_001" in msg and str(layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_001")) in msg
    assert "numTraining" in msg          # 3 declared, 2 present


def test_missing_label(tiny_dataset):
    layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_000").unlink()
    msg = _problems(tiny_dataset)
    assert "labeled case tiny_000" in msg
    assert str(layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_000")) in msg
    assert "imagesRef" in msg            # what to do with unlabeled cases


def test_label_without_image_in_reference(tiny_dataset):
    layout.image_path(tiny_dataset, layout.IMAGES_REF, "tiny_004").unlink()
    msg = _problems(tiny_dataset)
    assert "reference case tiny_004" in msg and "has no image" in msg
    assert "listed in dataset.json 'atso'" in msg


def test_geometry_mismatch(tiny_dataset):
    path = layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_002")
    lab, geo = read_array(path)
    write_array(lab, Geometry(geo.size, (2.0, 1.5, 3.0), geo.origin, geo.direction), path)
    msg = _problems(tiny_dataset)
    assert "labeled case tiny_002" in msg and str(path) in msg and "spacing" in msg


def test_bad_label_values(tiny_dataset):
    path = layout.label_path(tiny_dataset, layout.LABELS_TS, "tiny_008")
    lab, geo = read_array(path)
    lab[0, 0, :3] = [5, 7, 255]
    write_array(lab, geo, path)
    msg = _problems(tiny_dataset)
    assert "test case tiny_008" in msg and str(path) in msg and "5, 7, 255" in msg


def test_4d_file(tiny_dataset):
    path = layout.image_path(tiny_dataset, layout.IMAGES_REF, "tiny_003")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 5, 6), np.int16), isVector=False), str(path))
    msg = _problems(tiny_dataset)
    assert "reference case tiny_003" in msg and str(path) in msg and "4D" in msg


def test_2d_file(tiny_dataset):
    path = layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_001")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((40, 36), np.uint8)), str(path))
    msg = _problems(tiny_dataset)
    assert "labeled case tiny_001" in msg and str(path) in msg and "2D" in msg


def test_unreadable_file(tiny_dataset):
    path = layout.image_path(tiny_dataset, layout.IMAGES_TS, "tiny_007")
    path.write_bytes(b"not an image at all")
    msg = _problems(tiny_dataset)
    assert "test case tiny_007" in msg and str(path) in msg and "cannot read" in msg


def test_dataset_json_problems(tiny_dataset):
    dj_path = tiny_dataset / "dataset.json"
    dj_path.unlink()
    assert "dataset.json not found" in _problems(tiny_dataset)
    dj_path.write_text("{not json")
    assert "cannot read dataset.json" in _problems(tiny_dataset)
    dj_path.write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"organ": 1}, "numTraining": 7}))
    msg = _problems(tiny_dataset)
    assert "file_ending" in msg and "background" in msg and "numTraining is 7" in msg


def test_every_problem_is_listed_at_once(tiny_dataset):
    layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_000").unlink()
    layout.image_path(tiny_dataset, layout.IMAGES_TS, "tiny_008").write_bytes(b"junk")
    msg = _problems(tiny_dataset)
    assert "tiny_000" in msg and "tiny_008" in msg and "problem(s) found" in msg


def test_check_label_file(tiny_dataset):
    image, geo = read_array(layout.image_path(tiny_dataset, layout.IMAGES_TR, "tiny_000"))
    path = layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_000")
    assert check_label_file(path, [0, 1], geo) == []
    assert "label values 1" in check_label_file(path, [0], geo)[0]
    shifted = Geometry(geo.size, geo.spacing, (5.0, 0.0, 0.0), geo.direction)
    assert "origin" in check_label_file(path, [0, 1], shifted)[0]
    assert "not found" in check_label_file(tiny_dataset / "nope.nii.gz", [0, 1])[0]
    with pytest.raises(InputError, match="2 problem"):
        raise_if_problems(["a", "b"], "somewhere")
    raise_if_problems([], "somewhere")


def test_check_cli(tiny_dataset, capsys):
    assert check_cli.main([str(tiny_dataset)]) == 0
    assert "labeled: 3 case(s)" in capsys.readouterr().out
    layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_000").unlink()
    assert check_cli.main([str(tiny_dataset)]) == 2
    assert check_cli.main([str(tiny_dataset / "missing")]) == 2


def test_reference_and_test_ground_truth_may_use_other_labels(tmp_path):
    """Ground truth of R/E is only scored: values mapped by eval_label_map (MSD tumour = 2) may be allowed."""
    import numpy as np

    from atso_nnunet.io import read_array, write_array
    from helpers import write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "raw")
    for folder in ("labelsRef", "labelsTs"):
        f = next((ds / folder).glob("*.nii.gz"))
        arr, geo = read_array(f)
        arr[arr == 1] = 2
        write_array(arr.astype(np.uint8), geo, f)
    with pytest.raises(InputError, match="label values 2"):
        check_raw_dataset(ds)
    check_raw_dataset(ds, ground_truth_values=[2])
    f = next((ds / "labelsTr").glob("*.nii.gz"))
    arr, geo = read_array(f)
    arr[arr == 1] = 2
    write_array(arr.astype(np.uint8), geo, f)
    with pytest.raises(InputError, match="label values 2"):
        check_raw_dataset(ds, ground_truth_values=[2])


# --- voxel checks: what headers cannot show ------------------------------------------------


def _truncate(path, keep: float = 1 / 3) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_truncated_nifti_is_an_error_naming_the_file(tiny_dataset):
    """SimpleITK reads a truncated .nii.gz without an error (zeros); the voxel check does not."""
    path = layout.image_path(tiny_dataset, layout.IMAGES_REF, "tiny_004")
    _truncate(path)
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))   # the trap: no error, zeros
    assert (arr == 0).mean() > 0.5
    msg = _problems(tiny_dataset)
    assert "reference case tiny_004" in msg and str(path) in msg and "truncated" in msg
    assert "1 problem(s) found" in msg and re.search(r"ends after \d+% of the voxel data", msg)
    check_raw_dataset(tiny_dataset, check_voxels=False)   # headers only: not seen (documented)


def test_truncated_label_is_an_error(tiny_dataset):
    path = layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_001")
    _truncate(path, 0.6)
    msg = _problems(tiny_dataset)
    assert "labeled case tiny_001" in msg and str(path) in msg and "truncated" in msg


def test_corrupt_gzip_stream_is_an_error(tiny_dataset):
    path = layout.image_path(tiny_dataset, layout.IMAGES_TS, "tiny_007")
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF                          # inside the CRC / size trailer
    path.write_bytes(bytes(data))
    msg = _problems(tiny_dataset)
    assert "test case tiny_007" in msg and str(path) in msg and "corrupt" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_voxels_are_an_error(tiny_dataset, bad):
    path = layout.image_path(tiny_dataset, layout.IMAGES_TR, "tiny_002")
    img, geo = read_array(path)
    img = img.astype(np.float32)
    img[3, 4, 5:8] = bad
    write_array(img, geo, path)
    msg = _problems(tiny_dataset)
    assert "labeled case tiny_002" in msg and str(path) in msg and "3 voxel(s) are NaN or infinite" in msg


def test_finite_float_images_pass(tiny_dataset):
    path = layout.image_path(tiny_dataset, layout.IMAGES_TR, "tiny_002")
    img, geo = read_array(path)
    write_array(img.astype(np.float64) + 0.5, geo, path)
    check_raw_dataset(tiny_dataset)


def test_nan_in_other_formats(tiny_dataset):
    """Non-NIfTI files (here .mha) are read whole with SimpleITK for the NaN check."""
    from atso_nnunet.data.integrity import file_problem, read_header, voxel_problem

    path = tiny_dataset / "x.mha"
    arr = np.zeros((3, 4, 5), np.float32)
    arr[0, 0, 0] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    header, _ = read_header(path)
    assert header.nifti is None and "1 voxel(s) are NaN" in voxel_problem(path, header)
    assert file_problem(path) == voxel_problem(path, header)


def test_labeled_case_without_foreground_is_a_named_warning(tiny_dataset, caplog, capsys):
    path = layout.label_path(tiny_dataset, layout.LABELS_TR, "tiny_000")
    lab, geo = read_array(path)
    write_array(np.zeros_like(lab), geo, path)
    # an empty reference/test ground truth is not a warning (only scored)
    ref = layout.label_path(tiny_dataset, layout.LABELS_REF, "tiny_003")
    write_array(np.zeros_like(lab), geo, ref)
    summary = check_raw_dataset(tiny_dataset)
    assert len(summary.warnings) == 1
    assert "labeled case tiny_000" in summary.warnings[0] and str(path) in summary.warnings[0]
    assert "no foreground" in caplog.text and "tiny_000" in caplog.text
    assert check_cli.main([str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "1 warning(s)" in out and "WARNING: labeled case tiny_000" in out


def test_check_cli_headers_only(tiny_dataset):
    _truncate(layout.image_path(tiny_dataset, layout.IMAGES_TR, "tiny_000"))
    assert check_cli.main([str(tiny_dataset)]) == 2
    assert check_cli.main([str(tiny_dataset), "--headers-only"]) == 0


def test_file_ending_that_matches_no_file_is_named_not_numtraining(tiny_dataset):
    """Issue 29: a dataset.json whose file_ending does not match the files made every case invisible,
    and the message spoke of numTraining."""
    dj_path = tiny_dataset / "dataset.json"
    dj = json.loads(dj_path.read_text())
    dj["file_ending"] = ".nii"
    dj_path.write_text(json.dumps(dj))
    msg = _problems(tiny_dataset)
    assert "dataset.json file_ending is '.nii'" in msg and "ending in '.nii.gz'" in msg
    assert '"file_ending": ".nii.gz"' in msg and str(dj_path) in msg
    assert "numTraining" not in msg


def test_ending_mismatch_is_silent_when_the_files_match(tiny_dataset, tmp_path):
    assert layout.ending_mismatch(tiny_dataset / "imagesTr", ".nii.gz") is None
    assert layout.ending_mismatch(tmp_path / "absent", ".nii") is None
    (tmp_path / "notes.txt").write_text("no image here")
    assert layout.ending_mismatch(tmp_path, ".nii") is None

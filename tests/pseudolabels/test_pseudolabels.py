"""Ingestion of pseudo-label folders (atso_nnunet.pseudolabels.ingest).

The exactness test uses a dataset that exercises every step nnU-Net applies: images with a zero
border (crop), a zero hole inside the body (filled non-zero mask) and a zero notch at the body's
edge (label -1 outside the mask), different spacings per case (resampling) and two foreground
labels (class locations per class).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import blosc2
import numpy as np
import pytest

from atso_nnunet.pseudolabels import ingest as pseudolabels
from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, write_array
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.nnunet.planning import NetworkOverride, plan_and_preprocess
from atso_nnunet.views import VIEWS, plans_identifier

HARD_ID = 991
HARD_NAME = "Dataset991_Hard"
# (z, y, x) shape, (x, y, z) spacing per case
HARD_CASES = {
    "hard_000": ((14, 40, 36), (1.5, 1.5, 3.0)),
    "hard_001": ((12, 44, 34), (1.2, 1.4, 2.5)),
    "hard_002": ((16, 38, 40), (1.7, 1.6, 3.5)),
    "hard_003": ((13, 42, 38), (1.4, 1.3, 2.8)),   # reference
    "hard_004": ((12, 40, 36), (1.5, 1.5, 3.0)),   # test
}
HARD_LABELED = ["hard_000", "hard_001", "hard_002"]
SMALL_NET = NetworkOverride(batch_size=2, max_features=8, n_stages=2)


def hard_case(seed: int, shape):
    """Image with zero border, zero hole and zero edge notch; labels 1 (organ) and 2 (lesion)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    cz, cy, cx = [s / 2 + rng.uniform(-1, 1) for s in shape]
    body = ((y - cy) / (shape[1] / 2.6)) ** 2 + ((x - cx) / (shape[2] / 2.6)) ** 2 <= 1
    body &= (z >= 2) & (z < shape[0] - 1)                     # zero slices: crop along z too
    organ = ((z - cz) / (shape[0] / 3)) ** 2 + ((y - cy) / (shape[1] / 5)) ** 2 + ((x - cx) / (shape[2] / 5)) ** 2 <= 1
    lesion = organ & (((z - cz) / 2.5) ** 2 + ((y - cy) / 3) ** 2 + ((x - cx - 1) / 3) ** 2 <= 1)
    hole = (np.abs(y - cy + shape[1] / 5) < 2) & (np.abs(x - cx) < 2) & body & ~organ   # filled by nnU-Net
    notch = body & (x > cx + shape[2] / 2.6 - 4) & (np.abs(y - cy) < 3)                 # open to the outside
    img = np.where(body, rng.normal(100, 20, shape), 0).astype(np.float32)
    img[organ] += 80
    img[hole | notch] = 0
    lab = organ.astype(np.uint8) + lesion.astype(np.uint8)
    return img, lab


def write_hard_dataset(raw_root: Path) -> Path:
    ds = Path(raw_root) / HARD_NAME
    roles = {"hard_000": "labeled", "hard_001": "labeled", "hard_002": "labeled", "hard_003": "reference",
             "hard_004": "test"}
    for k, (case, (shape, spacing)) in enumerate(HARD_CASES.items()):
        img, lab = hard_case(k, shape)
        geom = Geometry(tuple(reversed(shape)), spacing, (1.0, -2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
        img_dir = layout.ROLE_DIRS[roles[case]]
        write_array(img, geom, layout.image_path(ds, img_dir, case))
        write_array(lab, geom, layout.label_path(ds, layout.IMAGE_TO_LABEL_DIR[img_dir], case))
    dj = {"channel_names": {"0": "MR"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
          "numTraining": 3, "file_ending": ".nii.gz",
          "atso": {"reference": ["hard_003"], "test": ["hard_004"]}}
    (ds / "dataset.json").write_text(json.dumps(dj, indent=2))
    return ds


@pytest.fixture(scope="module")
def hard(tmp_path_factory):
    """Dataset991_Hard planned and preprocessed (2d) for the three views."""
    paths = NnUNetPaths.under(tmp_path_factory.mktemp("hard"))
    paths.makedirs()
    write_hard_dataset(paths.raw)
    plan_and_preprocess(paths, HARD_ID, VIEWS, "2d", network=SMALL_NET, num_processes=1, verify=False)
    return paths


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Dataset990_Tiny (conftest's layout) planned and preprocessed (2d, axial only)."""
    from helpers import write_tiny_dataset

    paths = NnUNetPaths.under(tmp_path_factory.mktemp("tiny"))
    paths.makedirs()
    write_tiny_dataset(paths.raw)
    plan_and_preprocess(paths, 990, ["axial"], "2d", network=SMALL_NET, num_processes=1, verify=False)
    return paths


def _copy_labels(src_dir: Path, cases, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for c in cases:
        shutil.copy2(src_dir / f"{c}.nii.gz", dst / f"{c}.nii.gz")
    return dst


def _load(folder: Path, case: str):
    seg = blosc2.open(str(folder / f"{case}_seg.b2nd"), mode="r")[:]
    with open(folder / f"{case}.pkl", "rb") as f:
        return seg, pickle.load(f)


# --------------------------------------------------------------------------------------------
# Exactness
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gt_ingested(hard, tmp_path_factory):
    """The labeled cases' ground truth ingested as pseudo-labels into the three views in one pass."""
    raw = hard.raw / HARD_NAME
    folder = _copy_labels(raw / layout.LABELS_TR, HARD_LABELED, tmp_path_factory.mktemp("gt_as_pseudo"))
    return pseudolabels._ingest(hard, HARD_ID, [plans_identifier(v) for v in VIEWS], "2d", folder, None, 1,
                                allow_labeled=True, image_folder=layout.IMAGES_TR, properties_from_nnunet=True)


@pytest.mark.parametrize("view", VIEWS)
def test_ground_truth_ingests_to_nnunets_own_seg(hard, gt_ingested, view):
    """A pseudo-label equal to a labeled case's ground truth gives nnU-Net's _seg.b2nd exactly."""
    labeled = HARD_LABELED
    nnunet_dir = hard.preprocessed / HARD_NAME / f"{plans_identifier(view)}_2d"
    result = gt_ingested[plans_identifier(view)]
    assert result.cases == tuple(labeled)
    saw_minus_one = saw_resampling = False
    for case in labeled:
        expected, props = _load(nnunet_dir, case)
        got, got_props = _load(result.cache_dir, case)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected, err_msg=f"{view} {case}")
        assert set(got_props["class_locations"]) == set(props["class_locations"]) == {1, 2}
        for k, locs in props["class_locations"].items():
            np.testing.assert_array_equal(got_props["class_locations"][k], locs)
        saw_minus_one |= bool((expected == -1).any())
        saw_resampling |= tuple(props["shape_after_cropping_and_before_resampling"]) != tuple(expected.shape[1:])
    # the dataset really exercises the crop mask and the resampling
    assert saw_minus_one and saw_resampling
    # nothing written into nnU-Net's own folder
    assert sorted(p.name for p in nnunet_dir.iterdir()) == sorted(
        f"{c}{s}" for c in labeled for s in (".b2nd", "_seg.b2nd", ".pkl"))


def test_ground_truth_ingests_exactly_in_3d_fullres(tmp_path):
    """Same exactness for nnU-Net's 3d_fullres configuration (3D target spacing, separate-z resampling)."""
    paths = NnUNetPaths.under(tmp_path / "nn")
    paths.makedirs()
    write_hard_dataset(paths.raw)
    plan_and_preprocess(paths, HARD_ID, ["sagittal"], "3d_fullres", num_processes=1, verify=False,
                        unlabeled_folders=())
    folder = _copy_labels(paths.raw / HARD_NAME / layout.LABELS_TR, HARD_LABELED, tmp_path / "gt")
    result = pseudolabels._ingest(paths, HARD_ID, ["ATSOPlans_sagittal"], "3d_fullres", folder, None, 1,
                                  allow_labeled=True, image_folder=layout.IMAGES_TR,
                                  properties_from_nnunet=True)["ATSOPlans_sagittal"]
    nnunet_dir = paths.preprocessed / HARD_NAME / "ATSOPlans_sagittal_3d_fullres"
    for case in HARD_LABELED:
        expected, props = _load(nnunet_dir, case)
        got, got_props = _load(result.cache_dir, case)
        np.testing.assert_array_equal(got, expected, err_msg=case)
        for k, locs in props["class_locations"].items():
            np.testing.assert_array_equal(got_props["class_locations"][k], locs)


def test_reference_case_matches_run_case_with_labels(hard, tmp_path):
    """A reference case ingests as nnU-Net's run_case would have preprocessed it with its label."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    raw = hard.raw / HARD_NAME
    folder = _copy_labels(raw / layout.LABELS_REF, ["hard_003"], tmp_path / "pl")
    all_views = pseudolabels.ingest_pseudolabels_views(hard, HARD_ID, [plans_identifier(v) for v in VIEWS], "2d",
                                                       folder)
    assert not any(r.reused for r in all_views.values())
    result = pseudolabels.ingest_pseudolabels(hard, HARD_ID, "ATSOPlans_coronal", "2d", folder)
    assert result.reused and result.cache_dir == all_views["ATSOPlans_coronal"].cache_dir  # same cache
    pm = PlansManager(str(hard.preprocessed / HARD_NAME / "ATSOPlans_coronal.json"))
    dj = json.loads((hard.preprocessed / HARD_NAME / "dataset.json").read_text())
    _, seg, props = DefaultPreprocessor(verbose=False).run_case(
        [str(layout.image_path(raw, layout.IMAGES_REF, "hard_003"))], str(raw / layout.LABELS_REF / "hard_003.nii.gz"),
        pm, pm.get_configuration("2d"), dj)
    got, got_props = _load(result.cache_dir, "hard_003")
    np.testing.assert_array_equal(got, seg.astype(np.int16))
    for k, locs in props["class_locations"].items():
        np.testing.assert_array_equal(got_props["class_locations"][k], locs)
    assert got_props["bbox_used_for_cropping"] == props["bbox_used_for_cropping"]
    image = blosc2.open(str(result.image_dir / "hard_003.b2nd"), mode="r")
    assert image.shape == got.shape


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------
def test_cache_reused_and_keyed_by_content(tiny, tmp_path):
    raw = tiny.raw / "Dataset990_Tiny"
    refs = ["tiny_003", "tiny_004", "tiny_005", "tiny_006"]
    folder = _copy_labels(raw / layout.LABELS_REF, refs, tmp_path / "gen1")
    first = pseudolabels.ingest_pseudolabels(tiny, 990, "ATSOPlans_axial", "2d", folder)
    assert not first.reused and first.cases == tuple(refs) and first.empty_cases == ()
    assert first.cache_dir.parent == tiny.preprocessed / "Dataset990_Tiny" / "atso_pseudolabels" / "ATSOPlans_axial_2d"
    assert pseudolabels.read_marker(first.cache_dir)["cases"] == refs
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.cache_dir.iterdir()}

    second = pseudolabels.ingest_pseudolabels(tiny, "Dataset990_Tiny", "ATSOPlans_axial", "2d", folder)
    assert second.reused and second.cache_dir == first.cache_dir and second.cases == first.cases
    assert {p.name: p.stat().st_mtime_ns for p in second.cache_dir.iterdir()} == mtimes

    subset = pseudolabels.ingest_pseudolabels(tiny, 990, "ATSOPlans_axial", "2d", folder, cases=refs[:2])
    assert subset.cache_dir != first.cache_dir and subset.cases == tuple(refs[:2])

    # a new generation (a changed file) gets a new key; an interrupted one resumes per case
    lab = (raw / layout.LABELS_REF / "tiny_003.nii.gz").read_bytes()
    (folder / "tiny_003.nii.gz").write_bytes(lab)
    os.utime(folder / "tiny_003.nii.gz", ns=(1, 1))
    third = pseudolabels.ingest_pseudolabels(tiny, 990, "ATSOPlans_axial", "2d", folder)
    assert third.cache_dir != first.cache_dir and not third.reused
    (third.cache_dir / pseudolabels.MARKER).unlink()
    (third.cache_dir / "tiny_004.pkl").unlink()
    again = pseudolabels.ingest_pseudolabels(tiny, 990, "ATSOPlans_axial", "2d", folder)
    assert again.cache_dir == third.cache_dir and not again.reused and (again.cache_dir / "tiny_004.pkl").is_file()
    # images are never copied and nnU-Net's folders untouched
    assert not list(third.cache_dir.glob("*[0-9].b2nd"))
    assert all(p.name.startswith("tiny_00") and p.name[8:] in (".b2nd", "_seg.b2nd", ".pkl")
               for p in (tiny.preprocessed / "Dataset990_Tiny" / "ATSOPlans_axial_2d").iterdir())


def test_empty_pseudolabel_counted(tiny, tmp_path):
    raw = tiny.raw / "Dataset990_Tiny"
    folder = _copy_labels(raw / layout.LABELS_REF, ["tiny_003", "tiny_004"], tmp_path / "pl")
    import SimpleITK as sitk

    lab = sitk.ReadImage(str(folder / "tiny_004.nii.gz"))
    empty = sitk.Image(lab.GetSize(), lab.GetPixelID())
    empty.CopyInformation(lab)
    sitk.WriteImage(empty, str(folder / "tiny_004.nii.gz"))
    result = pseudolabels.ingest_pseudolabels(tiny, 990, "ATSOPlans_axial", "2d", folder)
    assert result.cases == ("tiny_003", "tiny_004") and result.empty_cases == ("tiny_004",)
    seg, props = _load(result.cache_dir, "tiny_004")
    assert not (seg > 0).any() and len(props["class_locations"][1]) == 0


def test_missing_unlabeled_images_are_preprocessed_once(tiny, tmp_path):
    """Images not yet preprocessed without labels are preprocessed first (once), then reused."""
    raw = tiny.raw / "Dataset990_Tiny"
    image_dir = tiny.preprocessed / "Dataset990_Tiny" / "atso_unlabeled" / "ATSOPlans_axial_2d"
    for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
        (image_dir / f"tiny_005{suffix}").unlink()
    folder = _copy_labels(raw / layout.LABELS_REF, ["tiny_005"], tmp_path / "pl")
    first = pseudolabels.ingest_pseudolabels(tiny, 990, "ATSOPlans_axial", "2d", folder)
    assert (image_dir / "tiny_005.pkl").is_file() and not first.reused
    assert pseudolabels.ingest_pseudolabels(tiny, 990, "ATSOPlans_axial", "2d", folder).reused


# --------------------------------------------------------------------------------------------
# Guards
# --------------------------------------------------------------------------------------------
def _ingest_error(paths, folder, **kw) -> str:
    with pytest.raises(InputError) as e:
        pseudolabels.ingest_pseudolabels(paths, 990, "ATSOPlans_axial", "2d", folder, **kw)
    return str(e.value)


def test_guard_geometry_mismatch(tiny, tmp_path):
    import SimpleITK as sitk

    raw = tiny.raw / "Dataset990_Tiny"
    folder = _copy_labels(raw / layout.LABELS_REF, ["tiny_003", "tiny_004"], tmp_path / "pl")
    lab = sitk.ReadImage(str(folder / "tiny_003.nii.gz"))
    lab.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(lab, str(folder / "tiny_003.nii.gz"))
    lab = sitk.ReadImage(str(folder / "tiny_004.nii.gz"))
    sitk.WriteImage(lab[:, :, 1:], str(folder / "tiny_004.nii.gz"))  # one slice short, origin moved
    cache = tiny.preprocessed / "Dataset990_Tiny" / "atso_pseudolabels" / "ATSOPlans_axial_2d"
    before = sorted(cache.iterdir()) if cache.is_dir() else []
    msg = _ingest_error(tiny, folder)
    assert "tiny_003" in msg and "spacing" in msg and "2 problem(s)" in msg
    assert "tiny_004" in msg and "size" in msg
    assert (sorted(cache.iterdir()) if cache.is_dir() else []) == before  # refused before any work


def test_guard_bad_label_value(tiny, tmp_path):
    import SimpleITK as sitk

    raw = tiny.raw / "Dataset990_Tiny"
    folder = _copy_labels(raw / layout.LABELS_REF, ["tiny_003"], tmp_path / "pl")
    lab = sitk.ReadImage(str(folder / "tiny_003.nii.gz"))
    arr = sitk.GetArrayFromImage(lab)
    arr[arr == 1] = 7
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(lab)
    sitk.WriteImage(out, str(folder / "tiny_003.nii.gz"))
    msg = _ingest_error(tiny, folder)
    assert "case tiny_003" in msg and "values 7 are not in dataset.json" in msg and str(folder / "tiny_003.nii.gz") in msg


def test_guard_missing_file(tiny, tmp_path):
    raw = tiny.raw / "Dataset990_Tiny"
    folder = _copy_labels(raw / layout.LABELS_REF, ["tiny_003"], tmp_path / "pl")
    msg = _ingest_error(tiny, folder, cases=["tiny_003", "tiny_004"])
    assert "tiny_004" in msg and "no pseudo-label file" in msg and "tiny_003" not in msg


def test_guard_labeled_and_test_cases_refused(tiny, tmp_path):
    raw = tiny.raw / "Dataset990_Tiny"
    folder = _copy_labels(raw / layout.LABELS_REF, ["tiny_003"], tmp_path / "pl")
    shutil.copy2(raw / layout.LABELS_TR / "tiny_000.nii.gz", folder)
    shutil.copy2(raw / layout.LABELS_TS / "tiny_007.nii.gz", folder)
    # refused even when the offending files are not in the selected cases
    msg = _ingest_error(tiny, folder, cases=["tiny_003"])
    assert "tiny_000" in msg and "LABELED" in msg
    assert "tiny_007" in msg and "TEST" in msg
    assert "tiny_003" not in msg


def test_guard_lists_every_problem_at_once(tiny, tmp_path):
    import SimpleITK as sitk

    raw = tiny.raw / "Dataset990_Tiny"
    folder = _copy_labels(raw / layout.LABELS_REF, ["tiny_003", "tiny_004"], tmp_path / "pl")
    shutil.copy2(raw / layout.LABELS_TS / "tiny_007.nii.gz", folder)
    lab = sitk.ReadImage(str(folder / "tiny_003.nii.gz"))
    lab.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(lab, str(folder / "tiny_003.nii.gz"))
    msg = _ingest_error(tiny, folder, cases=["tiny_003", "tiny_004", "tiny_005"])
    assert "3 problem(s)" in msg
    assert "case tiny_007" in msg and "TEST" in msg
    assert "case tiny_005: no pseudo-label file" in msg
    assert "case tiny_003" in msg and "origin" in msg
    assert "case tiny_004" not in msg


def test_guard_unknown_case_and_empty_folder(tiny, tmp_path):
    raw = tiny.raw / "Dataset990_Tiny"
    folder = _copy_labels(raw / layout.LABELS_REF, ["tiny_003"], tmp_path / "pl")
    shutil.copy2(folder / "tiny_003.nii.gz", folder / "stranger.nii.gz")
    msg = _ingest_error(tiny, folder)
    assert "stranger" in msg and "no image" in msg
    (tmp_path / "empty").mkdir()
    assert "no pseudo-label files" in _ingest_error(tiny, tmp_path / "empty")
    assert "not found" in _ingest_error(tiny, tmp_path / "nowhere")

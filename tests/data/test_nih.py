"""NIH Pancreas-CT converter on tiny DICOM series written in the TCIA layout."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from atso_nnunet.data import nih
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, read_array

SHAPE = (6, 16, 14)                  # z, y, x
SPACING = (0.8, 0.7, 2.5)            # x, y, z mm
SLOPE, INTERCEPT = 2.0, -1024.0


def make_hu(seed: int) -> np.ndarray:
    """Even HU values so that stored = (HU - intercept) / slope is an integer."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-512, 600, SHAPE) * 2).astype(np.int16)


def make_label(seed: int) -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    rng = np.random.default_rng(seed + 100)
    z, y, x = rng.integers(1, 3), rng.integers(2, 8), rng.integers(2, 6)
    lab[z:z + 3, y:y + 5, x:x + 6] = 1       # asymmetric along every axis, so any flip shows
    lab[z, y, x] = 0
    return lab


def origin_of(seed: int):
    return (-10.0 - seed, -20.0, 100.0 + 5 * seed)


def write_series(folder: Path, hu: np.ndarray, origin, rng, pixel_repr: int = 1,
                 series_uid: str | None = None, study_uid: str | None = None, skip=()) -> str:
    """One CT DICOM file per slice, random file names, written in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    stored = ((hu.astype(np.float64) - INTERCEPT) / SLOPE).astype(np.int16 if pixel_repr else np.uint16)
    order = rng.permutation(hu.shape[0])
    for k in order:
        if k in skip:
            continue
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientID, ds.Modality, ds.InstanceNumber = folder.parts[-3], "CT", int(k) + 1
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.PixelSpacing = [SPACING[1], SPACING[0]]            # row spacing (y), column spacing (x)
        ds.SliceThickness = SPACING[2]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * SPACING[2]]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, pixel_repr
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = SLOPE, INTERCEPT, "HU"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"{rng.integers(1e9):09d}.dcm", enforce_file_format=True)
    return series_uid


def write_label(path: Path, lab: np.ndarray, origin, flip: str | None = None, shape=None) -> None:
    """A label as NIH ships it: optionally stored flipped along one axis, with a header saying so."""
    direction = np.eye(3)
    origin = np.array(origin, float)
    if flip is not None:
        a = "xyz".index(flip)
        lab = np.flip(lab, axis=2 - a)
        direction[a, a] = -1
        origin[a] += (SHAPE[2 - a] - 1) * SPACING[a]
    if shape is not None:
        lab = np.zeros(shape, np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(lab))
    img.SetSpacing(SPACING)
    img.SetOrigin(tuple(origin))
    img.SetDirection(tuple(direction.ravel()))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def make_archive(root: Path, numbers, flips=None, pixel_reprs=None):
    """TCIA layout with patients ``numbers``; returns (dicom_root, labels_root, truth)."""
    rng = np.random.default_rng(0)
    flips, pixel_reprs = flips or {}, pixel_reprs or {}
    truth = {}
    for n in numbers:
        hu, lab = make_hu(n), make_label(n)
        patient = root / "Pancreas-CT" / f"PANCREAS_{n:04d}"
        write_series(patient / f"1.2.826.0.1.{n}" / f"1.2.826.0.2.{n}", hu, origin_of(n), rng,
                     pixel_repr=pixel_reprs.get(n, 1))
        write_label(root / "labels" / f"label{n:04d}.nii.gz", lab, origin_of(n), flips.get(n))
        truth[nih.nih_case_id(n)] = (hu, lab)
    return root, root / "labels", truth


def expected_geometry(n: int) -> Geometry:
    return Geometry(tuple(reversed(SHAPE)), SPACING, origin_of(n), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_convert_nih_voxel_for_voxel_and_flip_report(tmp_path):
    dicom_root, labels_root, truth = make_archive(tmp_path / "tcia", [1, 2, 3], flips={2: "z", 3: "y"},
                                                  pixel_reprs={3: 0})
    out = tmp_path / "Dataset801_NIHPancreas"
    report = nih.convert_nih(dicom_root, labels_root, out)

    assert report.converted == ["NIH_0001", "NIH_0002", "NIH_0003"] and not report.failed
    for case, (hu, lab) in truth.items():
        img, geom = read_array(out / "imagesTr" / f"{case}_0000.nii.gz")
        seg, seg_geom = read_array(out / "labelsTr" / f"{case}.nii.gz")
        assert img.dtype == np.int16 and seg.dtype == np.uint8
        np.testing.assert_array_equal(img, hu)
        np.testing.assert_array_equal(seg, lab)
        n = int(case.split("_")[1])
        assert geom.matches(expected_geometry(n)) and seg_geom.matches(geom)

    assert sorted(report.flipped) == ["NIH_0002", "NIH_0003"]
    on_disk = json.loads((out / "conversion_report.json").read_text())
    assert on_disk["flipped"]["NIH_0002"]["flipped_axes"] == ["z"]
    assert on_disk["flipped"]["NIH_0003"]["flipped_axes"] == ["y"]
    assert "opposite" in on_disk["flipped"]["NIH_0002"]["reason"]
    assert not any(r.warnings for r in report.cases.values())

    dj = json.loads((out / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "CT"} and dj["labels"] == {"background": 0, "pancreas": 1}
    assert dj["numTraining"] == 3 and dj["file_ending"] == ".nii.gz"

    # re-run: nothing rewritten; a half-written case (no marker) is redone
    before = (out / "imagesTr" / "NIH_0001_0000.nii.gz").stat().st_mtime_ns
    (out / ".conversion" / "NIH_0003.json").unlink()
    again = nih.convert_nih(dicom_root, labels_root, out)
    assert again.skipped == ["NIH_0001", "NIH_0002"] and again.converted == ["NIH_0003"]
    assert (out / "imagesTr" / "NIH_0001_0000.nii.gz").stat().st_mtime_ns == before
    assert sorted(again.flipped) == ["NIH_0002", "NIH_0003"]


def test_align_label_permuted_and_flipped_header():
    lab = make_label(5)
    geom = expected_geometry(5)
    # stored with x and y swapped and x reversed, header saying so
    stored = np.flip(np.transpose(lab, (0, 2, 1)), axis=1)
    img = sitk.GetImageFromArray(np.ascontiguousarray(stored))
    img.SetSpacing((SPACING[1], SPACING[0], SPACING[2]))
    o = np.array(geom.origin)
    img.SetOrigin((o[0] + (SHAPE[2] - 1) * SPACING[0], o[1], o[2]))  # label (0,0,0) is image x = last
    # label axis 0 runs along image y (+), label axis 1 along image x (-)
    img.SetDirection((0, -1, 0, 1, 0, 0, 0, 0, 1))
    aligned, record = nih.align_label("NIH_0005", img, geom)
    np.testing.assert_array_equal(aligned, lab)
    assert record.permutation == ["y", "x", "z"] and record.flipped_axes == ["x"]
    assert record.warnings == []


def _only_error(tmp_path, numbers, mutate):
    dicom_root, labels_root, _ = make_archive(tmp_path / "tcia", numbers)
    mutate(dicom_root, labels_root)
    out = tmp_path / "Dataset801_NIHPancreas"
    with pytest.raises(InputError) as e:
        nih.convert_nih(dicom_root, labels_root, out)
    assert not (out / "dataset.json").exists()
    return str(e.value), out


def test_missing_slice_names_case(tmp_path):
    def drop_slice(dicom_root, _):
        folder = next((dicom_root / "Pancreas-CT" / "PANCREAS_0002").rglob("*.dcm")).parent
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
        Path(files[3]).unlink()

    msg, out = _only_error(tmp_path, [1, 2], drop_slice)
    assert "NIH_0002" in msg and "missing" in msg and "NIH_0001" not in msg
    # the good case is converted, the bad one leaves nothing behind
    assert (out / ".conversion" / "NIH_0001.json").is_file()
    assert not (out / "imagesTr" / "NIH_0002_0000.nii.gz").exists()


def test_label_of_wrong_shape_names_case(tmp_path):
    def bad_label(_, labels_root):
        write_label(labels_root / "label0001.nii.gz", None, origin_of(1), shape=(SHAPE[0] + 1, *SHAPE[1:]))

    msg, _ = _only_error(tmp_path, [1], bad_label)
    assert "NIH_0001" in msg and "size" in msg


def test_mixed_series_in_one_folder_names_patient_and_series(tmp_path):
    def add_series(dicom_root, _):
        folder = next((dicom_root / "Pancreas-CT" / "PANCREAS_0001").rglob("*.dcm")).parent
        write_series(folder, make_hu(9), origin_of(1), np.random.default_rng(1), series_uid="1.2.3.999")

    msg, _ = _only_error(tmp_path, [1], add_series)
    assert "PANCREAS_0001" in msg and "1.2.3.999" in msg and "--series-rule" in msg

    # with a rule, conversion goes through (both series have 6 slices: the first found wins)
    dicom_root, labels_root = tmp_path / "tcia", tmp_path / "tcia" / "labels"
    out = tmp_path / "ruled"
    report = nih.convert_nih(dicom_root, labels_root, out, series_rule="most-slices")
    assert report.converted == ["NIH_0001"]


def test_missing_label_and_unknown_case(tmp_path):
    dicom_root, labels_root, _ = make_archive(tmp_path / "tcia", [1])
    shutil.rmtree(labels_root)
    labels_root.mkdir()
    with pytest.raises(InputError, match="NIH_0001: label file"):
        nih.convert_nih(dicom_root, labels_root, tmp_path / "out")
    with pytest.raises(InputError, match="NIH_0007"):
        nih.convert_nih(dicom_root, labels_root, tmp_path / "out", cases=["NIH_0007"])


def test_cli_nih_and_conversion_command(tmp_path):
    from atso_nnunet.cli.convert import main
    from atso_nnunet.data.converters import conversion_command

    dicom_root, labels_root, truth = make_archive(tmp_path / "tcia", [4])
    raw = tmp_path / "raw"
    argv = ["nih", "--dicom-root", str(dicom_root / "Pancreas-CT"), "--labels-root", str(labels_root),
            "--raw", str(raw), "--dataset-id", "801"]
    assert main(argv) == 0
    seg, _ = read_array(raw / "Dataset801_NIHPancreas" / "labelsTr" / "NIH_0004.nii.gz")
    np.testing.assert_array_equal(seg, truth["NIH_0004"][1])
    assert main(["nih", "--dicom-root", str(tmp_path / "nope"), "--labels-root", str(labels_root),
                 "--raw", str(raw)]) == InputError.exit_code

    cmd = conversion_command("Dataset801_NIHPancreas")
    assert cmd.startswith("atso_nnunet_convert nih --dicom-root") and "--dataset-id 801" in cmd
    assert "--dataset-id 802" in conversion_command("Dataset802_MSDPancreas")
    assert conversion_command("Dataset980_SyntheticA") is None


@pytest.mark.parametrize("cut", [1, 600])
def test_truncated_slice_is_named_as_unreadable(tmp_path, cut):
    """GDCM drops an unreadable slice silently; the error names that file, not a 'missing slice'."""
    bad = []

    def truncate(dicom_root, _):
        folder = next((dicom_root / "Pancreas-CT" / "PANCREAS_0002").rglob("*.dcm")).parent
        path = Path(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))[3])
        data = path.read_bytes()
        path.write_bytes(data[:len(data) - cut])
        bad.append(path)

    msg, out = _only_error(tmp_path, [1, 2], truncate)
    assert "NIH_0002" in msg and str(bad[0]) in msg and "cannot be read" in msg and "truncated" in msg
    assert "non-uniform" not in msg
    assert not (out / "imagesTr" / "NIH_0002_0000.nii.gz").exists()
    assert (out / ".conversion" / "NIH_0001.json").is_file()


def test_other_files_in_the_series_folder_are_ignored(tmp_path):
    dicom_root, labels_root, _ = make_archive(tmp_path / "tcia", [1])
    folder = next((dicom_root / "Pancreas-CT" / "PANCREAS_0001").rglob("*.dcm")).parent
    (folder / "README.txt").write_text("not DICOM")
    report = nih.convert_nih(dicom_root, labels_root, tmp_path / "out")
    assert report.converted == ["NIH_0001"]


def test_the_series_uid_of_every_converted_series_is_recorded(tmp_path, monkeypatch):
    """Issue 29 item 6: the record holds each multi-slice series' SeriesInstanceUID (a Siemens-style
    odd-length UID, NUL-padded by DICOM), also when GDCM's series id comes back empty, as it did for a
    real Siemens series."""
    uids = {1: "1.3.12.2.1107.5.1.4.54321.30000009012312345678900000012", 2: "1.2.826.0.1.3680043.2.1125.7"}
    root = tmp_path / "tcia"
    rng = np.random.default_rng(0)
    for n, uid in uids.items():
        folder = root / "Pancreas-CT" / f"PANCREAS_{n:04d}" / f"1.2.826.0.1.{n}" / f"1.2.826.0.2.{n}"
        write_series(folder, make_hu(n), origin_of(n), rng, series_uid=uid)
        write_label(root / "labels" / f"label{n:04d}.nii.gz", make_label(n), origin_of(n))
    assert all(len(list((root / "Pancreas-CT").glob(f"PANCREAS_{n:04d}/*/*/*.dcm"))) == SHAPE[0] for n in uids)
    report = nih.convert_nih(root, root / "labels", tmp_path / "a")
    assert {c: r.series_uid for c, r in report.cases.items()} == {nih.nih_case_id(n): u for n, u in uids.items()}

    # GDCM's id for the Siemens series was empty; SimpleITK then reads the folder's only series anyway
    real = sitk.ImageSeriesReader.GetGDCMSeriesIDs
    monkeypatch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs", staticmethod(lambda d: [""] if real(d) else []))
    report = nih.convert_nih(root, root / "labels", tmp_path / "b")
    assert {c: r.series_uid for c, r in report.cases.items()} == {nih.nih_case_id(n): u for n, u in uids.items()}
    marker = json.loads(next((tmp_path / "b").rglob("NIH_0001.json")).read_text())
    assert marker["series_uid"] == uids[1]

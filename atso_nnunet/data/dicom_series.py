"""Reading one CT volume from a folder of DICOM files with SimpleITK (GDCM).

Finding the series below a patient folder, picking one, checking that no slice is unreadable,
missing or duplicated, and reading it as int16 HU with its geometry. Which folders are patients
and what their cases are called is the archive's business (:mod:`atso_nnunet.data.nih`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry

logger = logging.getLogger(__name__)

SERIES_RULES = ("most-slices",)

_INT16 = np.iinfo(np.int16)


# --------------------------------------------------------------------------------------------
# discovery


def _series_in(patient_dir: Path) -> List[Tuple[str, Path]]:
    """All (series uid, folder) pairs below a patient folder (GDCM reads one folder at a time)."""
    found = []
    folders = [patient_dir] + sorted(d for d in patient_dir.rglob("*") if d.is_dir())
    for folder in folders:
        if not any(f.is_file() for f in folder.iterdir()):
            continue
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
            found.append((uid, folder))
    return found


def select_series(patient: str, series: Sequence[Tuple[str, Path]], rule: Optional[str]) -> Tuple[str, Path]:
    """Pick the one series to convert.

    Args:
        patient: patient folder name, for messages.
        series: (series uid, folder) pairs found.
        rule: ``None`` (exactly one series required) or ``"most-slices"``.

    Raises:
        InputError: no series, or several and no rule.
    """
    if not series:
        raise InputError(f"{patient}: no DICOM series found below the patient folder")
    if len(series) == 1:
        return series[0]
    listing = ", ".join(f"{uid} ({folder.name})" for uid, folder in series)
    if rule is None:
        raise InputError(
            f"{patient}: {len(series)} DICOM series found ({listing}); NIH Pancreas-CT has one per "
            f"patient. Remove the extra series or pass a selection rule (--series-rule most-slices)")
    if rule == "most-slices":
        counts = [len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(f), uid)) for uid, f in series]
        best = int(np.argmax(counts))
        logger.warning("%s: %d series (%s); using %s (%d slices, rule most-slices)",
                       patient, len(series), listing, series[best][0], counts[best])
        return series[best]
    raise InputError(f"unknown series rule {rule!r}; choose one of {SERIES_RULES}")


# --------------------------------------------------------------------------------------------
# reading


def series_instance_uid(patient: str, files: Sequence[str], gdcm_id: str = "") -> str:
    """The SeriesInstanceUID (0020,000E) of a series, read from its first file's header.

    GDCM's series identifier (``GetGDCMSeriesIDs``) is not the UID itself: it is the UID with
    every character but letters, digits and dots removed, and comes back empty for some vendors'
    files (a Siemens series converted from NIH Pancreas-CT), so the header is read with pydicom.
    ``gdcm_id`` is kept (with a warning) when the header has no UID.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        header = pydicom.dcmread(files[0], stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        uid = str(header.get("SeriesInstanceUID", "") or "").strip(" \x00")
    except (OSError, InvalidDicomError) as e:
        logger.warning("%s: cannot read the SeriesInstanceUID of %s (%s)", patient, files[0], e)
        uid = ""
    if not uid:
        logger.warning("%s: no SeriesInstanceUID (0020,000E) in %s; recording GDCM's series id %r", patient,
                       files[0], gdcm_id)
    return uid or gdcm_id


def _slice_geometry(path: str) -> Tuple[np.ndarray, np.ndarray]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    try:
        position = np.array([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
        orientation = np.array([float(v) for v in reader.GetMetaData("0020|0037").split("\\")])
    except RuntimeError as e:
        raise InputError(f"{path}: ImagePositionPatient / ImageOrientationPatient missing") from e
    return position, orientation


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def check_unreadable_files(patient: str, folder: Path) -> None:
    """Name the DICOM files of a series folder that GDCM cannot read (truncated or corrupt).

    GDCM leaves a file it cannot parse out of every series without a word, so a truncated slice
    would otherwise show up only as a gap in the slice positions. Files that are in no series of
    the folder and look like DICOM (``.dcm`` or the ``DICM`` preamble) are read one by one.

    Raises:
        InputError: naming each unreadable file and what to do.
    """
    folder = Path(folder)
    listed = set()
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        listed.update(Path(f).name for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    unreadable = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name not in listed):
        if not _looks_like_dicom(path):
            continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
            reader.Execute()
        except RuntimeError:
            unreadable.append(path)
    if unreadable:
        names = ", ".join(str(p) for p in unreadable[:10]) + (f" and {len(unreadable) - 10} more"
                                                              if len(unreadable) > 10 else "")
        raise InputError(
            f"{patient}: {len(unreadable)} DICOM file(s) cannot be read (truncated or corrupt): {names}. "
            "Download these slices again (the series is incomplete without them)")


def check_slice_positions(patient: str, files: Sequence[str], rel_tol: float = 0.01) -> float:
    """Check that the sorted slices are equally spaced (no missing or duplicated slice).

    Returns:
        The slice spacing in mm.

    Raises:
        InputError: fewer than 2 slices, mixed orientations, duplicates or gaps; names the patient.
    """
    if len(files) < 2:
        raise InputError(f"{patient}: the DICOM series has {len(files)} slice(s); expected a volume")
    geoms = [_slice_geometry(f) for f in files]
    orientation = geoms[0][1]
    if any(not np.allclose(o, orientation, atol=1e-4) for _, o in geoms):
        raise InputError(f"{patient}: slices with different ImageOrientationPatient in one series")
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.array([float(np.dot(p, normal)) for p, _ in geoms])
    steps = np.diff(along)
    step = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - step) > rel_tol * abs(step) + 1e-3)
    if abs(step) < 1e-3 or bad.size:
        i = int(bad[0]) if bad.size else 0
        raise InputError(
            f"{patient}: non-uniform slice positions (step {steps[i]:.3f} mm between sorted slices "
            f"{i} and {i + 1} of {len(files)}, expected {step:.3f} mm): missing or duplicated "
            f"slice(s) ({Path(files[i]).name}, {Path(files[i + 1]).name}). Re-download the series")
    return abs(step)


def read_series(patient: str, files: Sequence[str]) -> Tuple[np.ndarray, Geometry, List[str]]:
    """Read a sorted DICOM series as HU (int16, (z, y, x)) and its geometry.

    SimpleITK (GDCM) applies RescaleSlope/RescaleIntercept while reading. Values are rounded to
    int16; non-integer HU (a fractional slope) are reported as a warning.

    Raises:
        InputError: unreadable series, or HU outside the int16 range.
    """
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise InputError(f"{patient}: SimpleITK cannot read the DICOM series "
                         f"({str(e).strip().splitlines()[-1]})") from e
    hu = sitk.GetArrayFromImage(image)
    warnings = []
    if not np.issubdtype(hu.dtype, np.integer):
        rounded = np.round(hu)
        if not np.array_equal(rounded, hu):
            warnings.append("non-integer HU after rescale rounded to int16")
        hu = rounded
    if hu.min() < _INT16.min or hu.max() > _INT16.max:
        raise InputError(f"{patient}: HU range [{hu.min()}, {hu.max()}] does not fit int16")
    return hu.astype(np.int16), Geometry.of(image), warnings

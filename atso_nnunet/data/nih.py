"""NIH Pancreas-CT (TCIA) -> nnU-Net raw source dataset ``Dataset801_NIHPancreas``.

Input, as the public TCIA archive ships it::

    <dicom_root>/Pancreas-CT/PANCREAS_0001/<study uid>/<series uid>/*.dcm   (or <dicom_root>/PANCREAS_0001/...)
    <labels_root>/label0001.nii.gz                                            (TCIA_pancreas_labels-02-05-2017)

Output (an ordinary nnU-Net raw dataset, all cases labeled)::

    <out_dir>/imagesTr/NIH_0001_0000.nii.gz    HU, int16, geometry of the DICOM series
    <out_dir>/labelsTr/NIH_0001.nii.gz         uint8 {0, 1}, aligned voxel for voxel to the image
    <out_dir>/.conversion/NIH_0001.json        per-case completion marker (written last)
    <out_dir>/conversion_report.json           which labels were reoriented and why
    <out_dir>/dataset.json                     written when every requested case converted

Case ids keep the NIH numbering (``PANCREAS_0007`` / ``label0007.nii.gz`` -> ``NIH_0007``).

Label alignment rule (no ground truth needed): the NIH label files are known to be stored with a
different axis orientation than the DICOM series. We trust the label file's *header*: the label's
direction matrix is compared with the image's, column by column (one column per voxel axis).

* ``M = D_image^T @ D_label`` must be a signed permutation matrix (within 0.01): label voxel
  axis ``j`` runs along image voxel axis ``k`` where ``|M[k, j]| = 1``; ``M[k, j] = -1`` means
  the label runs the opposite way along that axis. Anything else (oblique) is an ``InputError``.
* The label array is permuted onto the image's axis order and flipped along every axis whose
  sign is -1; the result is written with the *image's* geometry. Each such flip/permutation is
  logged and listed in ``conversion_report.json``.
* After permuting, sizes must be equal (else ``InputError``: the label does not belong to this
  scan) and spacings equal within 1 % (else ``InputError``).
* Origin is a consistency check: the physical position of the label voxel that lands on image
  voxel (0, 0, 0) should be the image origin. A disagreement of more than half a voxel is
  logged and recorded in the report as a warning, not an error: it cannot be decided from the
  header alone which of the two is wrong, and the voxel grid written is the image's.

A flip that is *not* declared in the label header (same direction, mirrored content) cannot be
detected without ground truth and is not attempted.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from atso_nnunet.data import layout
from atso_nnunet.data.dicom_series import (  # also imported from here
    SERIES_RULES, _series_in, check_slice_positions, check_unreadable_files, read_series, select_series,
    series_instance_uid)
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, read_image, write_array, write_json

logger = logging.getLogger(__name__)

NIH_DATASET_ID = 801
NIH_DATASET_NAME = "NIHPancreas"
ARCHIVE_FOLDER = "Pancreas-CT"
MARKER_DIR = ".conversion"
REPORT_FILE = "conversion_report.json"

_PATIENT_RE = re.compile(r"^PANCREAS_(\d{4})$")
_AXES = ("x", "y", "z")


def nih_case_id(number: int) -> str:
    """``7`` -> ``"NIH_0007"``."""
    return f"NIH_{number:04d}"


@dataclass
class CaseRecord:
    """What happened to one case.

    Attributes:
        case_id: ``NIH_XXXX``.
        patient: TCIA patient folder (``PANCREAS_XXXX``).
        series_uid: DICOM series instance UID that was read.
        size: image size (x, y, z).
        spacing: image spacing (x, y, z) in mm.
        flipped_axes: image axes (``x``/``y``/``z``) along which the label array was flipped.
        permutation: for each image axis x, y, z, the label axis it came from (identity: x, y, z).
        reason: why the label was reoriented (empty if it was not).
        warnings: non-fatal findings (origin disagreement, non-integer HU rounded).
    """

    case_id: str
    patient: str
    series_uid: str = ""
    size: Tuple[int, ...] = ()
    spacing: Tuple[float, ...] = ()
    flipped_axes: List[str] = field(default_factory=list)
    permutation: List[str] = field(default_factory=lambda: list(_AXES))
    reason: str = ""
    warnings: List[str] = field(default_factory=list)

    @property
    def reoriented(self) -> bool:
        return bool(self.flipped_axes) or self.permutation != list(_AXES)


@dataclass
class ConversionReport:
    """Outcome of :func:`convert_nih`, also written to ``<out_dir>/conversion_report.json``.

    Attributes:
        dataset_dir: the raw dataset folder written.
        converted: case ids converted by this call.
        skipped: case ids already finished by an earlier call (marker present).
        failed: case id -> error message, for cases that could not be converted.
        cases: case id -> :class:`CaseRecord` for every finished case (this call or earlier).
    """

    dataset_dir: Path
    converted: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    cases: Dict[str, CaseRecord] = field(default_factory=dict)

    @property
    def flipped(self) -> Dict[str, CaseRecord]:
        """Finished cases whose label array was flipped or permuted to match the image."""
        return {c: r for c, r in self.cases.items() if r.reoriented}

    def to_json(self) -> dict:
        return {
            "dataset_dir": str(self.dataset_dir),
            "label_alignment_rule": (
                "label header direction compared with the DICOM direction; the label array is "
                "permuted/flipped along every axis whose direction column differs (sign or order) "
                "and written with the image geometry (see atso_nnunet/data/nih.py)"),
            "converted": self.converted,
            "skipped": self.skipped,
            "failed": self.failed,
            "flipped": {c: {"flipped_axes": r.flipped_axes, "permutation": r.permutation,
                            "reason": r.reason} for c, r in sorted(self.flipped.items())},
            "cases": {c: asdict(r) for c, r in sorted(self.cases.items())},
        }


# --------------------------------------------------------------------------------------------
# discovery (the TCIA layout; reading a series is atso_nnunet.data.dicom_series)


def find_patients(dicom_root: Path) -> Dict[str, Path]:
    """Case id -> patient folder, for every ``PANCREAS_XXXX`` folder under ``dicom_root``.

    ``dicom_root`` may be the folder holding ``Pancreas-CT`` or ``Pancreas-CT`` itself.

    Raises:
        InputError: the folder is missing or holds no ``PANCREAS_XXXX`` folder.
    """
    dicom_root = Path(dicom_root)
    if not dicom_root.is_dir():
        raise InputError(f"{dicom_root}: DICOM root folder not found")
    base = dicom_root / ARCHIVE_FOLDER if (dicom_root / ARCHIVE_FOLDER).is_dir() else dicom_root
    patients = {}
    for p in sorted(base.iterdir()):
        m = _PATIENT_RE.match(p.name)
        if m and p.is_dir():
            patients[nih_case_id(int(m.group(1)))] = p
    if not patients:
        raise InputError(
            f"{base}: no PANCREAS_XXXX patient folders found; point --dicom-root at the TCIA "
            f"download (the folder holding '{ARCHIVE_FOLDER}/PANCREAS_0001/...')")
    return patients


def label_file(labels_root: Path, case_id: str) -> Path:
    """``NIH_0007`` -> ``<labels_root>/label0007.nii.gz``."""
    return Path(labels_root) / f"label{case_id.split('_')[1]}.nii.gz"


# --------------------------------------------------------------------------------------------
# label alignment


def _direction(geometry: Geometry) -> np.ndarray:
    return np.asarray(geometry.direction, dtype=float).reshape(3, 3)


def align_label(case_id: str, label: sitk.Image, image_geometry: Geometry,
                origin_tol_voxels: float = 0.5) -> Tuple[np.ndarray, CaseRecord]:
    """Reorient a label array onto the image's voxel grid using the label header (see module doc).

    Args:
        case_id: for messages.
        label: the label image as read from disk.
        image_geometry: geometry of the DICOM series.
        origin_tol_voxels: origin disagreement (in voxels of the image) tolerated silently.

    Returns:
        The label as a (z, y, x) array on the image grid, and a record with ``flipped_axes``,
        ``permutation``, ``reason`` and ``warnings`` filled in.

    Raises:
        InputError: oblique directions, wrong size or wrong spacing; names the case.
    """
    lab_geom = Geometry.of(label)
    record = CaseRecord(case_id=case_id, patient="")
    m = _direction(image_geometry).T @ _direction(lab_geom)
    r = np.round(m)
    signed_perm = (np.all(np.abs(r).sum(axis=0) == 1) and np.all(np.abs(r).sum(axis=1) == 1))
    if not signed_perm or not np.allclose(m, r, atol=1e-2):
        raise InputError(
            f"{case_id}: label direction {tuple(round(v, 3) for v in lab_geom.direction)} is not "
            f"axis-aligned with the image direction "
            f"{tuple(round(v, 3) for v in image_geometry.direction)}; cannot match the label")
    # label voxel axis j runs along image voxel axis src_to_img[j] with sign signs[j]
    src_to_img = [int(np.argmax(np.abs(r[:, j]))) for j in range(3)]
    signs = [int(r[src_to_img[j], j]) for j in range(3)]
    img_from = [src_to_img.index(k) for k in range(3)]  # image axis k <- label axis img_from[k]

    lab_size = tuple(lab_geom.size[img_from[k]] for k in range(3))
    if lab_size != tuple(image_geometry.size):
        raise InputError(
            f"{case_id}: label size {lab_geom.size} (x, y, z; image axis order {lab_size}) does not "
            f"match the image size {image_geometry.size}: this label does not belong to this scan")
    lab_spacing = np.array([lab_geom.spacing[img_from[k]] for k in range(3)])
    img_spacing = np.array(image_geometry.spacing)
    if not np.allclose(lab_spacing, img_spacing, rtol=0.01, atol=1e-3):
        raise InputError(
            f"{case_id}: label spacing {tuple(round(v, 4) for v in lab_spacing)} does not match the "
            f"image spacing {tuple(round(v, 4) for v in img_spacing)} (x, y, z, mm)")

    array = sitk.GetArrayFromImage(label)
    # numpy axes are reversed: sitk axis a <-> numpy axis 2 - a
    array = np.transpose(array, [2 - img_from[2 - n] for n in range(3)])
    flip_axes = [k for k in range(3) if signs[img_from[k]] < 0]
    if flip_axes:
        array = np.flip(array, axis=tuple(2 - k for k in flip_axes))
    array = np.ascontiguousarray(array)

    record.permutation = [_AXES[img_from[k]] for k in range(3)]
    record.flipped_axes = [_AXES[k] for k in flip_axes]
    if record.reoriented:
        parts = []
        if record.flipped_axes:
            parts.append("label direction runs opposite to the image along "
                         + ", ".join(record.flipped_axes))
        if record.permutation != list(_AXES):
            parts.append("label axes (x, y, z) map to image axes " + ", ".join(record.permutation))
        record.reason = ("; ".join(parts) + f" (label direction {tuple(round(v, 3) for v in lab_geom.direction)}"
                         f", image direction {tuple(round(v, 3) for v in image_geometry.direction)})")

    corner = [0, 0, 0]
    for k in flip_axes:
        corner[img_from[k]] = lab_geom.size[img_from[k]] - 1
    lab_origin = np.array(label.TransformIndexToPhysicalPoint([int(c) for c in corner]))
    offset = lab_origin - np.array(image_geometry.origin)
    if np.any(np.abs(offset) > origin_tol_voxels * img_spacing.max()):
        record.warnings.append(
            f"label origin disagrees with the image by {tuple(round(v, 2) for v in offset)} mm "
            f"after reorientation; the image geometry was used")
    return array, record


def _label_values(case_id: str, array: np.ndarray) -> np.ndarray:
    values = np.unique(array)
    if not set(values.tolist()) <= {0, 1}:
        raise InputError(f"{case_id}: label values {values.tolist()[:10]} are not in {{0, 1}} "
                         "(background, pancreas)")
    return array.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# conversion


def _marker(out_dir: Path, case_id: str) -> Path:
    return out_dir / MARKER_DIR / f"{case_id}.json"


def _finished(out_dir: Path, case_id: str) -> Optional[CaseRecord]:
    marker = _marker(out_dir, case_id)
    if not (marker.is_file()
            and layout.image_path(out_dir, layout.IMAGES_TR, case_id).is_file()
            and layout.label_path(out_dir, layout.LABELS_TR, case_id).is_file()):
        return None
    data = json.loads(marker.read_text(encoding="utf-8"))
    data["size"] = tuple(data.get("size", ()))
    data["spacing"] = tuple(data.get("spacing", ()))
    return CaseRecord(**data)


def convert_case(case_id: str, patient_dir: Path, labels_root: Path, out_dir: Path,
                 series_rule: Optional[str] = None) -> CaseRecord:
    """Convert one patient: image, then label, then the completion marker (all atomic).

    Raises:
        InputError: anything wrong with this case; the message names it.
    """
    patient = patient_dir.name
    lab_path = label_file(labels_root, case_id)
    if not lab_path.is_file():
        raise InputError(f"{case_id}: label file {lab_path} not found")
    uid, folder = select_series(patient, _series_in(patient_dir), series_rule)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    check_unreadable_files(f"{case_id} ({patient})", folder)
    check_slice_positions(f"{case_id} ({patient})", files)
    hu, geometry, warnings = read_series(f"{case_id} ({patient})", files)
    label_array, record = align_label(case_id, read_image(lab_path), geometry)
    label_array = _label_values(case_id, label_array)

    record.patient, record.series_uid = patient, series_instance_uid(f"{case_id} ({patient})", files, uid)
    record.size, record.spacing = tuple(geometry.size), tuple(round(s, 6) for s in geometry.spacing)
    record.warnings = warnings + record.warnings
    if record.reoriented:
        logger.info("%s: label reoriented to match the DICOM: %s", case_id, record.reason)
    for w in record.warnings:
        logger.warning("%s: %s", case_id, w)

    write_array(hu, geometry, layout.image_path(out_dir, layout.IMAGES_TR, case_id))
    write_array(label_array, geometry, layout.label_path(out_dir, layout.LABELS_TR, case_id))
    write_json(asdict(record), _marker(out_dir, case_id))
    return record


def dataset_json(num_training: int) -> dict:
    """nnU-Net dataset.json of the NIH source dataset."""
    return {
        "name": NIH_DATASET_NAME,
        "description": "NIH Pancreas-CT (TCIA), converted by atso_nnunet_convert nih",
        "reference": "https://doi.org/10.7937/K9/TCIA.2016.tNB1kqBU",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "pancreas": 1},
        "numTraining": num_training,
        "file_ending": layout.FILE_ENDING,
    }


def convert_nih(dicom_root: Path, labels_root: Path, out_dir: Path, cases: Optional[Iterable[str]] = None,
                series_rule: Optional[str] = None) -> ConversionReport:
    """Convert NIH Pancreas-CT to the nnU-Net raw dataset ``out_dir`` (``Dataset801_NIHPancreas``).

    Finished cases (marker present) are skipped, so an interrupted conversion resumes. Every case
    is attempted; failures are collected and raised together at the end, after the report is
    written. ``dataset.json`` is written only when no requested case failed.

    Args:
        dicom_root: folder holding ``Pancreas-CT/PANCREAS_XXXX`` (or ``Pancreas-CT`` itself).
        labels_root: folder holding ``labelXXXX.nii.gz``.
        out_dir: the raw dataset folder to write.
        cases: case ids (``NIH_0001``) to convert; default every patient found.
        series_rule: ``None`` (one series per patient required) or ``"most-slices"``.

    Returns:
        The :class:`ConversionReport` (also written to ``out_dir/conversion_report.json``).

    Raises:
        InputError: missing input folders, unknown case ids, or failed cases (one error listing
            every failed case and why).
    """
    out_dir, labels_root = Path(out_dir), Path(labels_root)
    if not labels_root.is_dir():
        raise InputError(f"{labels_root}: labels folder not found (TCIA_pancreas_labels-02-05-2017)")
    if series_rule is not None and series_rule not in SERIES_RULES:
        raise InputError(f"unknown series rule {series_rule!r}; choose one of {SERIES_RULES}")
    patients = find_patients(dicom_root)
    wanted = sorted(patients) if cases is None else sorted(set(cases))
    unknown = [c for c in wanted if c not in patients]
    if unknown:
        raise InputError(f"case(s) {', '.join(unknown)} have no PANCREAS_XXXX folder under {dicom_root}")

    report = ConversionReport(dataset_dir=out_dir)
    for case_id in tqdm(wanted, desc="NIH Pancreas-CT", unit="case"):
        done = _finished(out_dir, case_id)
        if done is not None:
            report.skipped.append(case_id)
            continue
        try:
            convert_case(case_id, patients[case_id], labels_root, out_dir, series_rule)
        except InputError as e:
            logger.error("%s", e)
            report.failed[case_id] = str(e)
        else:
            report.converted.append(case_id)

    marker_dir = out_dir / MARKER_DIR
    markers = sorted(marker_dir.glob("*.json")) if marker_dir.is_dir() else []
    for marker in (m for m in markers if not m.name.startswith(".")):
        record = _finished(out_dir, marker.stem)
        if record is not None:
            report.cases[record.case_id] = record
    write_json(report.to_json(), out_dir / REPORT_FILE)
    logger.info("NIH: %d converted, %d already done, %d failed, %d labels reoriented; report %s",
                len(report.converted), len(report.skipped), len(report.failed), len(report.flipped),
                out_dir / REPORT_FILE)
    if report.failed:
        raise InputError(f"{len(report.failed)} NIH case(s) could not be converted (details in "
                         f"{out_dir / REPORT_FILE}):\n" + "\n".join(
                             f"  {c}: {m}" for c, m in sorted(report.failed.items())))
    write_json(dataset_json(len(report.cases)), out_dir / "dataset.json")
    return report

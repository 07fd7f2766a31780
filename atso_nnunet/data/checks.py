"""Input checks on raw datasets, run before any expensive work.

:func:`check_raw_dataset` looks at an experiment dataset (see :mod:`atso_nnunet.data.layout`) or a
plain nnU-Net raw dataset and raises *one* :class:`~atso_nnunet.errors.InputError` that lists every
problem it found, each naming the case, the file and what to do, so a user fixes everything in one
round instead of meeting the problems one crash at a time. Headers are read first
(``sitk.ImageFileReader.ReadImageInformation``); with ``check_voxels`` (the default, and what the
driver's pre-flight uses) every image's voxel data is then read once more, as a stream:

* a truncated or corrupt file is an error: SimpleITK reads a truncated ``.nii.gz`` without any
  error and fills the missing part with zeros, so the gzip stream is checked to its end-of-stream
  marker and CRC, and the voxel bytes are counted against the header's size;
* NaN or infinite voxels (float images) are an error;
* a labeled case whose label has no foreground at all is a *warning* (logged, and listed in the
  summary): nnU-Net trains on it as an all-background case, which is rarely meant.

The cost is one decompression of every file (figures in ``docs/benchmarks.md``);
``check_voxels=False`` (``atso_nnunet_check --headers-only``) skips it.

:func:`check_label_file` checks one label file (dimension, geometry, values) and returns its
problems without raising, so callers (e.g. the pseudo-label guards) can collect the problems of a
whole folder and raise them together with :func:`raise_if_problems`.
"""
from __future__ import annotations

import gzip
import logging
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np
import SimpleITK as sitk

from atso_nnunet.data import layout
from atso_nnunet.data.materialize import read_dataset_json
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry

logger = logging.getLogger(__name__)

ROLES = tuple(layout.ROLE_DIRS)
REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")


@dataclass(frozen=True)
class RawDatasetSummary:
    """What :func:`check_raw_dataset` found in a dataset that passed.

    Attributes:
        dataset_dir: the dataset folder.
        cases: number of cases per checked role (``labeled``, ``reference``, ``test``).
        with_labels: number of those cases that have a ground-truth file.
        labels: the dataset's ``labels`` (name -> value).
        channels: the dataset's ``channel_names``.
        warnings: findings that do not stop a run (e.g. a labeled case without foreground),
            each naming the case and the file; also logged.
    """

    dataset_dir: Path
    cases: Dict[str, int]
    with_labels: Dict[str, int]
    labels: Dict[str, object] = field(default_factory=dict)
    channels: Dict[str, str] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line per role, e.g. ``labeled: 3 cases (imagesTr), 3 with labels``, then the warnings."""
        lines = [f"{self.dataset_dir}: OK" + (f" with {len(self.warnings)} warning(s)" if self.warnings else "")]
        for role, n in self.cases.items():
            lines.append(f"  {role}: {n} case(s) in {layout.ROLE_DIRS[role]}, {self.with_labels[role]} with labels")
        lines.append(f"  channels: {self.channels}")
        lines.append(f"  labels: {self.labels}")
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Header:
    """What ``ReadImageInformation`` tells about a file."""

    dimension: int
    components: int
    size: Tuple[int, ...]
    geometry: Optional[Geometry]      # None unless the image is 3D
    nifti: Optional["_NiftiLayout"] = None   # where the voxels lie, for NIfTI files


@dataclass(frozen=True)
class _NiftiLayout:
    """Where a NIfTI file keeps its voxels (from the header SimpleITK read)."""

    vox_offset: int
    n_bytes: int                       # voxel bytes the header promises
    float_bytes: Optional[int]         # 4 / 8 for float32 / float64 data, None otherwise


# NIfTI datatype codes of float data -> bytes per value (NaN / Inf are possible only there)
_NIFTI_FLOATS = {16: 4, 64: 8}
_CHUNK = 1 << 23


def _read_header(path: Path) -> Tuple[Optional[_Header], Optional[str]]:
    """Read an image header; returns (header, None) or (None, problem)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        return None, f"{_display(path)}: SimpleITK cannot read this file ({reason}); re-export or replace it"
    dim = reader.GetDimension()
    geometry = None
    if dim == 3:
        geometry = Geometry(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                            tuple(reader.GetDirection()))
    return _Header(dim, reader.GetNumberOfComponents(), tuple(reader.GetSize()), geometry,
                   _nifti_layout(reader)), None


def _display(path: Path) -> str:
    """A file as messages name it: a link (experiment datasets link their sources) also names its target."""
    return f"{path} (-> {path.resolve()})" if path.is_symlink() else str(path)


def _nifti_layout(reader: sitk.ImageFileReader) -> Optional[_NiftiLayout]:
    keys = set(reader.GetMetaDataKeys())
    if not {"vox_offset", "bitpix", "datatype", "dim[0]"} <= keys:
        return None
    try:
        n_dims = int(reader.GetMetaData("dim[0]"))
        n_voxels = int(np.prod([max(int(reader.GetMetaData(f"dim[{i}]")), 1) for i in range(1, n_dims + 1)]))
        bitpix, datatype = int(reader.GetMetaData("bitpix")), int(reader.GetMetaData("datatype"))
        vox_offset = int(float(reader.GetMetaData("vox_offset")))
    except (RuntimeError, ValueError):
        return None
    return _NiftiLayout(vox_offset, n_voxels * bitpix // 8, _NIFTI_FLOATS.get(datatype))


def _voxel_problem(path: Path, header: _Header) -> Optional[str]:
    """Read a file's voxels: truncated / corrupt data and NaN / Inf values are problems."""
    if header.nifti is not None:
        return _nifti_voxel_problem(path, header.nifti)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1]
        return f"{_display(path)}: cannot read the voxels ({reason}); re-export or replace the file"
    # The view borrows the image's buffer: keep ``image`` alive while it is used.
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        return _non_finite_problem(path, int(np.count_nonzero(~np.isfinite(array))), array.dtype)
    return None


def _non_finite_problem(path: Path, count: int, dtype) -> Optional[str]:
    if not count:
        return None
    return (f"{_display(path)}: {count} voxel(s) are NaN or infinite ({np.dtype(dtype).name} data); replace them "
            "(e.g. with the image's minimum) and save the image again")


def _nifti_voxel_problem(path: Path, nifti: _NiftiLayout) -> Optional[str]:
    """Stream a NIfTI file once: complete gzip stream (CRC), every voxel byte present, finite floats.

    SimpleITK reads a truncated ``.nii.gz`` without an error and returns zeros for what is
    missing; reading the stream to its end is how the truncation shows.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    dtype = None
    position, voxel_bytes, non_finite = 0, 0, 0
    carry = b""
    try:
        with opener(path, "rb") as f:
            while True:
                chunk = f.read1(_CHUNK)
                if not chunk:
                    break
                if dtype is None and nifti.float_bytes and position == 0:
                    sizeof_hdr = int.from_bytes(chunk[:4], "little")
                    order = "<" if sizeof_hdr in (348, 540) else ">"
                    dtype = np.dtype(f"{order}f{nifti.float_bytes}")
                start = max(nifti.vox_offset - position, 0)
                position += len(chunk)
                if start >= len(chunk):
                    continue
                data = chunk[start:]
                voxel_bytes += len(data)
                if dtype is not None:
                    data = carry + data
                    usable = len(data) - len(data) % dtype.itemsize
                    values = np.frombuffer(data[:usable], dtype)
                    non_finite += int(np.count_nonzero(~np.isfinite(values)))
                    carry = data[usable:]
    except EOFError:
        return (f"{_display(path)}: the file is truncated (the compressed stream ends after "
                f"{_share(voxel_bytes, nifti)} of the voxel data; SimpleITK would read the rest as zeros); copy or "
                "export the file again")
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        return f"{_display(path)}: the file is corrupt ({e}); copy or export the file again"
    if voxel_bytes < nifti.n_bytes:
        return (f"{_display(path)}: the file is truncated (it holds {_share(voxel_bytes, nifti)} of the voxel data "
                "its header promises; SimpleITK would read the rest as zeros); copy or export the file again")
    return _non_finite_problem(path, non_finite, dtype) if dtype is not None else None


def _share(voxel_bytes: int, nifti: _NiftiLayout) -> str:
    return f"{min(voxel_bytes, nifti.n_bytes) / max(nifti.n_bytes, 1):.0%}"


def _dimension_problem(path: Path, header: _Header) -> Optional[str]:
    if header.dimension != 3:
        kind = f"{header.dimension}D"
        return (f"{_display(path)}: {kind} image of size {header.size}, expected one 3D volume; "
                + ("split the 4D file into one 3D file per volume/channel" if header.dimension > 3
                   else "stack the 2D slices into one 3D volume"))
    if header.components != 1:
        return (f"{_display(path)}: {header.components} components per voxel (e.g. RGB / vector image), expected a "
                "single scalar channel; store each channel as its own _000X file")
    return None


def check_label_file(path: os.PathLike, allowed_values: Iterable[int],
                     reference_geometry: Optional[Geometry] = None, check_voxels: bool = False) -> List[str]:
    """Check one label file: readable, 3D, same geometry as its image, values allowed.

    Args:
        path: the label file.
        allowed_values: the label values the dataset defines (from dataset.json ``labels``).
        reference_geometry: geometry the label must have (its image's); None skips the check.
        check_voxels: also stream the file's voxel data (truncated or corrupt files).

    Returns:
        The problems found, each naming the file and what to do; empty when the file is fine.
        Never raises for a bad file (collect problems and use :func:`raise_if_problems`).
    """
    return _label_findings(Path(path), allowed_values, reference_geometry, check_voxels)[0]


def _label_findings(path: Path, allowed_values: Iterable[int], reference_geometry: Optional[Geometry],
                    check_voxels: bool) -> Tuple[List[str], Optional[List[float]]]:
    """Problems of a label file and its distinct values (None when they could not be read)."""
    if not path.is_file():
        return [f"{_display(path)}: label file not found" + (" (broken link)" if path.is_symlink() else "")], None
    header, problem = _read_header(path)
    if problem:
        return [problem], None
    problem = _dimension_problem(path, header)
    if problem:
        return [problem], None
    problems = []
    if reference_geometry is not None:
        diff = reference_geometry.describe_difference(header.geometry)
        if diff:
            problems.append(f"{_display(path)}: geometry differs from its image ({diff}, image vs label); resample the "
                            "label onto the image grid or fix its header")
    if check_voxels and header.nifti is not None:
        problem = _nifti_voxel_problem(path, header.nifti)
        if problem:
            return problems + [problem], None
    try:
        image = sitk.ReadImage(str(path))
        # The view borrows the image's buffer: keep ``image`` alive while it is used.
        values = _unique_values(sitk.GetArrayViewFromImage(image))
        del image
    except RuntimeError as e:
        return problems + [f"{_display(path)}: cannot read the label voxels ({str(e).strip().splitlines()[-1]})"], None
    allowed = {int(v) for v in allowed_values}
    bad = [v for v in values if not float(v).is_integer() or int(v) not in allowed]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
        problems.append(f"{_display(path)}: label values {shown} are not in dataset.json labels {sorted(allowed)}; "
                        "map them to the dataset's labels or add them to dataset.json")
    return problems, values


def _unique_values(array: np.ndarray) -> List[float]:
    """Distinct values of a label array; bincount for small integer ranges (much faster than unique)."""
    if array.size == 0:
        return []
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if hi - lo <= 1 << 16:
            counts = np.bincount((array.astype(np.int64, copy=False) - lo).ravel(), minlength=hi - lo + 1)
            return [float(v + lo) for v in np.nonzero(counts)[0]]
    return [float(v) for v in np.unique(array)]


def raise_if_problems(problems: Sequence[str], what: os.PathLike | str, hint: str = "") -> None:
    """Raise one InputError listing ``problems`` (nothing if empty).

    Args:
        problems: messages, each naming the case / file and what to do.
        what: the dataset or folder they belong to (first line of the message).
        hint: appended to the first line, e.g. how to re-run the check.
    """
    if problems:
        head = f"{what}: {len(problems)} problem(s) found" + (f"; {hint}" if hint else "")
        raise InputError(head + "\n  - " + "\n  - ".join(problems))


def _label_values(labels: object) -> Tuple[Optional[Set[int]], List[str]]:
    """Allowed values from dataset.json ``labels`` (region-based lists flattened) and problems."""
    if not isinstance(labels, dict) or not labels:
        return None, ["dataset.json 'labels' must be a non-empty object like {\"background\": 0, \"pancreas\": 1}"]
    values, problems = set(), []
    for name, value in labels.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for v in items:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                problems.append(f"dataset.json label {name!r} has value {value!r}; label values must be integers >= 0")
            else:
                values.add(v)
    if labels.get("background") != 0:
        problems.append("dataset.json 'labels' must map \"background\" to 0 (nnU-Net requires it)")
    return values, problems


def _scan_images(folder: Path, ending: str, n_channels: int, role: str,
                 declared_by: str = "dataset.json channel_names") -> Tuple[Dict[str, Dict[int, Path]], List[str]]:
    """Images of a folder grouped by case -> channel -> path, and problems with their names.

    ``declared_by`` says where ``n_channels`` comes from, for the messages.
    """
    cases: Dict[str, Dict[int, Path]] = {}
    problems = []
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(ending) + "$")
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(ending):
            continue
        m = pattern.match(path.name)
        if not m:
            problems.append(f"{role}: {path}: file name does not follow <case>_<XXXX>{ending} (XXXX = channel "
                            "index, e.g. _0000); rename it or move it out of the folder")
            continue
        cases.setdefault(m["case"], {})[int(m["channel"])] = path
    for case, channels in sorted(cases.items()):
        missing = [f"{case}_{c:04d}{ending}" for c in range(n_channels) if c not in channels]
        extra = [str(channels[c]) for c in sorted(channels) if c >= n_channels]
        if missing:
            problems.append(f"{role} case {case}: missing image file(s) {missing} in {folder} ({declared_by}: "
                            f"{n_channels} channel(s)); add them or remove the case's other files")
        if extra:
            problems.append(f"{role} case {case}: channel file(s) {extra} beyond the {n_channels} channel(s) of "
                            f"{declared_by}; remove them" + (" or declare the channels" if "dataset.json" in declared_by
                                                             else ""))
    return cases, problems


def check_images_to_predict(folder: os.PathLike, channel_names: Dict[str, str],
                            ending: str = layout.FILE_ENDING, check_voxels: bool = True) -> Dict[str, List[Path]]:
    """Check a folder of images to segment before any model runs; report every problem at once.

    Every ``<case>_<XXXX><ending>`` file must be readable, one 3D scalar volume with complete,
    finite voxel data; each case must have exactly the model's channels, on one grid. Other files
    ending in ``ending`` are problems (they would be skipped silently); files with other endings
    are ignored.

    Args:
        folder: the input folder (``atso_nnunet_segment -i``).
        channel_names: the model's ``channel_names`` (its ``dataset.json``).
        ending: the model's file ending.
        check_voxels: stream every file's voxel data (truncated files, NaN / Inf).

    Returns:
        ``{case: [channel 0 file, channel 1 file, ...]}`` in case order.

    Raises:
        InputError: listing every problem, each naming the file and what to do.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: input folder not found")
    n_channels = len(channel_names)
    declared_by = f"the model's channels {dict(channel_names)}"
    cases, problems = _scan_images(folder, ending, n_channels, "input", declared_by=declared_by)
    if not cases and not problems:
        raise InputError(f"{folder}: no <case>_0000{ending} images found; name each scan <case>_0000{ending} "
                         "(one file per channel: _0000, _0001, ...)")
    for case, files in sorted(cases.items()):
        problems += _check_case("input", case, {c: p for c, p in files.items() if c < n_channels}, None, None,
                                check_geometry=True, check_label_values=False, check_voxels=check_voxels)[0]
    raise_if_problems(problems, folder, hint="fix them and run the same command again; nothing was written")
    return {case: [files[c] for c in range(n_channels)] for case, files in sorted(cases.items())}


def check_raw_dataset(dataset_dir: os.PathLike, roles: Sequence[str] = ROLES, check_geometry: bool = True,
                      check_label_values: bool = True,
                      ground_truth_values: Iterable[int] = (), check_voxels: bool = True) -> RawDatasetSummary:
    """Check a raw dataset before planning, training or prediction; report every problem at once.

    Checks dataset.json (present, valid, required keys, labels with background 0); in each role's
    folders, images without labels (``labelsTr`` is required for ``imagesTr``) and labels without
    images, file names and channel files, ``numTraining``, the cases listed under ``"atso"``;
    per file: readable, 3D single-channel; per case: all channels and the label share one geometry
    (size, spacing, origin, direction); label values are among dataset.json's labels; with
    ``check_voxels``, every file's voxel data is complete and finite, and a labeled case whose
    label has no foreground is a warning.

    Args:
        dataset_dir: ``nnUNet_raw/DatasetXXX_Name``.
        roles: which sets to check: ``labeled`` (imagesTr/labelsTr), ``reference``
            (imagesRef/labelsRef), ``test`` (imagesTs/labelsTs). Folders of reference and test
            may be absent.
        check_geometry: compare image and label geometry.
        check_label_values: load label voxels and check their values (the slow part).
        ground_truth_values: further values allowed in the ground truth of the reference and test
            sets (``labelsRef``, ``labelsTs``), which is only scored: the keys of a plan's
            ``eval_label_map`` (MSD tumour = 2). Training labels must use dataset.json's labels.
        check_voxels: read every file's voxel data (see the module docstring; one decompression
            per file). Off: headers only, and truncated files go unnoticed.

    Returns:
        A :class:`RawDatasetSummary` when no problem was found; its ``warnings`` (also logged)
        name labeled cases without foreground.

    Raises:
        InputError: listing every problem, each naming the case, the file and what to do.
    """
    dataset_dir = Path(dataset_dir)
    bad_roles = [r for r in roles if r not in layout.ROLE_DIRS]
    if bad_roles or isinstance(roles, str):
        raise InputError(f"roles must be a list drawn from {list(ROLES)}, got {roles!r}")
    if not dataset_dir.is_dir():
        raise InputError(f"{dataset_dir}: dataset folder not found; check the path (or nnUNet_raw)")

    problems: List[str] = []
    try:
        dataset_json = read_dataset_json(dataset_dir)
    except InputError as e:
        dataset_json = {}
        problems.append(str(e))
    else:
        missing_keys = [k for k in REQUIRED_KEYS if k not in dataset_json
                        and not (k == "channel_names" and "modality" in dataset_json)]
        if missing_keys:
            problems.append(f"{dataset_dir / 'dataset.json'}: missing key(s) {missing_keys}; nnU-Net needs "
                            f"{list(REQUIRED_KEYS)}")

    ending = dataset_json.get("file_ending", layout.FILE_ENDING)
    if not isinstance(ending, str) or not ending.startswith("."):
        problems.append(f"dataset.json 'file_ending' must be a string like \".nii.gz\", got {ending!r}")
        ending = layout.FILE_ENDING
    channels = dataset_json.get("channel_names", dataset_json.get("modality", {"0": "CT"}))
    if not isinstance(channels, dict) or not channels:
        problems.append("dataset.json 'channel_names' must be a non-empty object like {\"0\": \"CT\"}, "
                        f"got {channels!r}")
        channels = {"0": "CT"}
    n_channels = len(channels)
    allowed: Optional[Set[int]] = None
    extra_gt = {int(v) for v in ground_truth_values}
    if "labels" in dataset_json:
        allowed, label_problems = _label_values(dataset_json["labels"])
        problems += label_problems
    atso = dataset_json.get("atso") if isinstance(dataset_json.get("atso"), dict) else {}

    counts: Dict[str, int] = {}
    with_labels: Dict[str, int] = {}
    warnings: List[str] = []
    for role in roles:
        image_dir = layout.ROLE_DIRS[role]
        label_dir = layout.IMAGE_TO_LABEL_DIR[image_dir]
        images_folder, labels_folder = dataset_dir / image_dir, dataset_dir / label_dir
        if not images_folder.is_dir():
            if role == "labeled":
                problems.append(f"{images_folder}: folder not found; the labeled cases must be in {image_dir}")
            counts[role], with_labels[role] = 0, 0
            if role != "labeled" and atso.get(role):
                problems.append(f"{role}: dataset.json 'atso' lists {len(atso[role])} case(s) but {images_folder} "
                                "does not exist; rebuild the experiment dataset")
            continue
        cases, scan_problems = _scan_images(images_folder, ending, n_channels, role)
        problems += scan_problems
        label_ids = set(layout.label_ids_in(labels_folder, ending=ending))
        counts[role] = len(cases)
        with_labels[role] = len(label_ids & set(cases))

        for case in sorted(label_ids - set(cases)):
            problems.append(f"{role} case {case}: label {labels_folder / (case + ending)} has no image "
                            f"{case}_0000{ending} in {images_folder}; add the image or remove the label")
        if role == "labeled":
            for case in sorted(set(cases) - label_ids):
                problems.append(f"labeled case {case}: image {images_folder / (case + '_0000' + ending)} has no label "
                                f"{labels_folder / (case + ending)}; add the label or move the case out of "
                                f"{image_dir} (unlabeled cases belong in {layout.IMAGES_REF})")
            num_training = dataset_json.get("numTraining")
            if "numTraining" in dataset_json and num_training != len(cases):
                problems.append(f"dataset.json numTraining is {num_training!r} but {images_folder} holds {len(cases)} "
                                "case(s); set numTraining to the number of labeled cases")
        elif isinstance(atso.get(role), list):
            listed = set(atso[role])
            absent = sorted(listed - set(cases))
            if absent:
                problems.append(f"{role}: case(s) {absent} listed in dataset.json 'atso' are missing from "
                                f"{images_folder}; add them or rebuild the experiment dataset")
            unlisted = sorted(set(cases) - listed)
            if unlisted:
                logger.warning("%s: %d case(s) in %s are not listed in dataset.json 'atso' %s and will be ignored: %s",
                               dataset_dir, len(unlisted), image_dir, role, unlisted[:10])

        for case, files in sorted(cases.items()):
            label = labels_folder / (case + ending)
            # Ground truth of R and E is only scored and may come from another dataset (MSD:
            # tumour = 2), mapped by the plan's eval_label_map: those values are allowed there.
            role_allowed = allowed if role == "labeled" or allowed is None else allowed | extra_gt
            case_problems, case_warnings = _check_case(role, case, files, label if case in label_ids else None,
                                                       role_allowed, check_geometry, check_label_values, check_voxels)
            problems += case_problems
            warnings += case_warnings

    for warning in warnings:
        logger.warning("%s", warning)
    raise_if_problems(problems, dataset_dir, hint=f"fix them and run `atso_nnunet_check {dataset_dir}` again")
    logger.info("%s: checked %s", dataset_dir, ", ".join(f"{n} {r}" for r, n in counts.items()))
    return RawDatasetSummary(dataset_dir, counts, with_labels, dict(dataset_json.get("labels", {})), dict(channels),
                             warnings)


def _check_case(role: str, case: str, files: Dict[int, Path], label: Optional[Path], allowed: Optional[Set[int]],
                check_geometry: bool, check_label_values: bool,
                check_voxels: bool = False) -> Tuple[List[str], List[str]]:
    """Problems and warnings of one case: readable 3D images, shared geometry, label geometry and values."""
    prefix = f"{role} case {case}: "
    problems: List[str] = []
    reference: Optional[Geometry] = None
    reference_path: Optional[Path] = None
    for channel in sorted(files):
        path = files[channel]
        header, problem = _read_header(path)
        problem = problem or _dimension_problem(path, header)
        if not problem and check_voxels:
            problem = _voxel_problem(path, header)
        if problem:
            problems.append(prefix + problem)
            continue
        if reference is None:
            reference, reference_path = header.geometry, path
        elif check_geometry:
            diff = reference.describe_difference(header.geometry)
            if diff:
                problems.append(prefix + f"{_display(path)}: geometry differs from {reference_path.name} ({diff}); "
                                "all channels of a case must share one grid")
    if label is None:
        return problems, []
    values = None
    if check_label_values and allowed is not None:
        label_problems, values = _label_findings(label, allowed, reference if check_geometry else None, check_voxels)
    else:
        header, problem = _read_header(label)
        problem = problem or _dimension_problem(label, header)
        if not problem and check_voxels:
            problem = _voxel_problem(label, header)
        label_problems = [problem] if problem else []
        if not problem and check_geometry and reference is not None:
            diff = reference.describe_difference(header.geometry)
            if diff:
                label_problems.append(f"{_display(label)}: geometry differs from its image ({diff}, image vs label); "
                                      "resample the label onto the image grid or fix its header")
    warnings = []
    if role == "labeled" and values is not None and not label_problems and not any(values):
        warnings.append(prefix + f"{label} has no foreground (every voxel is background); nnU-Net will train on "
                        "it as a case without the structure. Check that it is the right label file, or move the "
                        f"case to {layout.IMAGES_REF} as unlabeled")
    return problems + [prefix + p for p in label_problems], warnings

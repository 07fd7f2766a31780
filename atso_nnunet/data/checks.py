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

The cost is one decompression of every file (figures in ``docs/lab/benchmarks.md``; the file-level
checks are in :mod:`atso_nnunet.data.integrity`);
``check_voxels=False`` (``atso_nnunet_check --headers-only``) skips it.

:func:`check_label_file` checks one label file (dimension, geometry, values) and returns its
problems without raising, so callers (e.g. the pseudo-label guards) can collect the problems of a
whole folder and raise them together with :func:`raise_if_problems`.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple


from atso_nnunet.data import layout
from atso_nnunet.data.materialize import read_dataset_json
from atso_nnunet.data.integrity import dimension_problem, display_path, read_header, voxel_problem
from atso_nnunet.data.labels import label_findings, raise_if_problems
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
        mismatch = layout.ending_mismatch(images_folder, ending)
        if mismatch:   # every case is invisible: the counts below would blame numTraining or the case lists
            problems.append(mismatch)
            counts[role], with_labels[role] = 0, 0
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
        header, problem = read_header(path)
        problem = problem or dimension_problem(path, header)
        if not problem and check_voxels:
            problem = voxel_problem(path, header)
        if problem:
            problems.append(prefix + problem)
            continue
        if reference is None:
            reference, reference_path = header.geometry, path
        elif check_geometry:
            diff = reference.describe_difference(header.geometry)
            if diff:
                problems.append(prefix + f"{display_path(path)}: geometry differs from {reference_path.name} ({diff}); "
                                "all channels of a case must share one grid")
    if label is None:
        return problems, []
    values = None
    if check_label_values and allowed is not None:
        label_problems, values = label_findings(label, allowed, reference if check_geometry else None, check_voxels)
    else:
        header, problem = read_header(label)
        problem = problem or dimension_problem(label, header)
        if not problem and check_voxels:
            problem = voxel_problem(label, header)
        label_problems = [problem] if problem else []
        if not problem and check_geometry and reference is not None:
            diff = reference.describe_difference(header.geometry)
            if diff:
                label_problems.append(f"{display_path(label)}: geometry differs from its image ({diff}, image vs label); "
                                      "resample the label onto the image grid or fix its header")
    warnings = []
    if role == "labeled" and values is not None and not label_problems and not any(values):
        warnings.append(prefix + f"{label} has no foreground (every voxel is background); nnU-Net will train on "
                        "it as a case without the structure. Check that it is the right label file, or move the "
                        f"case to {layout.IMAGES_REF} as unlabeled")
    return problems + [prefix + p for p in label_problems], warnings

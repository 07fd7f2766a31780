"""Ingestion of a pseudo-label folder into the views' preprocessed spaces (cached).

A *pseudo-label folder* holds label maps in the ORIGINAL image geometry, one ``<case>.nii.gz``
per reference case, as the fusion step (or a team's own tool) writes them. To train on them, each
label map must live where nnU-Net's data loader expects targets: in the view's preprocessed space,
next to the image nnU-Net already preprocessed without labels
(:func:`atso_nnunet.nnunet.planning.unlabeled_folder`).

Ingestion applies to the label map exactly the geometry nnU-Net applied to the case's image in
``DefaultPreprocessor.run_case_npy`` (nnunetv2 2.8.1), with nnU-Net's own functions and in the same
order:

1. ``transpose_forward`` of the view's plans (label and image, and the spacing);
2. ``crop_to_nonzero`` on the raw image with the label: crop to the image's non-zero box (checked
   against ``bbox_used_for_cropping`` in the case's pkl) and label ``-1`` where the label is
   background outside the image's non-zero mask (this needs the raw image: the mask is taken
   before resampling);
3. the configuration's ``resampling_fn_seg`` from the case's (transposed) spacing to the target
   spacing (the new shape is checked against the preprocessed image);
4. fresh foreground sampling locations (``class_locations``) with the preprocessor's
   ``_sample_foreground_locations``, then ``modify_seg_fn``; saved as int16 like ``run_case_save``.

A label map equal to a labeled case's ground truth therefore ingests to nnU-Net's own
``<case>_seg.b2nd``, voxel for voxel (see ``tests/pseudolabels/test_pseudolabels.py``).

Cache layout (nothing is written inside nnU-Net's own data folders, images are never copied)::

    <nnUNet_preprocessed>/<Dataset>/atso_pseudolabels/<data_identifier>/<key>/
        <case>_seg.b2nd     ingested label map (int16, nnU-Net's blosc2 layout)
        <case>.pkl          the image's nnU-Net properties + fresh class_locations (written last)
        complete.json       marker, written after every case: cases, empty cases, source folder

``key`` is a short hash of the selected case names with their file sizes and modification times,
of the view's plans configuration and label definitions, and of the images' pkl files: one
generation of pseudo-labels is ingested once per view; a changed file gives a new key.

Entry points: :func:`ingest_pseudolabels` (one view, what the trainer calls) and
:func:`ingest_pseudolabels_views` (several views in one pass: checks once, reads every file once;
what the driver calls after fusion). Both run every check before any work.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union


from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.io import read_json, write_json
from atso_nnunet.paths import UNLABELED_DIR, NnUNetPaths

logger = logging.getLogger(__name__)

CACHE_DIR = "atso_pseudolabels"
MARKER = "complete.json"
_KEY_VERSION = 1


@dataclass(frozen=True)
class IngestResult:
    """Outcome of :func:`ingest_pseudolabels` for one view.

    Attributes:
        cache_dir: folder with ``<case>_seg.b2nd`` and ``<case>.pkl`` of every ingested case.
        cases: ingested case ids, sorted.
        empty_cases: the cases whose ingested label map has no foreground voxel (legal: the
            network sees them as all background), sorted.
        image_dir: folder of the cases' preprocessed images (``atso_unlabeled/<data_identifier>``).
        reused: True when the cache was complete already and nothing was computed.
    """

    cache_dir: Path
    cases: Tuple[str, ...]
    empty_cases: Tuple[str, ...]
    image_dir: Optional[Path] = None
    reused: bool = False


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def ingest_pseudolabels(paths: NnUNetPaths, dataset_name_or_id: Union[int, str], plans_identifier: str,
                        configuration: str, pseudo_label_dir: os.PathLike,
                        cases: Optional[Iterable[str]] = None, num_processes: int = 1) -> IngestResult:
    """Bring a folder of pseudo-labels into one view's preprocessed space (cached).

    Every check runs before any work; all problems are reported together. Reference images not yet
    preprocessed without labels for this view are preprocessed first
    (:func:`atso_nnunet.nnunet.planning.preprocess_unlabeled`); images already preprocessed are reused.
    For several views at once prefer :func:`ingest_pseudolabels_views` (reads each file once).

    Args:
        paths: nnU-Net folders (the raw dataset is needed for the images' non-zero masks).
        dataset_name_or_id: ``DatasetXXX_Name`` or its id.
        plans_identifier: the view's plans, e.g. ``ATSOPlans_axial``.
        configuration: nnU-Net configuration (``2d`` or ``3d_fullres``).
        pseudo_label_dir: folder of ``<case><file_ending>`` label maps in the original geometry.
        cases: the cases to ingest (default: every label file in the folder).
        num_processes: worker processes (1: in this process; spawned workers pay an nnU-Net import
            of a few seconds, worth it for many or large cases).

    Returns:
        The cache folder, the ingested cases and the empty ones.

    Raises:
        InputError: listing every problem, each naming case and file: a listed case without a
            pseudo-label file, a pseudo-label for a labeled (``imagesTr``) or test case
            (``imagesTs`` / dataset.json ``atso.test``), a case without a reference image, a
            label map whose geometry differs from its image, label values not in dataset.json.
    """
    return _ingest(paths, dataset_name_or_id, [plans_identifier], configuration, pseudo_label_dir, cases,
                   num_processes)[plans_identifier]


def ingest_pseudolabels_views(paths: NnUNetPaths, dataset_name_or_id: Union[int, str],
                              plans_identifiers: Sequence[str], configuration: str, pseudo_label_dir: os.PathLike,
                              cases: Optional[Iterable[str]] = None,
                              num_processes: int = 1) -> Dict[str, IngestResult]:
    """:func:`ingest_pseudolabels` for several views (plans) in one pass.

    The checks run once and every label map and image is read once for all views.

    Returns:
        plans identifier -> :class:`IngestResult`.
    """
    return _ingest(paths, dataset_name_or_id, list(plans_identifiers), configuration, pseudo_label_dir, cases,
                   num_processes)


def cache_root(paths: NnUNetPaths, dataset_name: str, data_identifier: str) -> Path:
    """``<nnUNet_preprocessed>/<Dataset>/atso_pseudolabels/<data_identifier>``."""
    return Path(paths.preprocessed) / dataset_name / CACHE_DIR / data_identifier


def read_marker(cache_dir: os.PathLike) -> Optional[dict]:
    """The completion marker of a cache folder, or None if the folder is incomplete."""
    return read_json(Path(cache_dir) / MARKER)


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------
@dataclass
class _View:
    """One view's (plans') inputs and cache location."""

    plans_identifier: str
    plans_file: Path
    plans: dict
    data_identifier: str
    properties_dir: Path
    cache_dir: Optional[Path] = None


def _ingest(paths: NnUNetPaths, dataset_name_or_id, plans_identifiers: List[str], configuration: str,
            pseudo_label_dir, cases, num_processes: int, allow_labeled: bool = False,
            image_folder: Optional[str] = None, properties_from_nnunet: bool = False) -> Dict[str, IngestResult]:
    """:func:`ingest_pseudolabels_views` with the knobs the exactness test needs.

    ``allow_labeled`` skips the refusal of labeled cases, ``image_folder`` names the raw images
    folder (default ``imagesRef``) and ``properties_from_nnunet`` takes the images' pkl/b2nd from
    nnU-Net's own data folder instead of ``atso_unlabeled/<data_identifier>``.
    """
    if not isinstance(num_processes, int) or num_processes < 1:
        raise InputError(f"num_processes must be a positive integer, got {num_processes!r}")
    if not plans_identifiers or len(set(plans_identifiers)) != len(plans_identifiers):
        raise InputError(f"plans identifiers must be given once each, got {plans_identifiers}")
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    name = _dataset_name(paths, dataset_name_or_id)
    pre_dir = Path(paths.preprocessed) / name
    raw_dir = Path(paths.raw) / name
    dataset_json_path = pre_dir / "dataset.json"
    required = [(pre_dir / f"{p}.json", "plans") for p in plans_identifiers]
    required += [(dataset_json_path, "dataset.json"), (raw_dir / "dataset.json", "raw dataset.json")]
    for f, what in required:
        if not f.is_file():
            raise InputError(f"{f}: {what} not found; plan and preprocess dataset {name} first")
    views = []
    for p in plans_identifiers:
        plans = json.loads((pre_dir / f"{p}.json").read_text())
        if configuration not in plans.get("configurations", {}):
            raise InputError(f"{pre_dir / f'{p}.json'}: no configuration {configuration!r} "
                             f"(available: {', '.join(plans.get('configurations', {}))})")
        identifier = PlansManager(plans).get_configuration(configuration).data_identifier
        properties_dir = pre_dir / (identifier if properties_from_nnunet else Path(UNLABELED_DIR) / identifier)
        views.append(_View(p, pre_dir / f"{p}.json", plans, identifier, properties_dir))
    dataset_json = json.loads(dataset_json_path.read_text())
    raw_json = json.loads((raw_dir / "dataset.json").read_text())
    ending = dataset_json.get("file_ending", layout.FILE_ENDING)
    image_folder = image_folder or layout.IMAGES_REF

    # -- cheap checks: files, roles (always, even when the cache is complete) --
    label_dir = Path(pseudo_label_dir)
    if not label_dir.is_dir():
        raise InputError(f"pseudo-label folder {label_dir} not found")
    in_folder = layout.label_ids_in(label_dir, ending)
    selected = sorted(set(in_folder if cases is None else cases))
    problems = _role_problems(raw_dir, raw_json, label_dir, ending, in_folder, selected, allow_labeled,
                              [pre_dir / v.data_identifier for v in views], image_folder)
    if not selected and not problems:
        raise _input_error(label_dir, [f"{label_dir}: no pseudo-label files (*{ending}) to ingest"])

    label_files = {c: label_dir / f"{c}{ending}" for c in selected}
    n_channels = len(dataset_json["channel_names"])
    image_files = {c: [str(layout.image_path(raw_dir, image_folder, c, ch, ending)) for ch in range(n_channels)]
                   for c in selected}
    results = {}
    for v in views:
        if not problems and all((v.properties_dir / f"{c}.pkl").is_file() for c in selected):
            v.cache_dir = cache_root(paths, name, v.data_identifier) / _cache_key(
                label_files, v.plans, configuration, dataset_json, v.properties_dir)
            marker = read_marker(v.cache_dir)
            if marker is not None and marker.get("cases") == selected:
                logger.info("%s %s: pseudo-labels of %s already ingested in %s", v.plans_identifier, configuration,
                            label_dir, v.cache_dir)
                results[v.plans_identifier] = IngestResult(v.cache_dir, tuple(selected),
                                                           tuple(marker.get("empty_cases", [])), v.properties_dir,
                                                           True)
    todo_views = [v for v in views if v.plans_identifier not in results]
    if not todo_views:
        return results

    # -- content checks: geometry and label values (read every label map once), reported together
    # with the problems above --
    allowed = _allowed_label_values(dataset_json)
    flagged = {c for c in selected if any(f"case {c}:" in p for p in problems)}
    args = [(c, str(label_files[c]), image_files[c][0], allowed) for c in selected if c not in flagged]
    problems += [p for ps in _map(_check_case, args, num_processes) for p in ps]
    if problems:
        raise _input_error(label_dir, problems)

    # -- work --
    t0 = time.monotonic()
    for v in todo_views:
        missing = {c: image_files[c] for c in selected if not (v.properties_dir / f"{c}.pkl").is_file()}
        if missing:
            _preprocess_images(paths, name, v.plans_identifier, configuration, missing, v.properties_dir,
                               num_processes)
        v.cache_dir = cache_root(paths, name, v.data_identifier) / _cache_key(
            label_files, v.plans, configuration, dataset_json, v.properties_dir)
        v.cache_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for c in selected:
        targets = [_Target(str(v.plans_file), configuration, str(dataset_json_path), str(v.properties_dir),
                           str(v.cache_dir)) for v in todo_views if not (v.cache_dir / f"{c}.pkl").is_file()]
        if targets:
            jobs.append((c, str(label_files[c]), image_files[c], targets))
    _map(_ingest_case, jobs, num_processes)
    for v in todo_views:
        empty = sorted(c for c in selected if _is_empty(v.cache_dir / f"{c}.pkl"))
        write_json({"cases": selected, "empty_cases": empty, "pseudo_label_dir": str(label_dir.resolve()),
                    "plans_identifier": v.plans_identifier, "configuration": configuration,
                    "data_identifier": v.data_identifier, "image_dir": str(v.properties_dir),
                    "key": v.cache_dir.name}, v.cache_dir / MARKER)
        results[v.plans_identifier] = IngestResult(v.cache_dir, tuple(selected), tuple(empty), v.properties_dir,
                                                   False)
        logger.info("%s %s: ingested %d pseudo-label(s) (%d empty) from %s into %s", v.plans_identifier,
                    configuration, len(selected), len(empty), label_dir, v.cache_dir)
    logger.info("ingestion of %d case(s) into %d view(s) took %.1f s", len(selected), len(todo_views),
                time.monotonic() - t0)
    return results


def _dataset_name(paths: NnUNetPaths, dataset_name_or_id) -> str:
    if isinstance(dataset_name_or_id, str) and dataset_name_or_id.startswith("Dataset"):
        return dataset_name_or_id
    try:
        dataset_id = int(dataset_name_or_id)
    except (TypeError, ValueError) as e:
        raise InputError(f"dataset {dataset_name_or_id!r}: give DatasetXXX_Name or an integer id") from e
    prefix = layout.dataset_prefix(dataset_id)
    found = sorted({p.name for root in (paths.raw, paths.preprocessed) if Path(root).is_dir()
                    for p in Path(root).glob(prefix + "*") if p.is_dir()})
    if len(found) != 1:
        raise InputError(f"expected one dataset {prefix}* in {paths.raw} / {paths.preprocessed}, found {found or 'none'}")
    return found[0]


def _role_problems(raw_dir: Path, raw_json: dict, label_dir: Path, ending: str, in_folder: Sequence[str],
                   selected: Sequence[str], allow_labeled: bool, nnunet_data_dirs: Sequence[Path],
                   image_folder: str) -> List[str]:
    """Missing files and cases that must never carry pseudo-labels (labeled, test)."""
    problems = []
    labeled = set(layout.case_ids_in(raw_dir / layout.IMAGES_TR, ending))
    for d in nnunet_data_dirs:  # nnU-Net's own training cases, even if the raw images moved
        labeled |= {p.name[: -len(".pkl")] for p in Path(d).glob("*.pkl")}
    test = set(layout.case_ids_in(raw_dir / layout.IMAGES_TS, ending)) | set(raw_json.get("atso", {}).get("test", []))
    for c in sorted(set(in_folder) | set(selected)):
        f = label_dir / f"{c}{ending}"
        if c in test:
            problems.append(f"case {c}: {f} is a pseudo-label for a TEST case; test cases are never trained on. "
                            "Remove the file (the pseudo-labelling step must not predict the test set into this folder)")
        elif c in labeled and not allow_labeled:
            problems.append(f"case {c}: {f} is a pseudo-label for a LABELED case (imagesTr); its ground truth is "
                            "used already. Remove the file")
    for c in selected:
        f = label_dir / f"{c}{ending}"
        image = layout.image_path(raw_dir, image_folder, c, 0, ending)
        if not f.is_file():
            problems.append(f"case {c}: no pseudo-label file {f}")
        elif c in test or (c in labeled and not allow_labeled):
            continue  # reported above
        elif not image.is_file():
            problems.append(f"case {c}: {f} has no image {image}; pseudo-labels are for reference cases "
                            f"({image_folder})")
    return problems


def _input_error(label_dir: Path, problems: List[str]) -> InputError:
    return InputError(f"pseudo-label folder {label_dir}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


def _allowed_label_values(dataset_json: dict) -> Tuple[int, ...]:
    values = set()
    for v in dataset_json["labels"].values():
        values.update(int(i) for i in (v if isinstance(v, (list, tuple)) else [v]))
    return tuple(sorted(values))


def _cache_key(label_files: Dict[str, Path], plans: dict, configuration: str, dataset_json: dict,
               properties_dir: Path) -> str:
    """Short hash of the inputs that determine the ingested files (cheap: file stats, no content)."""
    def stat(p: Path):
        s = p.stat() if p.is_file() else None
        return [s.st_size, s.st_mtime_ns] if s else None

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cm = PlansManager(plans).get_configuration(configuration)
    blob = {
        "version": _KEY_VERSION,
        "cases": [[c, stat(f), stat(properties_dir / f"{c}.pkl")] for c, f in sorted(label_files.items())],
        "transpose_forward": list(plans["transpose_forward"]),
        "configuration": cm.configuration,
        "labels": dataset_json["labels"],
        "regions_class_order": dataset_json.get("regions_class_order"),
    }
    return hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _map(fn, args: List[tuple], num_processes: int) -> list:
    if num_processes <= 1 or len(args) <= 1:
        return [fn(*a) for a in args]
    with ProcessPoolExecutor(min(num_processes, len(args)), mp_context=get_context("spawn")) as pool:
        return [f.result() for f in [pool.submit(fn, *a) for a in args]]


def _preprocess_images(paths: NnUNetPaths, name: str, plans_identifier: str, configuration: str,
                       cases: Dict[str, List[str]], properties_dir: Path, num_processes: int) -> None:
    """Preprocess reference images without labels (once) with atso_nnunet.nnunet.planning."""
    from atso_nnunet.nnunet import planning

    expected = planning.unlabeled_folder(paths, name, plans_identifier, configuration)
    if Path(expected) != properties_dir:
        raise InputError(f"images of {', '.join(sorted(cases))} are not preprocessed in {properties_dir}")
    logger.info("%s %s: preprocessing %d reference image(s) without labels first", plans_identifier,
                configuration, len(cases))
    planning.preprocess_unlabeled(paths, int(name[len("Dataset"):].split("_")[0]), plans_identifier,
                                  configuration, cases, num_processes=num_processes)


from atso_nnunet.pseudolabels.ingest_case import (  # noqa: E402  (the per-case work)
    _check_case, _ingest_case, _is_empty, _Target)

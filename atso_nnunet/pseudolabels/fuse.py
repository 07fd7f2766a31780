"""Fusion of per-view (or per-model) predictions of the same cases.

Tri-view 2D segmentation predicts every case once per view (axial, coronal, sagittal) and fuses
the three label maps voxel by voxel. Two rules are provided:

* **majority vote** (:func:`majority_vote`, ``method="vote"``): each voter gives one vote per voxel
  to its predicted class; the class with most votes wins. Ties (possible with an even number of
  voters, e.g. 3 views x 2 half-models = 6 votes, or with 3 voters and 3 or more classes) are
  broken by ``tie_break``:

  - ``"lowest"``: the lowest class id among the tied classes wins. For a binary task this is
    background, i.e. a conservative mask (a voxel is foreground only with a strict majority).
  - ``"probability"``: the tied class with the highest *summed* softmax probability over all
    voters wins (probabilities are required); classes with equal sums fall back to ``"lowest"``.
  - ``"auto"`` (default): ``"probability"`` when probabilities are available, else ``"lowest"``
    with a warning that counts the ties resolved so (never silently by class order).

  Probabilities are only read when a tie actually occurs, so with 3 voters and 2 classes (where
  ties cannot happen) the ``.npz`` files are never opened.
* **mean probability** (:func:`mean_probability`, ``method="mean"``): argmax of the voxel-wise mean
  of the voters' softmax probabilities (what ``nnUNetv2_ensemble`` does); exact ties in the mean
  go to the lowest class id.

Array conventions: label maps are integer arrays of identical spatial shape, (z, y, x) for volumes
as read by SimpleITK, values in ``[0, num_classes)``. Probability maps are float arrays of shape
(C, z, y, x) (class first), as nnU-Net's ``save_probabilities`` writes them: in nnunetv2 2.8
``convert_predicted_logits_to_segmentation_with_correct_shape`` transposes the probabilities back
with ``[0] + [i + 1 for i in transpose_backward]`` and re-inserts the crop, so ``<case>.npz``
(key ``probabilities``) is voxel-aligned with ``<case>.nii.gz`` in the original array order,
whatever the view's ``transpose_forward`` was.

:func:`fuse_folders` applies a rule to folders of predictions case by case: at any time it holds
the vote counts (C small integer volumes), the input being added and, for ties or ``"mean"``, one
C-channel sum plus the input being added.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from atso_nnunet.data.layout import FILE_ENDING
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, read_array, write_array

logger = logging.getLogger(__name__)

PROBABILITIES_ENDING = ".npz"
PROBABILITIES_KEY = "probabilities"


from atso_nnunet.pseudolabels.vote import (  # noqa: E402  (the rules on arrays)
    METHODS, _break_ties, _check_tie_break, _label_dtype, _VoteCounter, mean_probability, tie_counts)


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------

def _read_geometry(path: Path) -> Geometry:
    """Geometry of an image file without reading its voxels."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: reference image not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(f"{path}: SimpleITK cannot read this file "
                         f"({str(e).strip().splitlines()[-1]})") from e
    if reader.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3D reference image, got {reader.GetDimension()}D")
    return Geometry(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                    tuple(reader.GetDirection()))


def _cases_in(folder: Path, ending: str) -> List[str]:
    return sorted(p.name[: -len(ending)] for p in folder.iterdir()
                  if p.name.endswith(ending) and not p.name.startswith(".") and p.is_file())


def _load_probabilities(path: Path) -> np.ndarray:
    try:
        with np.load(path) as npz:
            if PROBABILITIES_KEY not in npz.files:
                raise InputError(f"{path}: no '{PROBABILITIES_KEY}' array (keys: {', '.join(npz.files)}); "
                                 "expected an nnU-Net --save_probabilities output")
            return npz[PROBABILITIES_KEY]
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read probabilities ({e})") from e


def _resolve_cases(inputs: Sequence[Path], ending: str, cases: Optional[Sequence[str]]) -> List[str]:
    present = {folder: set(_cases_in(folder, ending)) for folder in inputs}
    if cases is None:
        cases = sorted(set().union(*present.values()))
    missing = [(case, folder) for case in cases for folder in inputs if case not in present[folder]]
    if missing:
        shown = "; ".join(f"{case} missing in {folder}" for case, folder in missing[:20])
        more = f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""
        raise InputError(f"cannot fuse: every input folder must hold <case>{ending} for every case: "
                         f"{shown}{more}. Predict the missing cases or pass cases=[...]")
    return list(cases)


def _num_classes_from_dataset_json(folder: Path) -> Optional[int]:
    """Number of classes from the ``dataset.json`` nnU-Net writes into a prediction folder."""
    path = folder / "dataset.json"
    if not path.is_file():
        return None
    try:
        labels = json.loads(path.read_text(encoding="utf-8")).get("labels", {})
        values = [v for v in labels.values() if isinstance(v, int)]
    except (ValueError, AttributeError):
        return None
    if not values or len(values) != len(labels):
        return None  # region-based labels (lists) cannot be voted on as classes
    return max(values) + 1


def _check_same_geometry(case: str, first: Path, first_geometry: Geometry, other: Path,
                         other_geometry: Geometry) -> None:
    if not first_geometry.matches(other_geometry):
        raise InputError(f"case {case}: {other} and {first} differ in geometry "
                         f"({first_geometry.describe_difference(other_geometry)}); predictions to fuse "
                         "must be voxel-aligned in the original image space")


def _fuse_vote(case: str, inputs: Sequence[Path], num_classes: Optional[int],
               tie_break: str) -> Tuple[np.ndarray, Geometry, Tuple[int, int]]:
    """The fused label map, its geometry and (tied voxels, three-way or more) resolved by class order."""
    files = [folder / f"{case}{FILE_ENDING}" for folder in inputs]
    counter = _VoteCounter(num_classes)
    geometries: List[Geometry] = []
    for f in files:
        array, geometry = read_array(f)
        geometries.append(geometry)
        _check_same_geometry(case, files[0], geometries[0], f, geometry)
        try:
            counter.add(array, name=str(f))
        except ValueError as e:
            raise InputError(f"case {case}: {e}") from e
        del array
    fused, tie = counter.winners()
    n_ties = int(tie.sum())
    if n_ties:
        prob_files = [folder / f"{case}{PROBABILITIES_ENDING}" for folder in inputs]
        have_probabilities = all(p.is_file() for p in prob_files)
        if tie_break == "probability" and not have_probabilities:
            missing = [str(p) for p in prob_files if not p.is_file()]
            raise InputError(f"case {case}: {n_ties} tied voxel(s) and tie_break='probability', but "
                             f"probabilities are missing: {', '.join(missing)}. Predict with "
                             "save_probabilities=True or use tie_break='lowest'")
        if tie_break != "lowest" and have_probabilities:
            try:
                fused = _break_ties(counter.counts, fused, tie, (_load_probabilities(p) for p in prob_files))
            except ValueError as e:
                raise InputError(f"case {case}: {e}") from e
            logger.debug("case %s: %d tied voxel(s) resolved by summed probability", case, n_ties)
        else:
            logger.debug("case %s: %d tied voxel(s) resolved to the lowest class id", case, n_ties)
            return (fused.astype(_label_dtype(counter.counts.shape[0])), geometries[0],
                    tie_counts(counter.counts, tie))
    return fused.astype(_label_dtype(counter.counts.shape[0])), geometries[0], (0, 0)


def _probability_stream(case: str, inputs: Sequence[Path], num_classes: Optional[int],
                        reference: Optional[Geometry]) -> Tuple[Iterator[np.ndarray], Geometry]:
    """The case's probability maps, checked against the output geometry, one at a time."""
    files = [folder / f"{case}{PROBABILITIES_ENDING}" for folder in inputs]
    if reference is None:
        label_file = inputs[0] / f"{case}{FILE_ENDING}"
        if not label_file.is_file():
            raise InputError(f"case {case}: method='mean' needs the output geometry: give a reference "
                             f"image or keep nnU-Net's label map {label_file} next to {files[0]}")
        reference = _read_geometry(label_file)
    expected = tuple(reversed(reference.size))

    def stream() -> Iterator[np.ndarray]:
        for f in files:
            prob = _load_probabilities(f)
            if prob.ndim != 4 or prob.shape[1:] != expected:
                raise InputError(f"case {case}: {f} holds probabilities of shape {prob.shape}, expected "
                                 f"(C, {', '.join(map(str, expected))}) to match the image (z, y, x)")
            if num_classes is not None and prob.shape[0] != num_classes:
                raise InputError(f"case {case}: {f} has {prob.shape[0]} classes, expected {num_classes}")
            yield prob

    return stream(), reference


def mean_foreground_probability(case: str, inputs: Sequence[Path],
                                reference: Optional[Geometry] = None) -> Tuple[np.ndarray, Geometry]:
    """The voxel-wise mean over ``inputs`` of a binary task's foreground probability (class 1), float32."""
    stream, reference = _probability_stream(case, inputs, 2, reference)
    total, n = None, 0
    for n, prob in enumerate(stream, start=1):
        total = prob[1].astype(np.float32) if total is None else total + prob[1]
    return total / n, reference


def _fuse_mean(case: str, inputs: Sequence[Path], num_classes: Optional[int],
               reference: Optional[Geometry], foreground_threshold: Optional[float] = None) -> Tuple[np.ndarray, Geometry]:
    if foreground_threshold is not None:
        p, reference = mean_foreground_probability(case, inputs, reference)
        return (p > foreground_threshold).astype(np.uint8), reference
    stream, reference = _probability_stream(case, inputs, num_classes, reference)
    try:
        fused = mean_probability(stream)
    except ValueError as e:
        raise InputError(f"case {case}: {e}") from e
    return fused, reference


def fuse_folders(inputs: Sequence[Path], output_dir: Path, method: str = "vote",
                 cases: Optional[Sequence[str]] = None,
                 reference_images: Optional[Mapping[str, Path]] = None,
                 num_classes: Optional[int] = None, tie_break: str = "auto",
                 skip_existing: bool = False, progress: bool = True,
                 foreground_threshold: Optional[float] = None) -> List[Path]:
    """Fuse folders of predictions (one folder per view or model) case by case.

    Each input folder holds nnU-Net prediction outputs: ``<case>.nii.gz`` label maps and, for
    ``method="mean"`` or probability tie-breaking, ``<case>.npz`` probabilities (key
    ``probabilities``, shape (C, z, y, x), see the module docstring). Cases are processed one at
    a time; each fused ``<case>.nii.gz`` is written atomically.

    The output geometry (size, spacing, origin, direction) is exactly that of
    ``reference_images[case]`` when given, else that of the first input's ``<case>.nii.gz``.
    All inputs of a case, and the reference image, must agree in geometry
    (:meth:`Geometry.matches`).

    Args:
        inputs: prediction folders, at least one.
        output_dir: folder for the fused ``<case>.nii.gz`` (created).
        method: ``"vote"`` (:func:`majority_vote` of the label maps) or ``"mean"``
            (:func:`mean_probability` of the ``.npz`` probabilities).
        cases: case ids to fuse; default every case found in any input folder. Every case must
            be present in every folder.
        reference_images: optional ``{case: image path}``; the fused file gets its geometry.
        num_classes: number of classes C including background. Default: from the
            ``dataset.json`` nnU-Net writes into a prediction folder, else the largest label seen
            plus one (``"vote"``), or the probability maps' C (``"mean"``).
        tie_break: for ``"vote"``: ``"auto"``, ``"lowest"`` or ``"probability"`` (module
            docstring). ``"auto"`` uses probabilities when every input has ``<case>.npz``.
        skip_existing: keep an existing ``output_dir/<case>.nii.gz`` instead of recomputing it.
        progress: show a tqdm progress bar.
        foreground_threshold: for ``"mean"`` of a binary task: foreground where the mean foreground
            probability exceeds it, instead of the argmax (which is 0.5;
            :mod:`atso_nnunet.pseudolabels.volume_prior` chooses it).

    Returns:
        The fused files of all requested cases, in case order (including those kept by
        ``skip_existing``).

    Raises:
        InputError: no inputs, a missing input folder, a case missing in some folder (the
            message names each case and folder), inputs of a case that differ in geometry or
            shape (names the case and files), labels outside ``[0, num_classes)``, or a missing
            reference image.
        ValueError: unknown ``method`` or ``tie_break``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; choose from {', '.join(METHODS)}")
    _check_tie_break(tie_break)
    if foreground_threshold is not None and (method != "mean" or (num_classes or 2) != 2):
        raise ValueError("foreground_threshold is for method='mean' of a binary task")
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise InputError("fuse_folders: no input folders given")
    missing_dirs = [str(p) for p in inputs if not p.is_dir()]
    if missing_dirs:
        raise InputError(f"prediction folder(s) not found: {', '.join(missing_dirs)}")
    output_dir = Path(output_dir)
    ending = FILE_ENDING if method == "vote" else PROBABILITIES_ENDING
    cases = _resolve_cases(inputs, ending, cases)
    if reference_images is not None:
        no_ref = [c for c in cases if c not in reference_images]
        if no_ref:
            raise InputError(f"no reference image given for case(s) {', '.join(no_ref)}")
    if num_classes is None:
        num_classes = _num_classes_from_dataset_json(inputs[0])
    logger.info("fusing %d case(s) from %d folder(s) by %s into %s", len(cases), len(inputs), method, output_dir)

    outputs: List[Path] = []
    skipped = 0
    by_order = {}   # case -> (tied voxels, three-way or more) resolved by class order
    for case in tqdm(cases, desc=f"fuse ({method})", unit="case", disable=not progress):
        out = output_dir / f"{case}{FILE_ENDING}"
        outputs.append(out)
        if skip_existing and out.is_file():
            skipped += 1
            continue
        reference = _read_geometry(Path(reference_images[case])) if reference_images is not None else None
        if method == "vote":
            fused, geometry, ties = _fuse_vote(case, inputs, num_classes, tie_break)
            if ties[0]:
                by_order[case] = ties
        else:
            fused, geometry = _fuse_mean(case, inputs, num_classes, reference, foreground_threshold)
        if reference is not None:
            if not reference.matches(geometry):
                raise InputError(f"case {case}: predictions in {inputs[0]} do not match the reference image "
                                 f"{reference_images[case]} ({reference.describe_difference(geometry)})")
            geometry = reference
        write_array(fused, geometry, out)
        del fused
    logger.info("fused %d case(s) into %s (%d kept)", len(cases) - skipped, output_dir, skipped)
    if by_order:
        n, multi = (sum(t[i] for t in by_order.values()) for i in (0, 1))
        words = (f"{n} tied voxel(s) in {len(by_order)} case(s) ({', '.join(sorted(by_order)[:5])}"
                 f"{', ...' if len(by_order) > 5 else ''}) among {len(inputs)} voters"
                 + (f", {multi} of them three-way or more" if multi else ""))
        if tie_break == "lowest":
            logger.info("%s: resolved to the lowest tied class (tie_break='lowest')", words)
        else:
            logger.warning("%s, and no probabilities (<case>%s) to break them: they went to the lowest tied class "
                           "(background whenever it was among them). Predict with --save_probabilities to break ties "
                           "by summed probability.", words, PROBABILITIES_ENDING)
    return outputs


"""Checks of one label file (readable, 3D, the image's geometry, allowed values), returned as problems
so that callers (e.g. the pseudo-label guards) collect a whole folder's and raise them together with
:func:`raise_if_problems`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from atso_nnunet.data.integrity import dimension_problem, display_path, nifti_voxel_problem, read_header
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry

logger = logging.getLogger(__name__)


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
    return label_findings(Path(path), allowed_values, reference_geometry, check_voxels)[0]


def label_findings(path: Path, allowed_values: Iterable[int], reference_geometry: Optional[Geometry],
                    check_voxels: bool) -> Tuple[List[str], Optional[List[float]]]:
    """Problems of a label file and its distinct values (None when they could not be read)."""
    if not path.is_file():
        return [f"{display_path(path)}: label file not found" + (" (broken link)" if path.is_symlink() else "")], None
    header, problem = read_header(path)
    if problem:
        return [problem], None
    problem = dimension_problem(path, header)
    if problem:
        return [problem], None
    problems = []
    if reference_geometry is not None:
        diff = reference_geometry.describe_difference(header.geometry)
        if diff:
            problems.append(f"{display_path(path)}: geometry differs from its image ({diff}, image vs label); resample the "
                            "label onto the image grid or fix its header")
    if check_voxels and header.nifti is not None:
        problem = nifti_voxel_problem(path, header.nifti)
        if problem:
            return problems + [problem], None
    try:
        image = sitk.ReadImage(str(path))
        # The view borrows the image's buffer: keep ``image`` alive while it is used.
        values = _unique_values(sitk.GetArrayViewFromImage(image))
        del image
    except RuntimeError as e:
        return problems + [f"{display_path(path)}: cannot read the label voxels ({str(e).strip().splitlines()[-1]})"], None
    allowed = {int(v) for v in allowed_values}
    bad = [v for v in values if not float(v).is_integer() or int(v) not in allowed]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
        problems.append(f"{display_path(path)}: label values {shown} are not in dataset.json labels {sorted(allowed)}; "
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

"""The three slicing views of 2D tri-view segmentation and their nnU-Net plans identifiers.

nnU-Net reads images as numpy arrays in (z, y, x) order and slices 2D training along axis 0 of
the *transposed* volume. Each view therefore is one ``transpose_forward``:

====== ================= ======================================
view   transpose_forward 2D slices (for an axially acquired CT)
====== ================= ======================================
axial  (0, 1, 2)         along z: x-y planes
coronal (1, 0, 2)        along y: x-z planes
sagittal (2, 0, 1)       along x: y-z planes
====== ================= ======================================

nnU-Net does not reorient images: the views are the array axes of the files as stored.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

VIEWS: Tuple[str, ...] = ("axial", "coronal", "sagittal")

TRANSPOSE_FORWARD: Dict[str, Tuple[int, int, int]] = {
    "axial": (0, 1, 2),
    "coronal": (1, 0, 2),
    "sagittal": (2, 0, 1),
}

PLANS_PREFIX = "ATSOPlans"


def plans_identifier(view: str, prefix: str = PLANS_PREFIX) -> str:
    """nnU-Net plans identifier of a view, e.g. ``ATSOPlans_axial`` (the ``-p`` argument)."""
    check_views([view])
    return f"{prefix}_{view}"


def view_of_plans(plans_name: str) -> str:
    """Inverse of :func:`plans_identifier` (raises ValueError for other plans)."""
    for v in VIEWS:
        if plans_name.endswith("_" + v):
            return v
    raise ValueError(f"plans identifier {plans_name!r} does not name a view ({', '.join(VIEWS)})")


def check_views(views: Iterable[str]) -> List[str]:
    """Validate view names; return them as a list.

    Raises:
        ValueError: an unknown view, naming the allowed ones.
    """
    views = list(views)
    bad = [v for v in views if v not in TRANSPOSE_FORWARD]
    if bad:
        raise ValueError(f"unknown view(s) {bad}; choose from {', '.join(VIEWS)}")
    if len(set(views)) != len(views):
        raise ValueError(f"views repeated: {views}")
    if not views:
        raise ValueError("at least one view is needed")
    return views

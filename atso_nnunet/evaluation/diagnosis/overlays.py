"""(b) Overlays in the three array views: ground-truth contour (green), the label set's (red)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from atso_nnunet.io import read_array
from atso_nnunet.evaluation.diagnosis.rundata import HU_WINDOW, RunData, SLICE_AXIS, foreground

logger = logging.getLogger(__name__)


def _view_slice(arr: np.ndarray, view: str, index: int) -> np.ndarray:
    return np.take(arr, index, axis=SLICE_AXIS[view])


def _aspect(spacing_xyz: Sequence[float], view: str) -> float:
    """imshow aspect (row spacing / column spacing) of a (z, y, x) slice in ``view``."""
    sx, sy, sz = spacing_xyz
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[view]


def organ_centre(mask: np.ndarray) -> Tuple[int, int, int]:
    if not mask.any():
        return tuple(s // 2 for s in mask.shape)
    return tuple(int(round(c)) for c in ndimage.center_of_mass(mask))


def draw(ax, image, gt, pred, aspect, title, window=HU_WINDOW):
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, origin="lower",
              interpolation="nearest")
    for mask, colour in ((gt, "lime"), (pred, "red")):
        if mask is not None and mask.any() and not mask.all():
            ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=0.8)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def informative_cases(run: RunData, cases: Sequence[str], names: Sequence[str], n: int) -> List[str]:
    """The ``n`` cases whose label sets overlap the ground truth most, then the largest label sets.

    An empty label map shows nothing about registration; one that overlaps (or at least exists)
    does. Ties keep the plan's order.
    """
    def score(case: str):
        gt = foreground(read_array(run.gt_file(case))[0], run.label_map)
        labels = [read_array(run.label_set_file(name, case))[0] > 0 for name in names]
        return -sum(int((lab & gt).sum()) for lab in labels), -sum(int(lab.sum()) for lab in labels)

    return sorted(cases, key=lambda c: (score(c), list(cases).index(c)))[:n]


def plot_overlays(run: RunData, part: str, path: Path, n_cases: int = 2,
                  views: Sequence[str] = ("axial", "coronal", "sagittal")) -> Optional[Path]:
    """Ground truth (green) and label-set (red) contours, first and last set, ``n_cases`` cases."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = run.pseudo_label_sets if part == "R" else run.test_sets
    names = [names[0], names[-1]] if len(names) > 1 else list(names)
    cases = informative_cases(run, [c for c in run.plan["reference" if part == "R" else "test"]
                                     if run.gt_file(c) and all(run.label_set_file(n, c).is_file() for n in names)],
                               names, n_cases)
    if not names or not cases:
        return None
    rows = [(c, n) for c in cases for n in names]
    fig, axes = plt.subplots(len(rows), len(views), figsize=(2.6 * len(views), 2.5 * len(rows)), squeeze=False)
    for r, (case, name) in enumerate(rows):
        image, geom = read_array(run.image_file(case))
        gt = foreground(read_array(run.gt_file(case))[0], run.label_map)
        pred = read_array(run.label_set_file(name, case))[0] > 0
        middle = organ_centre(gt)
        for col, view in enumerate(views):
            i = middle[SLICE_AXIS[view]]
            g, p = _view_slice(gt, view, i), _view_slice(pred, view, i)
            inter = (g & p).sum()
            dsc = 2 * inter / (g.sum() + p.sum()) if g.sum() + p.sum() else 1.0
            draw(axes[r, col], _view_slice(image, view, i), g, p, _aspect(geom.spacing, view),
                  f"{case} {name}\n{view} slice {i} (slice DSC {100 * dsc:.0f}%)")
    fig.suptitle(f"{'pseudo-labels on R' if part == 'R' else 'predictions on E'}: ground truth green, "
                 f"labels red (array views of the original image)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path

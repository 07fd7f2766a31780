"""Pseudo-labels whose mean volume is the labeled cases' mean: one foreground threshold for a set.

nnU-Net's label map is the argmax of its softmax: for a binary task, foreground where the
(view-averaged) foreground probability exceeds 0.5. A teacher trained on a handful of labeled
cases is often conservative: on the regime-r1 benchmark M0's pseudo-labels on R hold half of the
organ (recall 41 %, precision 86 %; docs/lab/benchmarks.md), and every student trained on them
learns the smaller organ. The labeled set S carries, without any label of R, how large the organ
is: with the plan's ``pseudo_label_volume: "labeled_mean"`` a pseudo-label set is thresholded at
the one probability ``t`` that gives its cases together the mean foreground volume of S's labels
(a class-proportion prior, as in class-balanced self-training), instead of 0.5.

``t`` is found from a volume-weighted histogram of the mean foreground probability over every
case of the set (:func:`add_to_histogram`, one case in memory at a time), so it is one number
per set, the same whichever order the cases are read in; it is kept within
:data:`THRESHOLD_RANGE` (a teacher whose probabilities are nearly all 0 or 1 cannot be moved far:
a target not reached is a warning). Binary tasks only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Tuple

import numpy as np

from atso_nnunet.errors import InputError
from atso_nnunet.monitors.drift import foreground_volume

logger = logging.getLogger(__name__)

BINS = 1000
THRESHOLD_RANGE = (0.02, 0.98)
REACHED = 0.05   # relative difference between the matched and the target volume


@dataclass(frozen=True)
class VolumeMatch:
    """The threshold chosen for one pseudo-label set and what it was chosen from.

    Attributes:
        threshold: foreground where the mean foreground probability exceeds it.
        target_ml: the labeled cases' mean foreground volume (mL), times the set's cases.
        argmax_ml: the set's foreground volume at 0.5 (the plain argmax), mL.
        matched_ml: the set's foreground volume at ``threshold`` (from the histogram), mL.
        reached: ``matched_ml`` is within :data:`REACHED` of ``target_ml`` (a teacher whose
            probabilities are nearly all 0 or 1, or a target beyond :data:`THRESHOLD_RANGE`, is not).
    """

    threshold: float
    target_ml: float
    argmax_ml: float
    matched_ml: float
    reached: bool

    def words(self, n_cases: int) -> str:
        return (f"foreground threshold {self.threshold:.3f} instead of 0.5: {self.matched_ml / n_cases:.2f} mL a case "
                f"against {self.argmax_ml / n_cases:.2f} at 0.5, the labeled cases' mean {self.target_ml / n_cases:.2f}"
                + ("" if self.reached else " (not reached: the teacher's probabilities do not spread that far within "
                   f"thresholds {THRESHOLD_RANGE[0]}-{THRESHOLD_RANGE[1]})"))


def labeled_mean_volume_ml(label_files: Sequence[Path]) -> float:
    """Mean foreground volume (label > 0) of label files, in mL."""
    if not label_files:
        raise InputError("pseudo_label_volume 'labeled_mean' needs labeled cases: the plan has none")
    volumes = []
    for f in label_files:
        if not Path(f).is_file():
            raise InputError(f"{f}: label of a labeled case not found (pseudo_label_volume 'labeled_mean' reads "
                             "the labeled cases' volumes)")
        volumes.append(foreground_volume(Path(f))[1])
    return float(np.mean(volumes))


def add_to_histogram(hist_ml: np.ndarray, foreground_probability: np.ndarray, voxel_ml: float) -> None:
    """Add one case's foreground probabilities to a volume-weighted histogram of :data:`BINS` bins on [0, 1]."""
    counts, _ = np.histogram(foreground_probability, bins=len(hist_ml), range=(0.0, 1.0))
    hist_ml += counts * voxel_ml


def volume_above(hist_ml: np.ndarray, threshold: float) -> float:
    """Volume (mL) of the histogram's voxels above ``threshold`` (to the bin)."""
    k = int(round(threshold * len(hist_ml)))
    return float(hist_ml[k:].sum())


def threshold_for_volume(hist_ml: np.ndarray, target_ml: float,
                         bounds: Tuple[float, float] = THRESHOLD_RANGE) -> float:
    """The bin edge whose volume above it is closest to ``target_ml``, within ``bounds``.

    Among edges equally close to the target, the one nearest 0.5 (the argmax's threshold): a set
    already at the target keeps its argmax labels.

    Returns:
        The threshold (a bin edge).

    Example:
        >>> h = np.zeros(10); h[2] = 1.0; h[7] = 1.0          # 1 mL at p ~ 0.25, 1 mL at p ~ 0.75
        >>> threshold_for_volume(h, 2.0, (0.1, 0.9)), threshold_for_volume(h, 1.0, (0.1, 0.9))
        (0.2, 0.5)
        >>> threshold_for_volume(h, 0.0, (0.1, 0.9))          # none: above every voter's probability
        0.8
    """
    n = len(hist_ml)
    above = np.concatenate([np.cumsum(hist_ml[::-1])[::-1], [0.0]])    # above[k]: volume of bins k..n-1
    edges = np.arange(n + 1) / n
    lo, hi = bounds
    inside = (edges >= lo - 1e-9) & (edges <= hi + 1e-9)
    error = np.where(inside, np.abs(above - target_ml), np.inf)
    candidates = np.isclose(error, error.min()) & inside
    best = int(np.argmin(np.where(candidates, np.abs(edges - 0.5), np.inf)))
    return round(float(edges[best]), 6)


def match_labeled_volume(cases: Sequence[str], mean_foreground, voxel_ml: Mapping[str, float],
                         labeled_mean_ml: float) -> VolumeMatch:
    """The threshold that gives ``cases`` together ``len(cases) x labeled_mean_ml`` of foreground.

    Args:
        cases: the pseudo-label set's cases.
        mean_foreground: case -> the (z, y, x) mean foreground probability of the case's voters.
        voxel_ml: case -> volume of one voxel, mL.
        labeled_mean_ml: :func:`labeled_mean_volume_ml` of the labeled cases.
    """
    hist = np.zeros(BINS, np.float64)
    for case in cases:
        add_to_histogram(hist, mean_foreground(case), voxel_ml[case])
    target = labeled_mean_ml * len(cases)
    threshold = threshold_for_volume(hist, target)
    matched = volume_above(hist, threshold)
    match = VolumeMatch(threshold, target, volume_above(hist, 0.5), matched, abs(matched - target) <= REACHED * target)
    (logger.info if match.reached else logger.warning)("pseudo-labels of %d case(s): %s", len(cases), match.words(len(cases)))
    return match


def match_pseudo_label_volume(inputs: Mapping[str, Sequence[Path]], images: Mapping[str, Path],
                              labeled_labels: Sequence[Path]) -> VolumeMatch:
    """:func:`match_labeled_volume` over prediction folders: the threshold for fusing every case of
    ``inputs`` (case -> the folders of its voters' ``<case>.npz``) in the geometry of ``images``."""
    from atso_nnunet.pseudolabels.fuse import _read_geometry, mean_foreground_probability

    geometry = {c: _read_geometry(Path(images[c])) for c in inputs}
    voxel_ml = {c: float(np.prod(g.spacing)) / 1000.0 for c, g in geometry.items()}
    return match_labeled_volume(sorted(inputs), lambda c: mean_foreground_probability(c, inputs[c], geometry[c])[0],
                                voxel_ml, labeled_mean_volume_ml(labeled_labels))

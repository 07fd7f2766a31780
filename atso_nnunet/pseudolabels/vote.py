"""Fusion rules on arrays: majority vote with tie-breaking, mean probability (see :mod:`atso_nnunet.pseudolabels.fuse`).

Ties among any number of voters and classes are broken by the summed probability of the tied
classes when the voters' probabilities are given; a tie resolved by class order instead (no
probabilities, ``tie_break="lowest"``, or tied classes with equal summed probabilities) is logged
with its counts, never silent.
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)

METHODS = ("vote", "mean")
TIE_BREAKS = ("auto", "lowest", "probability")


def _label_dtype(num_classes: int) -> np.dtype:
    return np.dtype(np.uint8) if num_classes <= 256 else np.dtype(np.uint16)


class _VoteCounter:
    """Per-voxel vote counts of a stream of label maps.

    ``counts`` has shape (C, *spatial) and dtype uint16 (up to 65535 voters). With
    ``num_classes=None`` the class axis grows to the largest label seen plus one (at least 2).
    """

    def __init__(self, num_classes: Optional[int] = None):
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.fixed = num_classes
        self.counts: Optional[np.ndarray] = None
        self.n_voters = 0

    def add(self, label_map: np.ndarray, name: str = "label map") -> None:
        label_map = np.asarray(label_map)
        if not (np.issubdtype(label_map.dtype, np.integer) or label_map.dtype == bool):
            raise ValueError(f"{name}: label maps must be integer arrays, got dtype {label_map.dtype}")
        if self.counts is not None and label_map.shape != self.counts.shape[1:]:
            raise ValueError(f"{name}: shape {label_map.shape} differs from the first label map's "
                             f"{self.counts.shape[1:]}")
        lo, hi = (int(label_map.min()), int(label_map.max())) if label_map.size else (0, 0)
        if lo < 0 or (self.fixed is not None and hi >= self.fixed):
            raise ValueError(f"{name}: labels must lie in [0, {self.fixed if self.fixed else 'C'}), "
                             f"found values in [{lo}, {hi}]")
        needed = self.fixed if self.fixed is not None else max(hi + 1, 2)
        if self.counts is None:
            self.counts = np.zeros((needed,) + label_map.shape, np.uint16)
        elif needed > self.counts.shape[0]:
            extra = np.zeros((needed - self.counts.shape[0],) + label_map.shape, np.uint16)
            self.counts = np.concatenate([self.counts, extra])
        for c in range(self.counts.shape[0]):
            self.counts[c] += label_map == c
        self.n_voters += 1

    def winners(self) -> Tuple[np.ndarray, np.ndarray]:
        """(argmax with ties to the lowest class id, boolean mask of tied voxels)."""
        if self.counts is None:
            raise ValueError("no label maps to fuse")
        top = self.counts.max(axis=0)
        n_top = (self.counts == top).sum(axis=0)
        return self.counts.argmax(axis=0), n_top > 1


def ties_possible(n_voters: int, num_classes: int) -> bool:
    """Whether ``n_voters`` label maps of ``num_classes`` classes can tie at a voxel.

    An even number of voters can split evenly; with three or more classes an odd number can too
    (three voters, classes 0, 1 and 2: one vote each).
    """
    return n_voters > 1 and (n_voters % 2 == 0 or num_classes > 2)


def tie_counts(counts: np.ndarray, tie: np.ndarray) -> Tuple[int, int]:
    """(tied voxels, tied voxels where three or more classes share the top vote count)."""
    n = int(tie.sum())
    if not n:
        return 0, 0
    tied = counts[:, tie]
    return n, int(((tied == tied.max(axis=0)).sum(axis=0) > 2).sum())


def describe_ties(counts: np.ndarray, tie: np.ndarray, n_voters: int) -> str:
    """``"<n> tied voxel(s) among <k> voters (<m> of them three-way or more)"``."""
    n, multi = tie_counts(counts, tie)
    return f"{n} tied voxel(s) among {n_voters} voters" + (f" ({multi} of them three-way or more)" if multi else "")


def _check_tie_break(tie_break: str) -> None:
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"unknown tie_break {tie_break!r}; choose from {', '.join(TIE_BREAKS)}")


def _break_ties(counts: np.ndarray, fused: np.ndarray, tie: np.ndarray,
                probabilities: Iterable[np.ndarray]) -> np.ndarray:
    """Resolve ``tie`` voxels of ``fused`` by the highest summed probability among tied classes.

    Only the tied voxels of each probability map are kept, so the extra memory is C x n_ties.
    """
    n_classes = counts.shape[0]
    tied_counts = counts[:, tie]                                   # (C, n_ties)
    summed = np.zeros(tied_counts.shape, np.float64)
    n = 0
    for n, prob in enumerate(probabilities, start=1):
        prob = np.asarray(prob)
        if prob.ndim != counts.ndim or prob.shape[1:] != counts.shape[1:] or prob.shape[0] < n_classes:
            raise ValueError(f"probability map {n}: shape {prob.shape}, expected (C >= {n_classes}, "
                             f"{', '.join(map(str, counts.shape[1:]))})")
        summed += prob[:n_classes, tie]
    if n == 0:
        raise ValueError("tie_break='probability' needs probability maps")
    is_top = tied_counts == tied_counts.max(axis=0)
    summed[~is_top] = -np.inf
    still = int(((summed == summed.max(axis=0)).sum(axis=0) > 1).sum())
    if still:
        logger.warning("%d tied voxel(s) whose tied classes also have equal summed probabilities: they go to "
                       "the lowest of those classes", still)
    out = fused.copy()
    out[tie] = summed.argmax(axis=0)
    return out


def majority_vote(label_maps: Iterable[np.ndarray], num_classes: int,
                  probabilities: Optional[Iterable[np.ndarray]] = None,
                  tie_break: str = "auto") -> np.ndarray:
    """Voxel-wise majority vote of label maps.

    Args:
        label_maps: one integer array per voter, all of the same shape (e.g. (z, y, x)), values in
            ``[0, num_classes)``. Any iterable: a generator is consumed one map at a time.
        num_classes: number of classes C including background.
        probabilities: optional, one (C, *spatial) probability map per voter (same order as
            ``label_maps``); only consumed if a tie occurs and ``tie_break`` allows it. A tie
            (even voters, or three or more classes: :func:`ties_possible`) goes to the tied class
            with the highest summed probability.
        tie_break: ``"auto"``, ``"lowest"`` or ``"probability"`` (see :mod:`atso_nnunet.pseudolabels.fuse`).
            Ties resolved by class order are logged with their counts (a warning for ``"auto"``
            without probabilities).

    Returns:
        The fused label map, same spatial shape, dtype uint8 (uint16 above 256 classes).

    Raises:
        ValueError: no label maps, shapes differ, labels outside ``[0, num_classes)``, an unknown
            ``tie_break``, or ``tie_break="probability"`` with ties and no probabilities.

    Example:
        >>> a, b, c = np.array([0, 1, 1]), np.array([1, 1, 0]), np.array([0, 1, 0])
        >>> majority_vote([a, b, c], num_classes=2).tolist()
        [0, 1, 0]
        >>> majority_vote([a, b], num_classes=2).tolist()   # voxels 0 and 2 tie -> background, with a warning
        [0, 1, 0]
    """
    _check_tie_break(tie_break)
    counter = _VoteCounter(num_classes)
    for i, lm in enumerate(label_maps):
        counter.add(lm, name=f"label map {i}")
    fused, tie = counter.winners()
    use_probabilities = tie_break == "probability" or (tie_break == "auto" and probabilities is not None)
    if tie.any() and use_probabilities:
        if probabilities is None:
            raise ValueError("tie_break='probability' needs probability maps")
        fused = _break_ties(counter.counts, fused, tie, probabilities)
    elif tie.any():
        ties = describe_ties(counter.counts, tie, counter.n_voters)
        if tie_break == "lowest":
            logger.info("%s: resolved to the lowest tied class (tie_break='lowest')", ties)
        else:
            logger.warning("%s and no probabilities: they go to the lowest tied class (background whenever it is "
                           "among them); pass the voters' probabilities to break ties by summed probability", ties)
    return fused.astype(_label_dtype(counter.counts.shape[0]))


def mean_probability(prob_maps: Iterable[np.ndarray]) -> np.ndarray:
    """Argmax of the voxel-wise mean of probability maps.

    Args:
        prob_maps: one float array of shape (C, *spatial) per voter (e.g. (C, z, y, x), class
            first, as in nnU-Net's ``<case>.npz``), all of the same shape. Any iterable: a
            generator is consumed one map at a time (one running sum is kept).

    Returns:
        The label map of shape ``spatial``, dtype uint8 (uint16 above 256 classes). Exact ties
        go to the lowest class id.

    Raises:
        ValueError: no maps, a map with fewer than 2 dimensions, or shapes that differ.
    """
    total: Optional[np.ndarray] = None
    for i, prob in enumerate(prob_maps):
        prob = np.asarray(prob)
        if prob.ndim < 2:
            raise ValueError(f"probability map {i}: expected (C, *spatial), got shape {prob.shape}")
        if total is None:
            total = prob.astype(np.float64 if prob.dtype == np.float64 else np.float32, copy=True)
        elif prob.shape != total.shape:
            raise ValueError(f"probability map {i}: shape {prob.shape} differs from the first map's {total.shape}")
        else:
            total += prob
    if total is None:
        raise ValueError("no probability maps to fuse")
    # The mean is the sum divided by a constant: the argmax of the sum is the argmax of the mean.
    return total.argmax(axis=0).astype(_label_dtype(total.shape[0]))

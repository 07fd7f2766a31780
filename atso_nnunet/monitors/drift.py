"""Pseudo-label drift, without labels: the volume of the pseudo-labels on R, generation after generation.

A run's pseudo-labels can shrink a little more every generation (tri-view ATSO, seed 0 of the
published 10 % benchmark: 44.9 -> 36.9 -> 34.0 -> 28.9 mL on R against 99.2 mL true) while the
other label-free monitors (change between generations, agreement of half-models, empty labels)
look ordinary. The volume monitor (step ``g{t}/monitor/volume_R_g{t}``) records, per generation:

- the foreground volume of ``R_g{t}`` on R, in total and per case (mL, from the label maps'
  spacing);
- its ratio to M0's pseudo-labels (``R_g0``) and to the previous generation's;
- the vote's volume over the mean volume of the predictions it fused (per case, and their
  median): a majority vote of weak, disagreeing views keeps less foreground than each view
  (M0's vote kept a median 67 % of its views' volume in that run), which is where such a shrink
  starts.

It reads only the run's own label maps (the fused pseudo-labels and the per-view predictions the
run keeps anyway): no ground truth, no extra nnU-Net call.

**The drift warning** (:data:`DRIFT_THRESHOLD`): the pseudo-labels have lost 20 % or more of
M0's pseudo-label volume on R. Chosen on the records of the runs published under
``docs/benchmarks/`` before this monitor existed (their ``eval/R_g{t}/R.json`` hold every
pseudo-label's voxel count, so the ratio is re-derived from them by
``benchmarks/ship_rule_regret.py --volumes``): of the 24 semi-supervised runs there (axial 10 %,
three seeds; tri-view 10 %, seed 0; transfer A -> B, three seeds and the seed-2 repeat), the only
run whose students fell below M0 on the test set is tri-view ATSO (volume ratio to M0 0.82,
0.76, 0.65 at G1-G3; its test DSC fell below M0's at G2). Every other run kept at least 0.83 of
M0's volume at every generation (lowest: transfer seed 0 ATSO, 0.83 at G3, whose test DSC rose).
20 % lies between the two (a loss of 17 % in a run that did not degrade, 24 % at the generation
where the drifting run had degraded). The margin is small on either side and rests on one
drifting run; the published records do not hold the per-view predictions, so the vote/view
ratio could not be calibrated and is reported without a threshold. A growing volume is not
flagged: in the published runs M0 under-segments (true volume 0.94-2.2 times M0's), and growth
went with better pseudo-labels.
"""
from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

#: the fraction of M0's pseudo-label volume on R whose loss raises the drift warning (see the module docstring)
DRIFT_THRESHOLD = 0.20

_GENERATIONS_WORDS = {1: "one generation", 2: "two generations", 3: "three generations"}


def foreground_volume(path: Path) -> Tuple[int, float]:
    """Foreground voxels (any label > 0) of one label map and their volume in mL."""
    from atso_nnunet.io import read_array

    array, geometry = read_array(path)
    voxels = int(np.count_nonzero(array > 0))
    return voxels, voxels * float(np.prod(geometry.spacing)) / 1000.0


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b == 0 else a / b


def volume_record(labels: Path, cases: Sequence[str], groups: Sequence[Tuple[Sequence[str], Sequence[Path]]] = (),
                  first: Optional[Mapping] = None, previous: Optional[Mapping] = None,
                  file_ending: str = ".nii.gz", labeled_mean_ml: Optional[float] = None) -> dict:
    """The volume monitor of one pseudo-label set (JSON-able).

    Args:
        labels: folder of the pseudo-labels (``<case><file_ending>``).
        cases: the cases measured.
        groups: ``(cases, prediction folders)`` the labels were fused from; each case's vote/view
            ratio is its label's volume over the mean volume of its group's predictions.
        first: the volume monitor of M0's pseudo-labels (``R_g0``), or None at generation 0.
        previous: the previous generation's volume monitor, or None.
        labeled_mean_ml: the labeled cases' mean foreground volume (mL), the one size reference a run
            has without labels of R; None: not known.

    Returns:
        ``value`` (total mL), ``total_ml``, ``per_case_ml``, ``vs_first``, ``vs_previous`` (total
        ratios; None where there is nothing to compare), ``vote_vs_views`` (median over cases),
        ``vote_vs_views_per_case``, ``labeled_mean_ml`` and ``vs_labeled`` (the mean volume a case over
        ``labeled_mean_ml``).
    """
    labels = Path(labels)
    per_case: Dict[str, float] = {c: foreground_volume(labels / f"{c}{file_ending}")[1] for c in cases}
    total = float(sum(per_case.values()))
    ratios: Dict[str, Optional[float]] = {}
    for group_cases, folders in groups:
        for c in group_cases:
            if c not in per_case or not folders:
                continue
            views = [foreground_volume(Path(f) / f"{c}{file_ending}")[1] for f in folders]
            ratios[c] = _ratio(per_case[c], sum(views) / len(views))
    defined = [r for r in ratios.values() if r is not None]
    return {"value": total, "total_ml": total, "per_case_ml": per_case,
            "vs_first": _ratio(total, (first or {}).get("total_ml")),
            "vs_previous": _ratio(total, (previous or {}).get("total_ml")),
            "vote_vs_views": statistics.median(defined) if defined else None,
            "vote_vs_views_per_case": ratios, "labeled_mean_ml": labeled_mean_ml,
            "vs_labeled": _ratio(total / len(per_case) if per_case else None, labeled_mean_ml)}


@dataclass(frozen=True)
class DriftVerdict:
    """Whether a run's pseudo-labels drifted (see :func:`drift_verdict`).

    Attributes:
        drifted: the volume fell to ``1 - threshold`` of M0's or below at some generation.
        first_generation: the first generation at which it did (None: never).
        words: one plain sentence for the log and the report.
    """

    drifted: bool
    first_generation: Optional[int]
    words: str


def drift_verdict(volumes: Mapping[int, Optional[float]], threshold: float = DRIFT_THRESHOLD,
                  vote_vs_views: Optional[float] = None) -> DriftVerdict:
    """The drift verdict from the pseudo-label volume on R per generation (pure).

    Args:
        volumes: generation -> total pseudo-label volume on R (any unit; generation 0 is M0's).
        threshold: fraction of M0's volume whose loss is a drift.
        vote_vs_views: M0's vote/view volume ratio, named in the words when known.

    Returns:
        A :class:`DriftVerdict`; without generation 0's volume (or with only generation 0) it
        says that nothing can be judged yet.

    Example:
        >>> drift_verdict({0: 44.9, 1: 36.9, 2: 34.0}).words[:58]
        'pseudo-labels lost 24 % of their volume over two generati'
    """
    known = {t: v for t, v in volumes.items() if v is not None}
    base = known.get(0)
    later = sorted(t for t in known if t > 0)
    if not base or not later:
        return DriftVerdict(False, None, "pseudo-label drift: nothing to compare yet (needs M0's pseudo-labels "
                                         "and at least one later generation)")
    first = next((t for t in later if known[t] / base <= 1 - threshold), None)
    trail = " -> ".join(f"{known[t]:.1f}" for t in sorted(known))
    views = ("" if vote_vs_views is None else
             f"; M0's fused pseudo-labels kept {100 * vote_vs_views:.0f} % of the volume its views predicted")
    if first is None:
        last = later[-1]
        change = known[last] / base - 1
        return DriftVerdict(False, None, f"no drift: the pseudo-labels on R kept their volume within "
                                         f"{100 * threshold:.0f} % of M0's ({'+' if change >= 0 else '-'}"
                                         f"{abs(100 * change):.0f} % at generation {last}; {trail}){views}.")
    span = _GENERATIONS_WORDS.get(first, f"{first} generations")
    lost = 1 - known[first] / base
    return DriftVerdict(True, first, f"pseudo-labels lost {100 * lost:.0f} % of their volume over {span} "
                                     f"({trail}, generation 0 to {max(later)}){views}: each generation learns "
                                     f"from smaller labels than the last; the models after generation "
                                     f"{first - 1} are likely to under-segment. Check the pseudo-labels of a "
                                     f"few cases before using them.")


def drift_warning(record: Mapping, generation: int, threshold: float = DRIFT_THRESHOLD) -> Optional[str]:
    """The warning for one generation's volume monitor (``record`` from :func:`volume_record`), or None."""
    ratio = record.get("vs_first")
    if generation < 1 or ratio is None or ratio > 1 - threshold:
        return None
    span = _GENERATIONS_WORDS.get(generation, f"{generation} generations")
    return (f"pseudo-labels lost {100 * (1 - ratio):.0f} % of their volume over {span} "
            f"(R_g{generation}: {record['total_ml']:.1f} mL, {100 * ratio:.0f} % of M0's pseudo-labels): the next "
            "generation learns from smaller labels; check a few cases before training on them")

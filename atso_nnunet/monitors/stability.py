"""The stability filter: pseudo-labelled cases whose label changes most between two rounds stay out of training.

The FLARE22 winner's pipeline kept the pseudo-labels that were stable between two rounds (1,924 of
2,000 cases), measured by the fraction of foreground voxels that change. Here, with the plan's
``stability_filter`` set, generation t's pseudo-labels ``R_g{t}`` (t >= 1) are compared, case by
case, with the previous round's ``R_g{t-1}`` (for ATSO: the same case's labels from consecutive
generations, each made by models that never saw the case), and every training that learns from
``R_g{t}`` leaves out the least stable cases: the ``step g{t}/monitor/stability_R_g{t}`` writes
the kept and dropped cases, and each such training passes only the kept ones to the trainer
(``pseudo_label_cases``). Default: off (no such step, every case trains).

Change of one case (:func:`change_fraction`): the voxels whose label differs between the two
rounds over the voxels that are foreground in either, ``|A != B| / |A u B|`` (1 - Jaccard for one
class); 0.0 when both are empty.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional

import numpy as np

from atso_nnunet.limits import limits


@dataclass(frozen=True)
class StabilityFilter:
    """The plan's ``stability_filter``: give exactly one of the two fields.

    Attributes:
        drop_fraction: leave out this fraction of the pseudo-labelled cases, those that change most
            (rounded to the nearest case; 0 < f < 1).
        max_change: leave out every case whose change exceeds this (0 <= x < 1).
    """

    drop_fraction: Optional[float] = field(default=None, metadata=limits(limits_text="0 < value < 1"))
    max_change: Optional[float] = field(default=None, metadata=limits(limits_text="0 <= value < 1"))

    @classmethod
    def problems(cls, data: Any, path: str = "stability_filter") -> List[str]:
        """Problems of the plan's ``stability_filter`` value (empty: valid; null is valid and means off)."""
        if data is None:
            return []
        if not isinstance(data, Mapping):
            return [f"{path}: must be an object such as {{\"drop_fraction\": 0.1}} or {{\"max_change\": 0.3}}, "
                    f"or null, got {data!r}"]
        out = [f"{path}.{k}: unknown key; give drop_fraction or max_change" for k in data
               if k not in ("drop_fraction", "max_change")]
        given = [k for k in ("drop_fraction", "max_change") if data.get(k) is not None]
        if len(given) != 1:
            out.append(f"{path}: give exactly one of drop_fraction (the fraction of cases left out) or max_change "
                       f"(the largest change a kept case may have), got {', '.join(given) or 'neither'}")
        for key, low_open in (("drop_fraction", True), ("max_change", False)):
            v = data.get(key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < 1) or (low_open and v == 0):
                bounds = "0 < value < 1" if low_open else "0 <= value < 1"
                out.append(f"{path}.{key}: must be a number with {bounds}, got {v!r}")
        return out

    @classmethod
    def from_dict(cls, data: Optional[Mapping]) -> Optional["StabilityFilter"]:
        return None if data is None else cls(**dict(data))

    def to_dict(self) -> dict:
        return {k: v for k, v in (("drop_fraction", self.drop_fraction), ("max_change", self.max_change))
                if v is not None}

    def words(self) -> str:
        if self.drop_fraction is not None:
            return f"the {100 * self.drop_fraction:.0f} % of pseudo-labelled cases that change most"
        return f"the cases whose pseudo-label changes by more than {100 * self.max_change:.0f} %"


def change_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of the foreground (of either label map) whose label differs between ``a`` and ``b``.

    Example:
        >>> change_fraction(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        0.3333333333333333
    """
    union = np.count_nonzero((a > 0) | (b > 0))
    return 0.0 if union == 0 else float(np.count_nonzero((a != b) & ((a > 0) | (b > 0)))) / union


def unstable_cases(changes: Mapping[str, float], rule: StabilityFilter) -> List[str]:
    """The cases the filter leaves out (pure), most changed first (ties by case id).

    Args:
        changes: case -> :func:`change_fraction` between the two rounds.
        rule: the plan's filter.
    """
    ordered = sorted(changes, key=lambda c: (-changes[c], c))
    if rule.drop_fraction is not None:
        return ordered[:int(math.floor(rule.drop_fraction * len(ordered) + 0.5))]
    return [c for c in ordered if changes[c] > rule.max_change]


def stability_record(labels, previous, cases, rule: StabilityFilter, file_ending: str = ".nii.gz") -> dict:
    """The stability monitor of a pseudo-label set against the previous round's (JSON-able).

    Returns:
        ``value`` (number of cases left out), ``dropped``, ``kept``, ``change_per_case`` and the ``rule``.
    """
    from pathlib import Path

    from atso_nnunet.io import read_array

    changes = {c: change_fraction(read_array(Path(labels) / f"{c}{file_ending}")[0],
                                  read_array(Path(previous) / f"{c}{file_ending}")[0]) for c in cases}
    dropped = unstable_cases(changes, rule)
    return {"value": len(dropped), "dropped": dropped, "kept": [c for c in cases if c not in dropped],
            "change_per_case": changes, "rule": rule.to_dict()}

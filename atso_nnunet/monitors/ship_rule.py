"""Which generation to ship, decided without labels (the plan's ``ship_generation``).

The paper picks its best generation by the test score, which a team without test labels cannot
do. Two rules, both functions of a run's label-free monitors only:

- ``last`` (default, what every run did before): the model of the last generation T (the
  method's final model);
- ``before_drift``: the last generation before the pseudo-labels drifted
  (:func:`atso_nnunet.monitors.drift.drift_verdict`): if ``R_g{t}`` is the first pseudo-label set that
  lost :data:`~atso_nnunet.monitors.drift.DRIFT_THRESHOLD` of M0's volume, the models of generation t made
  (or learned from the labels that made) those shrunken labels, so generation t - 1 is shipped;
  without a drift, T.

How the rule does on every published comparison (test DSC lost against the best generation by
test, and against always taking T) is ``benchmarks/ship_rule_regret.py``'s table in
``docs/without_labels.md``.
"""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

from atso_nnunet.monitors.drift import DRIFT_THRESHOLD, drift_verdict

SHIP_RULES: Tuple[str, ...] = ("last", "before_drift")


def ship_generation(volumes: Mapping[int, Optional[float]], last: int, rule: str = "before_drift",
                    threshold: float = DRIFT_THRESHOLD) -> int:
    """The generation a rule ships (pure).

    Args:
        volumes: generation -> pseudo-label volume on R (the volume monitor's ``total_ml``, or any
            unit); generation 0 is M0's.
        last: the run's last generation T.
        rule: one of :data:`SHIP_RULES`.
        threshold: the drift threshold.

    Raises:
        ValueError: an unknown rule.

    Example:
        >>> ship_generation({0: 44.9, 1: 36.9, 2: 34.0, 3: 28.9}, last=3)
        1
    """
    if rule not in SHIP_RULES:
        raise ValueError(f"ship_generation: unknown rule {rule!r}; choose from {', '.join(SHIP_RULES)}")
    if rule == "last":
        return last
    verdict = drift_verdict(volumes, threshold)
    return last if verdict.first_generation is None else min(last, verdict.first_generation - 1)


def report_volumes(report: Mapping) -> dict:
    """generation -> pseudo-label volume on R from a ``report.json`` (None where not recorded)."""
    return {g["generation"]: g.get("pseudo_label_volume_ml") for g in report.get("generations", [])}

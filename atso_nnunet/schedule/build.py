"""The generation schedule: an experiment turned into ordered steps, decided before anything runs."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from atso_nnunet.errors import InputError
from atso_nnunet.schedule.artefacts import Report
from atso_nnunet.schedule.vocabulary import ScheduleBuilder
from atso_nnunet.schedule.step import Step


def _checked_split(plan, method, reference_split: Sequence[Sequence[str]]) -> Tuple[Tuple[str, ...], ...]:
    split = tuple(tuple(sorted(s)) for s in reference_split)
    flat = [c for s in split for c in s]
    problems = []
    if set(flat) != set(plan.reference) or len(flat) != len(set(flat)):
        problems.append("reference_split: must partition the plan's reference cases exactly")
    if plan.reference and any(not s for s in split):
        problems.append("reference_split: a subset is empty")
    if method.uses_subsets and len(split) != plan.subsets:
        problems.append(f"reference_split: {len(split)} subsets given, plan says subsets = {plan.subsets}")
    if problems:
        raise InputError("cannot build the schedule:\n" + "\n".join(f"  - {p}" for p in problems))
    return split


def build_schedule(plan, reference_split: Sequence[Sequence[str]], method,
                   n_classes: Optional[int] = None) -> List[Step]:
    """Turn an experiment into ordered steps (pure; nothing is executed).

    Generation 0 is the same for every method (M0 on S, its predictions, ``R_g0``); the plan's
    method (:mod:`atso_nnunet.methods`) adds its generations; the ``report`` step comes last and
    depends on every other step.

    Args:
        plan: a validated experiment plan.
        reference_split: the K subsets of R (``plan.reference_subsets(plan)``).
        method: the method object (``atso_nnunet.methods.get_method(plan.method)``).
        n_classes: classes of the task, background included (None: not known, taken as two): decides
            which predictions keep their probabilities for tie breaks.

    Returns:
        Steps in dependency order: every step's inputs come earlier in the list.

    Raises:
        InputError: ``reference_split`` does not partition the plan's reference set (into
            ``plan.subsets`` non-empty parts for methods that use subsets).
    """
    split = _checked_split(plan, method, reference_split)
    b = ScheduleBuilder(plan, split, method, n_classes)
    b.generation_zero()
    method.add_generations(b)
    b.add(id="report", kind="report", generation=max(s.generation for s in b.steps),
          extra_inputs=tuple(s.id for s in b.steps), outputs=(Report(),))
    return b.finish()

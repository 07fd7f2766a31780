"""Which cases go where: the reference split, case rules, and the plan's cases against its sources.

The reference set is split into ``subsets`` parts by :func:`split_reference` (seeded, balanced,
deterministic) unless the plan gives ``reference_split``; :func:`resolved` returns the plan as
JSON with the split filled in, to be written next to a run's outputs. A plan with a ``case_rule``
reads its reference and test sets from a converted source: :func:`resolve_case_rule` fills them
(the library does this, so ``run_experiment`` works with such a plan).
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Collection, Dict, Iterable, List, Optional

import numpy as np

from atso_nnunet.errors import InputError
from atso_nnunet.plan.validate import raise_if
from atso_nnunet.plan.fields import SETS
from atso_nnunet.plan.schema import ExperimentPlan, source_dir
from atso_nnunet.plan.sections import is_int


def split_reference(reference: Iterable[str], subsets: int, seed: int) -> List[List[str]]:
    """Split the reference set into ``subsets`` parts, seeded and balanced.

    The sorted ids are permuted with ``numpy.random.default_rng(seed)`` and cut into contiguous
    parts whose sizes differ by at most one (the first ``n % subsets`` parts get the extra case).
    The result depends only on the set of ids, ``subsets`` and ``seed``.

    Args:
        reference: case ids of R.
        subsets: number of parts K (>= 1).
        seed: non-negative seed.

    Returns:
        K lists, each sorted, disjoint, together exactly ``reference``.

    Raises:
        InputError: repeated ids, K < 1, or fewer ids than K.
    """
    ids = list(reference)
    rep = sorted(c for c, n in Counter(ids).items() if n > 1)
    if rep:
        raise InputError(f"reference: case(s) listed more than once: {', '.join(rep)}")
    if not is_int(subsets) or subsets < 1:
        raise InputError(f"subsets: must be an integer >= 1, got {subsets!r}")
    if len(ids) < subsets:
        raise InputError(f"reference: {len(ids)} case(s) cannot fill {subsets} subsets")
    ids = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    base, extra = divmod(len(ids), subsets)
    parts, start = [], 0
    for k in range(subsets):
        size = base + (1 if k < extra else 0)
        parts.append(sorted(shuffled[start:start + size]))
        start += size
    return parts


def reference_subsets(plan: ExperimentPlan) -> List[List[str]]:
    """The plan's reference split: the explicit ``reference_split`` or :func:`split_reference`.

    An empty reference set (possible for ``supervised``) gives an empty list.
    """
    if plan.reference_split is not None:
        return [list(s) for s in plan.reference_split]
    if not plan.reference:
        return []
    return split_reference(plan.reference, plan.subsets, plan.seed)


def resolved(plan: ExperimentPlan) -> Dict[str, Any]:
    """The plan as JSON-able data with ``reference_split`` filled in (to write next to outputs)."""
    out = plan.to_dict(include_split=True)
    out["reference_split"] = reference_subsets(plan)
    return out


# ---------------------------------------------------------------------------------------------
# case rules


def contiguous_folds(ids: Iterable[str], n_folds: int) -> List[List[str]]:
    """Contiguous folds of the sorted ids, the larger folds last (82 -> 20, 20, 21, 21, as RSTN)."""
    ids = sorted(ids)
    base, extra = divmod(len(ids), n_folds)
    out, start = [], 0
    for f in range(n_folds):
        size = base + (1 if f >= n_folds - extra else 0)
        out.append(ids[start:start + size])
        start += size
    return out


def apply_case_rule(plan: ExperimentPlan, source: os.PathLike) -> ExperimentPlan:
    """Fill ``reference`` and ``test`` from ``plan.case_rule`` and the converted source dataset.

    Returns the plan with explicit lists and no ``case_rule`` (the rule is recorded in ``note``),
    so the resolved plan written next to a run's outputs reads like any other.

    Args:
        plan: a plan (without a case rule it is returned unchanged).
        source: the folder of ``plan.case_rule.source``.

    Raises:
        InputError: the source has not been converted (naming the plan's conversion command) or
            holds too few labeled cases.
    """
    rule = plan.case_rule
    if rule is None:
        return plan
    source = Path(source)
    labels = source / "labelsTr"
    if not labels.is_dir():
        how = f" Create it first: {plan.convert_hint}" if plan.convert_hint else ""
        raise InputError(f"case_rule: source {rule.source} not found at {source} (plan '{plan.name}'); its "
                         f"labeled cases make the reference and test sets.{how}")
    ending = ".nii.gz"
    labeled = set(plan.labeled)
    ids = sorted(p.name[:-len(ending)] for p in labels.iterdir()
                 if p.name.endswith(ending) and not p.name.startswith("."))
    ids = [c for c in ids if c not in labeled]
    if len(ids) < rule.folds:
        raise InputError(f"case_rule: {source} has {len(ids)} labeled case(s), fewer than {rule.folds} folds")
    folds = contiguous_folds(ids, rule.folds)
    test = [c for f in rule.test_folds for c in folds[f]]
    reference = [c for i, f in enumerate(folds) if i not in rule.test_folds for c in f]
    note = (plan.note + " " if plan.note else "") + (
        f"[reference/test from case_rule {json.dumps(rule.to_dict())}: {len(ids)} labeled cases of {rule.source} "
        f"in {rule.folds} contiguous folds ({', '.join(str(len(f)) for f in folds)})]")
    return dataclasses.replace(plan, reference=tuple(reference), test=tuple(test), case_rule=None, note=note)


def resolve_case_rule(plan: ExperimentPlan, paths: Any) -> ExperimentPlan:
    """:func:`apply_case_rule` with the rule's source found under ``paths.raw`` (or its absolute path).

    Args:
        plan: a plan; without a case rule it is returned unchanged.
        paths: the nnU-Net folders (``atso_nnunet.paths.NnUNetPaths``; only ``raw`` is read).

    Raises:
        InputError: see :func:`apply_case_rule`.
    """
    if plan.case_rule is None:
        return plan
    return apply_case_rule(plan, source_dir(paths, plan.case_rule.source))


# ---------------------------------------------------------------------------------------------
# checks against the source datasets


def dataset_problems(plan: ExperimentPlan, available: Collection[str],
                     labeled_available: Optional[Collection[str]] = None) -> List[str]:
    """Case ids of the plan that the sources do not provide (pure; empty list: all found).

    Args:
        plan: the experiment.
        available: case ids with an image in some source (a set, or a mapping keyed by case id
            such as the result of ``materialize.find_cases``).
        labeled_available: case ids with a ground-truth label in some source; if given, every
            labeled case must have one (ground truth of R and E is optional: without it the
            corresponding evaluations are skipped).

    Returns:
        Problems naming the set and the cases.
    """
    have = set(available)
    problems = []
    for s in SETS:
        missing = sorted(set(getattr(plan, s)) - have)
        if missing:
            problems.append(f"{s}: {len(missing)} case(s) have no image in the sources "
                            f"({', '.join(plan.sources)}): {', '.join(missing)}")
    if labeled_available is not None:
        no_label = sorted((set(plan.labeled) & have) - set(labeled_available))
        if no_label:
            problems.append(f"labeled: {len(no_label)} labeled case(s) have no ground-truth label in "
                            f"the sources: {', '.join(no_label)}")
    return problems


def validate_against_dataset(plan: ExperimentPlan, available: Collection[str],
                             labeled_available: Optional[Collection[str]] = None,
                             origin: str = "experiment plan") -> None:
    """Raise if the sources lack cases of the plan (see :func:`dataset_problems`).

    Raises:
        InputError: listing every missing case, by set.
    """
    raise_if(dataset_problems(plan, available, labeled_available), origin)

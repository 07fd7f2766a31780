"""Plan JSON -> validated :class:`~atso_nnunet.plan.schema.ExperimentPlan` (every problem at once,
:func:`~atso_nnunet.plan.schema.plan_problems`), command-line overrides, and the differences between
two plans. The old name ``schedule`` of ``training`` (older plans and run folders) is read with a
deprecation warning.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from atso_nnunet.errors import InputError
from atso_nnunet.plan.fields import ALIASES, KEY_ORDER
from atso_nnunet.plan.schema import ExperimentPlan, jsonable, plan_problems
from atso_nnunet.plan.validate import _renamed, raise_if

logger = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------------------
# loading, overriding, comparing


def plan_from_dict(data: Mapping[str, Any], origin: str = "experiment plan") -> ExperimentPlan:
    """Build a plan from JSON data after checking it completely.

    Args:
        data: the plan's JSON object (an old ``schedule`` section is read as ``training``).
        origin: how errors name the plan (its file path).

    Raises:
        InputError: listing every problem (see :func:`plan_problems`).
    """
    raise_if(plan_problems(data), origin)
    data, _, renamed = _renamed(data)
    for old in renamed:
        logger.warning("%s: the section %r is now called %r; rename it (read as %r for now)", origin, old,
                       ALIASES[old], ALIASES[old])
    return ExperimentPlan(**{k: data[k] for k in KEY_ORDER if k in data})


def load_plan(path: os.PathLike) -> ExperimentPlan:
    """Read and validate one plan JSON file.

    Raises:
        InputError: the file is missing or not JSON, or the plan has problems (all listed).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: plan file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e
    try:
        return plan_from_dict(data, origin=f"plan {path}")
    except InputError as e:
        # A template plan (case lists filled from converted data) says how to fill it.
        if isinstance(data, dict) and not data.get("reference") and not data.get("test") and data.get("convert_hint"):
            raise InputError(f"{e}\nThis plan's case lists are filled from the converted data: "
                             f"{data['convert_hint']}") from None
        raise


def with_overrides(plan: ExperimentPlan, method: Optional[str] = None, generations: Optional[int] = None,
                   views: Optional[Sequence[str]] = None, configuration: Optional[str] = None,
                   subsets: Optional[int] = None) -> ExperimentPlan:
    """A copy of ``plan`` with command-line overrides applied, validated again.

    A ``method`` whose valid generations exclude the plan's, without ``generations``, gets the
    method's default (``supervised``: 0). Overriding ``subsets`` drops an explicit
    ``reference_split`` (it is recomputed).

    Raises:
        InputError: the overridden plan has problems (all listed).
    """
    changes: Dict[str, Any] = {}
    if method is not None:
        from atso_nnunet.methods import get_method

        changes["method"] = method
        m = get_method(method)
        if generations is None and (plan.generations < m.min_generations or (
                m.max_generations is not None and plan.generations > m.max_generations)):
            changes["generations"] = m.default_generations()
    if generations is not None:
        changes["generations"] = generations
    if views is not None:
        changes["views"] = tuple(views)
    if configuration is not None:
        changes["configuration"] = configuration
    if subsets is not None:
        changes["subsets"] = subsets
        if subsets != plan.subsets:
            changes["reference_split"] = None
    data = {**plan.to_dict(include_split=True), **jsonable(changes)}
    return plan_from_dict(data, origin="experiment plan with overrides "
                          + ", ".join(f"{k}={v!r}" for k, v in changes.items()))


def _normalised(data: Mapping[str, Any]) -> Dict[str, Any]:
    """Plan data as the current version writes it; data that is no valid plan: old keys renamed only."""
    renamed = _renamed(data)[0] if isinstance(data, Mapping) else {}
    try:
        return ExperimentPlan(**{k: renamed[k] for k in KEY_ORDER if k in renamed}).to_dict(include_split=True)
    except (InputError, TypeError):
        return renamed


def plan_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """Top-level fields that differ between two plans given as JSON data (each as written now).

    A run folder's ``plan.json`` written before ``schedule`` became ``training`` compares equal
    to the same plan written now.
    """
    a, b = _normalised(old), _normalised(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))

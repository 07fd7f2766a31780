"""Plan JSON -> validated :class:`~atso_nnunet.plan.schema.ExperimentPlan`, every problem at once.

:func:`plan_problems` checks keys, types, values, case lists, every section (its class in
:mod:`atso_nnunet.plan.sections`), what nnU-Net can train (fold, configuration) and the method's rules
(:func:`_method_problems`); each message starts with the field's path (``training.num_epochs: must be
a positive integer, got "3"``). The old name ``schedule`` of ``training`` (older plans and run folders)
is read with a deprecation warning.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from atso_nnunet.errors import InputError
from atso_nnunet.plan.cases import case_problems as _case_problems
from atso_nnunet.plan.schema import (CONFIGURATIONS, FUSIONS, KEY_ORDER, METRICS, NNUNET_FOLDS, REQUIRED_KEYS,
                                     UNSUPPORTED_CONFIGURATIONS, ExperimentPlan, jsonable)
from atso_nnunet.plan.sections import (NAME_RE, SOURCE_ID_RE, CaseRule, NetworkSection, SyntheticSpec,
                                       TrainingSection, is_int, slurm_problems, unknown_keys)
from atso_nnunet.plan.training import got
from atso_nnunet.ship_rule import SHIP_RULES
from atso_nnunet.stability import StabilityFilter
from atso_nnunet.views import VIEWS

logger = logging.getLogger(__name__)

# Old key -> current key. Read with a deprecation warning; giving both is an error.
ALIASES: Dict[str, str] = {"schedule": "training"}


def raise_if(problems: List[str], origin: str) -> None:
    """Raise one InputError listing ``problems`` (nothing when empty)."""
    if problems:
        n = len(problems)
        raise InputError(f"{origin} has {n} problem{'s' if n > 1 else ''}:\n"
                         + "\n".join(f"  - {p}" for p in problems))


def _renamed(data: Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str], List[str]]:
    """``data`` with old keys renamed; (data, problems, the old keys that were renamed)."""
    out = dict(data)
    problems, renamed = [], []
    for old, new in ALIASES.items():
        if old not in out:
            continue
        if new in out:
            problems.append(f"{old}: old name of {new!r}; both are given, keep only {new!r}")
            out.pop(old)
        else:
            out[new] = out.pop(old)
            renamed.append(old)
    return out, problems, renamed


# ---------------------------------------------------------------------------------------------
# checks


def _is_str_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def _is_object(v: Any) -> bool:
    return v is None or isinstance(v, Mapping)


_STRING = (lambda v: isinstance(v, str), "a string")
_CASES = (_is_str_list, "a list of case ids (strings)")
_INT = (is_int, "an integer")
_OBJECT = (_is_object, "an object or null")
_TYPES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(("name", "note", "convert_hint", "dataset_name", "configuration", "method", "metric", "fusion"),
                    _STRING),
    "method_options": (lambda v: isinstance(v, Mapping) and all(isinstance(x, Mapping) for x in v.values()),
                       'an object of method name -> options, such as {"atso": {"test_model": "combined"}}'),
    "may_be_absent": (_is_str_list, "a list of case ids (strings)"),
    "stability_filter": (_is_object, 'an object such as {"drop_fraction": 0.1}, or null'),
    "ship_generation": (lambda v: isinstance(v, str), 'a string ("last" or "before_drift")'),
    **dict.fromkeys(("labeled", "reference", "test", "validation"), _CASES),
    **dict.fromkeys(("dataset_id", "seed", "subsets", "generations"), _INT),
    **dict.fromkeys(("network", "training", "synthetic", "slurm", "case_rule"), _OBJECT),
    "sources": (_is_str_list, "a list of strings"),
    "views": (_is_str_list, "a list of view names"),
    "fold": (lambda v: v == "all" or is_int(v), '"all" or a fold number'),
    "eval_label_map": (lambda v: isinstance(v, Mapping), 'an object such as {"2": 1}'),
    "reference_split": (lambda v: v is None or (isinstance(v, (list, tuple)) and all(_is_str_list(s) for s in v)),
                        "a list of lists of case ids, or null"),
}


def _defaults() -> Dict[str, Any]:
    """Defaults of the plain fields of :class:`ExperimentPlan` (sections default to empty)."""
    out = {}
    for f in dataclasses.fields(ExperimentPlan):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return {k: v for k, v in out.items() if v is not None and not dataclasses.is_dataclass(v)}


_DEFAULTS = _defaults()


def plan_problems(data: Mapping[str, Any]) -> List[str]:
    """Every problem of a plan given as JSON data (empty list: the plan is valid).

    Args:
        data: the plan's JSON object (lists or tuples for sequences); ``schedule`` is read as
            ``training``.

    Returns:
        Human-readable problems, each starting with its field's path and naming the case or
        value at fault.
    """
    if not isinstance(data, Mapping):
        return [f"a plan must be a JSON object, got {type(data).__name__}"]
    data, problems, _ = _renamed(data)
    problems += unknown_keys({k: v for k, v in data.items() if k not in KEY_ORDER}, KEY_ORDER, "")
    problems += [f"{key}: required key missing" for key in REQUIRED_KEYS if key not in data]
    # v: the fields present (or defaulted) with the right type; value checks look at these only.
    v: Dict[str, Any] = {}
    for key in KEY_ORDER:
        value = data.get(key, _DEFAULTS.get(key))
        if key not in data and key not in _DEFAULTS:
            continue
        ok, what = _TYPES[key]
        if ok(value):
            v[key] = value
        else:
            problems.append(f"{key}: must be {what}, got {got(value)}")
    return (problems + _value_problems(v) + _source_problems(v) + _case_problems(v) + _fold_problems(v)
            + _section_problems(v) + _method_problems(v))


def _value_problems(v: Mapping[str, Any]) -> List[str]:
    out = []
    if "name" in v and not v["name"].strip():
        out.append("name: must not be empty")
    if "fusion" in v and v["fusion"] not in FUSIONS:
        out.append(f"fusion: unknown fusion {v['fusion']!r}; choose from {', '.join(FUSIONS)} (vote: majority "
                   "vote, ties by probability; mean: argmax of the mean probability)")
    if "metric" in v and v["metric"] not in METRICS:
        out.append(f"metric: unknown metric {v['metric']!r}; choose from {', '.join(METRICS)}")
    if "ship_generation" in v and v["ship_generation"] not in SHIP_RULES:
        out.append(f"ship_generation: unknown rule {v['ship_generation']!r}; choose from {', '.join(SHIP_RULES)} "
                   "(last: generation T; before_drift: the last generation before the pseudo-labels drift)")
    out += StabilityFilter.problems(v.get("stability_filter"))
    conf = v.get("configuration")
    if conf in UNSUPPORTED_CONFIGURATIONS:
        out.append(f"configuration: {conf!r} cannot be made by the tri-view planner: "
                   f"{UNSUPPORTED_CONFIGURATIONS[conf]}; use {' or '.join(CONFIGURATIONS)}")
    elif conf is not None and conf not in CONFIGURATIONS:
        out.append(f"configuration: unknown nnU-Net configuration {conf!r}; choose from {', '.join(CONFIGURATIONS)}")
    if "views" in v:
        views = list(v["views"])
        bad = [x for x in views if x not in VIEWS]
        if bad:
            out.append(f"views: unknown view(s) {', '.join(map(repr, bad))}; choose from {', '.join(VIEWS)}")
        if not views:
            out.append("views: at least one view is needed")
        rep = sorted(x for x, n in Counter(views).items() if n > 1)
        if rep:
            out.append(f"views: repeated {', '.join(rep)}")
    if "seed" in v and v["seed"] < 0:
        out.append(f"seed: must be >= 0, got {v['seed']}")
    if "generations" in v and v["generations"] < 0:
        out.append(f"generations: must be >= 0, got {v['generations']}")
    if "subsets" in v and v["subsets"] < 1:
        out.append(f"subsets: must be >= 1, got {v['subsets']}")
    if "dataset_id" in v and not 1 <= v["dataset_id"] <= 999:
        out.append(f"dataset_id: must be between 1 and 999, got {v['dataset_id']}")
    if "dataset_name" in v and not NAME_RE.match(v["dataset_name"]):
        out.append(f"dataset_name: {v['dataset_name']!r} must be letters, digits, '_' or '-' "
                   "(it becomes the folder Dataset<id>_<name>)")
    for key, value in v.get("eval_label_map", {}).items():
        if not (isinstance(key, str) and key.isdigit()) or not (is_int(value) and value >= 0):
            out.append(f"eval_label_map.{key}: must map a label value (a string of digits) to a label value "
                       f">= 0, e.g. {{\"2\": 1}}; got {got(value)}")
    return out


def _source_problems(v: Mapping[str, Any]) -> List[str]:
    if "sources" not in v:
        return []
    out = []
    sources = list(v["sources"])
    if not sources:
        out.append("sources: at least one source dataset is needed")
    for s in sources:
        if not s.strip():
            out.append("sources: empty entry")
        elif not os.path.isabs(s) and ("/" in s or "\\" in s or s in (".", "..")):
            out.append(f"sources: {s!r} is a relative path; give a dataset name under nnUNet_raw "
                       "(Dataset980_SyntheticA) or an absolute path")
        m = SOURCE_ID_RE.match(os.path.basename(s.rstrip("/")))
        if m and "dataset_id" in v and int(m.group(1)) == v["dataset_id"]:
            out.append(f"dataset_id: {v['dataset_id']} is the id of source {s!r}; the experiment "
                       "dataset needs its own id or it would overwrite the source")
    rep = sorted(s for s, n in Counter(sources).items() if n > 1)
    if rep:
        out.append(f"sources: repeated {', '.join(rep)}")
    return out


def _fold_problems(v: Mapping[str, Any]) -> List[str]:
    """An integer fold is one of nnU-Net's 5-fold split of the labeled cases (do_split)."""
    fold = v.get("fold")
    if not is_int(fold):
        return []
    if not 0 <= fold < NNUNET_FOLDS:
        return [f"fold: {fold} is not a fold of nnU-Net's {NNUNET_FOLDS}-fold split (0-{NNUNET_FOLDS - 1}); "
                'use "all" to train every model on all labeled cases']
    n = len(set(v["labeled"])) if "labeled" in v else None
    if n is not None and n < NNUNET_FOLDS:
        return [f"fold: {fold} needs nnU-Net's {NNUNET_FOLDS}-fold split of the labeled cases, which needs at "
                f"least {NNUNET_FOLDS} labeled cases (the plan has {n}); use \"all\""]
    return []


def _section_problems(v: Mapping[str, Any]) -> List[str]:
    out = []
    if v.get("network") is not None:
        conf = v.get("configuration")
        out += NetworkSection.problems(v["network"], configuration=conf if conf in CONFIGURATIONS else None)
    if v.get("training") is not None:
        out += TrainingSection.problems(v["training"])
    sources = list(v["sources"]) if "sources" in v else None
    for source, spec in (v.get("synthetic") or {}).items():
        out += SyntheticSpec.problems(str(source), spec, sources)
    if v.get("slurm"):
        out += slurm_problems(v["slurm"])
    if v.get("case_rule"):
        out += CaseRule.problems(v["case_rule"], sources)
        if v.get("reference") or v.get("test"):
            out.append("case_rule: reference and test must be empty when case_rule fills them")
    return out


def _method_problems(values: Mapping[str, Any]) -> List[str]:
    """The method's name and its own rules (generations, subsets, reference set), from the method registry.

    Args:
        values: the plan's fields that have the right type (absent: missing or mistyped).
    """
    from atso_nnunet.methods import method_problems  # the registry imports no nnU-Net either

    # a negative generations or subsets count is refused above already, whatever the method
    checked = {k: v for k, v in values.items()
               if not (k == "generations" and v < 0) and not (k == "subsets" and v < 1)}
    return method_problems(checked)


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

"""Checks of a plan given as JSON data: every problem at once, each message starting with its
field's path (``training.num_epochs: must be a positive integer, got "3"``).

Types of the plain fields, values, sources, folds, each section (its class in
:mod:`atso_nnunet.plan.sections`) and the method's own rules (the method registry); the case lists
are checked in :mod:`atso_nnunet.plan.cases`. :func:`atso_nnunet.plan.schema.plan_problems` runs them all.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any, Callable, Dict, List, Mapping, Tuple

from atso_nnunet.errors import InputError
from atso_nnunet.limits import limit_problem
from atso_nnunet.plan.fields import (ALIASES, CONFIGURATIONS, FUSIONS, MAX_LABEL_VALUE, METRICS, NNUNET_FOLDS,
                                     NUMBER_LIMITS, PSEUDO_LABEL_VOLUMES, UNSUPPORTED_CONFIGURATIONS)
from atso_nnunet.plan.sections import (NAME_RE, SOURCE_ID_RE, CaseRule, NetworkSection, SyntheticSpec,
                                       TrainingSection, is_int, slurm_problems)
from atso_nnunet.plan.training import got
from atso_nnunet.monitors.ship_rule import SHIP_RULES
from atso_nnunet.monitors.stability import StabilityFilter
from atso_nnunet.views import VIEWS


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
    "pseudo_label_volume": (lambda v: isinstance(v, str), 'a string ("predicted" or "labeled_mean")'),
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
    volume = v.get("pseudo_label_volume", "predicted")
    if volume not in PSEUDO_LABEL_VOLUMES:
        out.append(f"pseudo_label_volume: unknown value {volume!r}; choose from {', '.join(PSEUDO_LABEL_VOLUMES)} "
                   "(predicted: the teacher's argmax; labeled_mean: thresholded to the labeled cases' mean volume)")
    elif volume == "labeled_mean" and v.get("fusion", "vote") != "mean":
        out.append("pseudo_label_volume: 'labeled_mean' thresholds the mean foreground probability of the views; "
                   f"it needs \"fusion\": \"mean\" (the plan has {v.get('fusion', 'vote')!r})")
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
    for key in ("seed", "generations", "subsets"):
        lo, hi = NUMBER_LIMITS[key]
        if key in v and v[key] < lo:
            out.append(f"{key}: must be >= {lo}, got {v[key]}")
        elif key in v and v[key] > hi:
            out.append(f"{key}: {limit_problem(v[key], lo, hi)}")
    lo, hi = NUMBER_LIMITS["dataset_id"]
    if "dataset_id" in v and not lo <= v["dataset_id"] <= hi:
        out.append(f"dataset_id: must be between {lo} and {hi}, got {v['dataset_id']}")
    if "dataset_name" in v and not NAME_RE.match(v["dataset_name"]):
        out.append(f"dataset_name: {v['dataset_name']!r} must be letters, digits, '_' or '-' "
                   "(it becomes the folder Dataset<id>_<name>)")
    for key, value in v.get("eval_label_map", {}).items():
        if (not (isinstance(key, str) and key.isdigit() and int(key) <= MAX_LABEL_VALUE)
                or not (is_int(value) and 0 <= value <= MAX_LABEL_VALUE)):
            out.append(f"eval_label_map.{key}: must map a label value (a string of digits) to a label value, "
                       f"each 0 to {MAX_LABEL_VALUE}, e.g. {{\"2\": 1}}; got {got(value)}")
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

    # a generations or subsets count out of its limits is refused above already, whatever the method
    checked = {k: v for k, v in values.items()
               if not (k in ("generations", "subsets") and not NUMBER_LIMITS[k][0] <= v <= NUMBER_LIMITS[k][1])}
    return method_problems(checked)

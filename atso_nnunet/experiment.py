"""Experiment plans: the JSON files under ``plans/<dataset>/<split>.json``, validated before any work.

An :class:`ExperimentPlan` says which cases form the labeled set S, the reference (unlabeled) set
R and the test set E, where they come from, and how to run the method (ATSO, STSO, self-learning
or supervised only). Plans are plain JSON a person can read and diff; see ``docs/design.md``.

Validation collects *every* problem of a plan and raises one :class:`~atso_nnunet.errors.InputError`
that lists them, each naming the field (and the case where one is involved), so a plan is fixed
in one go rather than one error per run.

``sources`` entries are either

- a folder name under ``nnUNet_raw`` (``"Dataset980_SyntheticA"``), or
- an absolute path: an nnU-Net raw dataset folder (cases in ``imagesTr``/``imagesTs``/...), or a
  plain folder of images ``<case>_0000.nii.gz`` without labels, as
  ``atso_nnunet_make_plan --unlabeled DIR`` records it.

Relative paths are rejected: they would depend on the working directory of the run.

The reference set is split into ``subsets`` parts by :func:`split_reference` (seeded, balanced,
deterministic) unless the plan gives ``reference_split`` explicitly; :func:`resolved` returns the
plan as JSON with the split filled in, to be written next to a run's outputs.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.io import write_json
from atso_nnunet.views import VIEWS

logger = logging.getLogger(__name__)

METRICS: Tuple[str, ...] = ("mean", "global")
CONFIGURATIONS: Tuple[str, ...] = ("2d", "3d_fullres", "3d_lowres")
SETS: Tuple[str, ...] = ("labeled", "reference", "test")
PLANS_PACKAGE = "atso_nnunet.plans"

# Key order of the JSON files (that of docs/design.md), used when writing plans.
KEY_ORDER: Tuple[str, ...] = (
    "name", "note", "sources", "dataset_id", "dataset_name", "convert_hint", "labeled", "reference",
    "test", "case_rule", "seed", "subsets", "generations", "views", "configuration", "fold", "method", "metric",
    "eval_label_map", "network", "schedule", "synthetic", "slurm", "reference_split",
)
REQUIRED_KEYS: Tuple[str, ...] = (
    "name", "sources", "dataset_id", "dataset_name", "labeled", "reference", "test", "method",
    "generations",
)

_CASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_SOURCE_ID_RE = re.compile(r"^Dataset(\d+)_")


@dataclass(frozen=True)
class ExperimentPlan:
    """One experiment: data sets, their sources and the method's settings (one plan JSON file).

    Constructing a plan validates it (:meth:`validate`); an invalid plan cannot exist.

    Attributes:
        name: human-readable title.
        sources: nnU-Net raw datasets the cases come from (names under ``nnUNet_raw`` or
            absolute paths, see the module docstring).
        dataset_id: nnU-Net id of the experiment dataset the driver materialises (1-999, not
            the id of a source).
        dataset_name: its name, ``Dataset<dataset_id>_<dataset_name>``.
        labeled: case ids of the labeled set S.
        reference: case ids of the reference (unlabeled) set R.
        test: case ids of the test set E (may be empty: no evaluation on E).
        method: ``atso``, ``stso``, ``self`` (self-learning, student initialised from its
            teacher) or ``supervised`` (M0 only).
        generations: teacher-student generations T (>= 1; 0 for ``supervised``).
        note: where the protocol comes from.
        convert_hint: command that builds the sources.
        seed: seed of the reference split.
        subsets: number K of reference subsets (ATSO: >= 2).
        views: slicing views, a subset of :data:`atso_nnunet.views.VIEWS`.
        configuration: nnU-Net configuration (``2d`` for tri-view 2D).
        fold: nnU-Net fold, ``"all"`` or a fold number.
        metric: ``mean`` (mean of per-case DSC, the paper's) or ``global`` (pooled DSC).
        eval_label_map: ground-truth values mapped before scoring, ``{"2": 1}``.
        network: optional network overrides for small runs (``planning.NetworkOverride``).
        schedule: optional training-length overrides (``trainers/config.py``).
        synthetic: generator settings of a synthetic source.
        case_rule: reference and test sets read from a converted source instead of listed:
            ``{"source": "Dataset802_MSDPancreas", "folds": 4, "test_folds": [0]}`` = the source's
            labeled cases sorted by id, cut into contiguous folds (larger folds last); the test folds
            are E, the others R (:func:`apply_case_rule`). ``reference`` and ``test`` stay empty.
        slurm: optional SLURM settings for ``--executor slurm`` (fields of
            :class:`atso_nnunet.execution.slurm.SlurmConfig`); command-line flags override them.
        reference_split: explicit K lists partitioning ``reference``; None: computed by
            :func:`split_reference` from ``seed``.
    """

    name: str
    sources: Tuple[str, ...]
    dataset_id: int
    dataset_name: str
    labeled: Tuple[str, ...]
    reference: Tuple[str, ...]
    test: Tuple[str, ...]
    method: str
    generations: int
    note: str = ""
    convert_hint: str = ""
    seed: int = 0
    subsets: int = 2
    views: Tuple[str, ...] = VIEWS
    configuration: str = "2d"
    fold: Any = "all"
    metric: str = "mean"
    eval_label_map: Dict[str, int] = field(default_factory=dict)
    network: Optional[Dict[str, Any]] = None
    schedule: Optional[Dict[str, Any]] = None
    synthetic: Optional[Dict[str, Any]] = None
    slurm: Optional[Dict[str, Any]] = None
    case_rule: Optional[Dict[str, Any]] = None
    reference_split: Optional[Tuple[Tuple[str, ...], ...]] = None

    def __post_init__(self):
        # Lists from JSON (or from a caller) become tuples and dicts are copied, so a plan never
        # shares mutable state with the caller; then the whole plan is checked.
        for name in ("sources", "labeled", "reference", "test", "views"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.reference_split, (list, tuple)):
            object.__setattr__(self, "reference_split", tuple(
                tuple(s) if isinstance(s, (list, tuple)) else s for s in self.reference_split))
        for name in ("eval_label_map", "network", "schedule", "synthetic", "slurm", "case_rule"):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, dict(value))
        self.validate()

    def validate(self, origin: str = "experiment plan") -> None:
        """Check the whole plan.

        Raises:
            InputError: listing every problem found, each naming its field (and case).
        """
        _raise_if(plan_problems(self.to_dict(include_split=True)), origin)

    def to_dict(self, include_split: bool = False) -> Dict[str, Any]:
        """The plan as JSON-able data in the key order of the plan files.

        Args:
            include_split: also write ``reference_split`` when it is None (as ``null``).
        """
        out: Dict[str, Any] = {}
        for key in KEY_ORDER:
            value = getattr(self, key)
            if key == "reference_split" and value is None and not include_split:
                continue
            out[key] = _jsonable(value)
        return out

    @property
    def final_model(self) -> str:
        """Name of the model whose test predictions are the result (see :mod:`atso_nnunet.schedule`)."""
        from atso_nnunet.methods import get_method

        return get_method(self.method).final_model(self)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _raise_if(problems: List[str], origin: str) -> None:
    if problems:
        n = len(problems)
        raise InputError(f"{origin} has {n} problem{'s' if n > 1 else ''}:\n"
                         + "\n".join(f"  - {p}" for p in problems))


# ---------------------------------------------------------------------------------------------
# validation


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def _type_problem(key: str, value: Any) -> Optional[str]:
    """The type error of one field, or None (values are checked separately)."""
    expect = {
        "name": (lambda v: isinstance(v, str), "a string"),
        "note": (lambda v: isinstance(v, str), "a string"),
        "convert_hint": (lambda v: isinstance(v, str), "a string"),
        "sources": (_is_str_list, "a list of strings"),
        "dataset_id": (_is_int, "an integer"),
        "dataset_name": (lambda v: isinstance(v, str), "a string"),
        "labeled": (_is_str_list, "a list of case ids (strings)"),
        "reference": (_is_str_list, "a list of case ids (strings)"),
        "test": (_is_str_list, "a list of case ids (strings)"),
        "seed": (_is_int, "an integer"),
        "subsets": (_is_int, "an integer"),
        "generations": (_is_int, "an integer"),
        "views": (_is_str_list, "a list of view names"),
        "configuration": (lambda v: isinstance(v, str), "a string"),
        "fold": (lambda v: v == "all" or _is_int(v), '"all" or a fold number'),
        "method": (lambda v: isinstance(v, str), "a string"),
        "metric": (lambda v: isinstance(v, str), "a string"),
        "eval_label_map": (lambda v: isinstance(v, dict), 'an object such as {"2": 1}'),
        "network": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "schedule": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "synthetic": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "slurm": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "case_rule": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "reference_split": (lambda v: v is None or (isinstance(v, (list, tuple))
                                                   and all(_is_str_list(s) for s in v)),
                            "a list of lists of case ids, or null"),
    }
    ok, what = expect[key]
    if ok(value):
        return None
    return f"{key}: must be {what}, got {type(value).__name__} {value!r:.60}"


def _defaults() -> Dict[str, Any]:
    out = {}
    for f in dataclasses.fields(ExperimentPlan):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def plan_problems(data: Mapping[str, Any]) -> List[str]:
    """Every problem of a plan given as JSON data (empty list: the plan is valid).

    Checks unknown keys (with the closest known key as a hint), missing required keys, types,
    values (method, metric, views, configuration, generations, subsets, ids), case ids that are
    malformed, repeated within a set or shared by two of labeled / reference / test, the size of
    the reference set against ``subsets`` and an explicit ``reference_split``.

    Args:
        data: the plan's JSON object (lists or tuples for sequences).

    Returns:
        Human-readable problems, each naming its field and, where one is involved, the case.
    """
    if not isinstance(data, Mapping):
        return [f"a plan must be a JSON object, got {type(data).__name__}"]
    problems: List[str] = []
    for key in data:
        if key not in KEY_ORDER:
            hint = difflib.get_close_matches(str(key), KEY_ORDER, n=1)
            problems.append(f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint
                                                       else f"; allowed keys: {', '.join(KEY_ORDER)}"))
    for key in REQUIRED_KEYS:
        if key not in data:
            problems.append(f"{key}: required key missing")

    values = {**_defaults(), **{k: v for k, v in data.items() if k in KEY_ORDER}}
    ok = set()  # fields present with the right type; value checks only look at these
    for key in KEY_ORDER:
        if key not in values:
            continue
        p = _type_problem(key, values[key])
        if p:
            problems.append(p)
        else:
            ok.add(key)
    problems += _value_problems(values, ok)
    return problems


def _value_problems(v: Mapping[str, Any], ok: Collection[str]) -> List[str]:
    problems: List[str] = []
    method = v.get("method") if "method" in ok else None

    if "name" in ok and not v["name"].strip():
        problems.append("name: must not be empty")
    if "method" in ok:
        from atso_nnunet.methods import method_problems

        method_issues = method_problems(v)
        problems += method_issues
        if any(p.startswith("method:") for p in method_issues):
            method = None
    if "metric" in ok and v["metric"] not in METRICS:
        problems.append(f"metric: unknown metric {v['metric']!r}; choose from {', '.join(METRICS)}")
    if "configuration" in ok and v["configuration"] not in CONFIGURATIONS:
        problems.append(f"configuration: unknown nnU-Net configuration {v['configuration']!r}; "
                        f"choose from {', '.join(CONFIGURATIONS)}")
    if "views" in ok:
        views = list(v["views"])
        bad = [x for x in views if x not in VIEWS]
        if bad:
            problems.append(f"views: unknown view(s) {', '.join(map(repr, bad))}; choose from {', '.join(VIEWS)}")
        if not views:
            problems.append("views: at least one view is needed")
        rep = sorted(x for x, n in Counter(views).items() if n > 1)
        if rep:
            problems.append(f"views: repeated {', '.join(rep)}")
    if "fold" in ok and _is_int(v["fold"]) and v["fold"] < 0:
        problems.append(f"fold: must be \"all\" or a fold number >= 0, got {v['fold']}")
    if "seed" in ok and v["seed"] < 0:
        problems.append(f"seed: must be >= 0, got {v['seed']}")
    if "dataset_id" in ok and not 1 <= v["dataset_id"] <= 999:
        problems.append(f"dataset_id: must be between 1 and 999, got {v['dataset_id']}")
    if "dataset_name" in ok and not _DATASET_NAME_RE.match(v["dataset_name"]):
        problems.append(f"dataset_name: {v['dataset_name']!r} must be letters, digits, '_' or '-' "
                        "(it becomes the folder Dataset<id>_<name>)")

    if "generations" in ok and v["generations"] < 0:
        problems.append(f"generations: must be >= 0, got {v['generations']}")
    if "subsets" in ok and v["subsets"] < 1:
        problems.append(f"subsets: must be >= 1, got {v['subsets']}")

    problems += _source_problems(v, ok)
    problems += _case_problems(v, ok, method)
    problems += _rule_problems(v, ok)
    problems += _mapping_problems(v, ok)
    return problems


def _source_problems(v: Mapping[str, Any], ok: Collection[str]) -> List[str]:
    if "sources" not in ok:
        return []
    problems = []
    sources = list(v["sources"])
    if not sources:
        problems.append("sources: at least one source dataset is needed")
    for s in sources:
        if not s.strip():
            problems.append("sources: empty entry")
        elif not os.path.isabs(s) and ("/" in s or "\\" in s or s in (".", "..")):
            problems.append(f"sources: {s!r} is a relative path; give a dataset name under nnUNet_raw "
                            "(Dataset980_SyntheticA) or an absolute path")
        m = _SOURCE_ID_RE.match(os.path.basename(s.rstrip("/")))
        if m and "dataset_id" in ok and int(m.group(1)) == v["dataset_id"]:
            problems.append(f"dataset_id: {v['dataset_id']} is the id of source {s!r}; the experiment "
                            "dataset needs its own id or it would overwrite the source")
    rep = sorted(s for s, n in Counter(sources).items() if n > 1)
    if rep:
        problems.append(f"sources: repeated {', '.join(rep)}")
    return problems


def _case_problems(v: Mapping[str, Any], ok: Collection[str], method: Optional[str]) -> List[str]:
    problems = []
    sets = {s: list(v[s]) for s in SETS if s in ok}
    for s, ids in sets.items():
        bad = [c for c in ids if not _CASE_RE.match(c)]
        if bad:
            problems.append(f"{s}: malformed case id(s) {', '.join(map(repr, bad))} (letters, digits, "
                            "'_', '-', '.'; no folder, no file ending)")
        rep = sorted(c for c, n in Counter(ids).items() if n > 1)
        if rep:
            problems.append(f"{s}: case(s) listed more than once: {', '.join(rep)}")
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(set(sets[a]) & set(sets[b]))
            if both:
                problems.append(f"{a}/{b}: {len(both)} case(s) in both {a} and {b}: {', '.join(both)}")
    if "labeled" in sets and not sets["labeled"]:
        problems.append("labeled: the labeled set S is empty; M0 needs labeled cases")
    if "reference" in sets:
        n_ref = len(set(sets["reference"]))
        k = v.get("subsets") if "subsets" in ok else None
        if k is not None and k >= 1 and 0 < n_ref < k:
            problems.append(f"reference: {n_ref} reference case(s) cannot fill {k} subsets; "
                            f"give at least {k} reference cases or lower subsets")
        if "reference_split" in ok and v["reference_split"] is not None:
            problems += _split_problems(v["reference_split"], sets["reference"], k)
    return problems


def _rule_problems(v: Mapping[str, Any], ok: Collection[str]) -> List[str]:
    rule = v.get("case_rule") if "case_rule" in ok else None
    if not rule:
        return []
    problems = []
    unknown = sorted(set(rule) - {"source", "folds", "test_folds"})
    if unknown:
        problems.append(f"case_rule: unknown key(s) {', '.join(unknown)}; allowed: source, folds, test_folds")
    if not isinstance(rule.get("source"), str) or not rule.get("source"):
        problems.append("case_rule.source: the source dataset whose labeled cases are split (one of sources)")
    elif "sources" in ok and rule["source"] not in v["sources"]:
        problems.append(f"case_rule.source: {rule['source']!r} is not one of sources {list(v['sources'])}")
    k = rule.get("folds")
    if not _is_int(k) or k < 2:
        problems.append(f"case_rule.folds: an integer >= 2, got {k!r}")
    tf = rule.get("test_folds")
    if not isinstance(tf, list) or not all(_is_int(f) for f in tf) or (_is_int(k) and k >= 2 and (
            not tf or len(set(tf)) >= k or any(not 0 <= f < k for f in tf))):
        problems.append(f"case_rule.test_folds: a non-empty list of fold numbers in [0, folds), not all of them; "
                        f"got {tf!r}")
    if any(v.get(s) for s in ("reference", "test") if s in ok):
        problems.append("case_rule: reference and test must be empty when case_rule fills them")
    return problems


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


def apply_case_rule(plan: "ExperimentPlan", source_dir: os.PathLike) -> "ExperimentPlan":
    """Fill ``reference`` and ``test`` from ``plan.case_rule`` and the converted source dataset.

    Returns the plan with explicit lists and no ``case_rule`` (the rule is recorded in ``note``),
    so the resolved plan written next to a run's outputs reads like any other.

    Raises:
        InputError: the source has not been converted (naming the plan's conversion command) or
            holds too few labeled cases.
    """
    rule = plan.case_rule
    if not rule:
        return plan
    source_dir = Path(source_dir)
    labels = source_dir / "labelsTr"
    if not labels.is_dir():
        how = f" Create it first: {plan.convert_hint}" if plan.convert_hint else ""
        raise InputError(f"case_rule: source {rule['source']} not found at {source_dir} (plan '{plan.name}'); its "
                         f"labeled cases make the reference and test sets.{how}")
    ending = ".nii.gz"
    ids = sorted(p.name[:-len(ending)] for p in labels.iterdir()
                 if p.name.endswith(ending) and not p.name.startswith("."))
    ids = [c for c in ids if c not in set(plan.labeled)]
    if len(ids) < rule["folds"]:
        raise InputError(f"case_rule: {source_dir} has {len(ids)} labeled case(s), fewer than {rule['folds']} folds")
    folds = contiguous_folds(ids, rule["folds"])
    test = [c for f in rule["test_folds"] for c in folds[f]]
    reference = [c for i, f in enumerate(folds) if i not in rule["test_folds"] for c in f]
    note = (plan.note + " " if plan.note else "") + (
        f"[reference/test from case_rule {json.dumps(rule)}: {len(ids)} labeled cases of {rule['source']} in "
        f"{rule['folds']} contiguous folds ({', '.join(str(len(f)) for f in folds)})]")
    return dataclasses.replace(plan, reference=tuple(reference), test=tuple(test), case_rule=None, note=note)


def _split_problems(split: Sequence[Sequence[str]], reference: Sequence[str], k: Optional[int]) -> List[str]:
    problems = []
    if k is not None and len(split) != k:
        problems.append(f"reference_split: has {len(split)} subsets but subsets is {k}")
    for i, part in enumerate(split, 1):
        if not part:
            problems.append(f"reference_split: subset {i} is empty")
    seen = Counter(c for part in split for c in part)
    rep = sorted(c for c, n in seen.items() if n > 1)
    if rep:
        problems.append(f"reference_split: case(s) in more than one subset: {', '.join(rep)}")
    extra = sorted(set(seen) - set(reference))
    if extra:
        problems.append(f"reference_split: case(s) not in reference: {', '.join(extra)}")
    missing = sorted(set(reference) - set(seen))
    if missing:
        problems.append(f"reference_split: reference case(s) in no subset: {', '.join(missing)}")
    return problems


def _mapping_problems(v: Mapping[str, Any], ok: Collection[str]) -> List[str]:
    problems = []
    if "eval_label_map" in ok:
        for key, value in v["eval_label_map"].items():
            if not (isinstance(key, str) and key.isdigit()) or not (_is_int(value) and value >= 0):
                problems.append(f"eval_label_map: entry {key!r}: {value!r} must map a label value "
                                "(a string of digits) to a label value >= 0, e.g. {\"2\": 1}")
    for name in ("network", "schedule", "synthetic", "slurm"):
        if name in ok and v[name] is not None:
            bad = [k for k in v[name] if not isinstance(k, str)]
            if bad:
                problems.append(f"{name}: keys must be strings, got {bad}")
    return problems


# ---------------------------------------------------------------------------------------------
# loading, finding, overriding


def plan_from_dict(data: Mapping[str, Any], origin: str = "experiment plan") -> ExperimentPlan:
    """Build a plan from JSON data after checking it.

    Args:
        data: the plan's JSON object.
        origin: how errors name the plan (its file path).

    Raises:
        InputError: listing every problem (see :func:`plan_problems`).
    """
    _raise_if(plan_problems(data), origin)
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


def plans_root() -> Path:
    """Folder of the packaged plans (``plans/`` of the source tree, installed as ``atso_nnunet.plans``)."""
    return Path(str(importlib.resources.files(PLANS_PACKAGE)))


def available_plans(root: Optional[os.PathLike] = None) -> Dict[str, List[str]]:
    """``{dataset: [split, ...]}`` of the plans under ``root`` (default: the packaged plans)."""
    root = plans_root() if root is None else Path(root)
    out: Dict[str, List[str]] = {}
    if root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            out[d.name] = sorted(f.stem for f in d.glob("*.json"))
    return out


def find_plan(dataset: str, split: str, root: Optional[os.PathLike] = None) -> Path:
    """Locate ``<root>/<dataset>/<split>.json``; works from any working directory.

    Args:
        dataset: plan folder, e.g. ``"synthetic"`` or ``"NIH"``.
        split: plan name inside it, e.g. ``"10pct"`` (a trailing ``.json`` is accepted).
        root: plans folder; default :func:`plans_root` (the installed ``atso_nnunet.plans``).

    Raises:
        InputError: no such dataset or split; the message lists the available ones.
    """
    root = plans_root() if root is None else Path(root)
    if split.endswith(".json"):
        split = split[: -len(".json")]
    path = root / dataset / f"{split}.json"
    if path.is_file():
        return path
    avail = available_plans(root)
    listing = "; ".join(f"{d}: {', '.join(s) or '(no plans)'}" for d, s in avail.items()) or "none"
    if dataset not in avail:
        raise InputError(f"no plan dataset {dataset!r} in {root}; available datasets and splits: {listing}")
    raise InputError(f"no plan {split!r} for dataset {dataset!r} ({path} not found); "
                     f"available splits of {dataset}: {', '.join(avail[dataset]) or 'none'}")


def with_overrides(plan: ExperimentPlan, method: Optional[str] = None, generations: Optional[int] = None,
                   views: Optional[Sequence[str]] = None, configuration: Optional[str] = None,
                   subsets: Optional[int] = None) -> ExperimentPlan:
    """A copy of ``plan`` with command-line overrides applied, validated again.

    ``method="supervised"`` without ``generations`` sets generations to 0 (supervised trains M0
    only). Overriding ``subsets`` drops an explicit ``reference_split`` (it is recomputed).

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
    data = {**plan.to_dict(include_split=True), **_jsonable(changes)}
    return plan_from_dict(data, origin="experiment plan with overrides "
                          + ", ".join(f"{k}={v!r}" for k, v in changes.items()))


# ---------------------------------------------------------------------------------------------
# reference split, resolved plan


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
    if not _is_int(subsets) or subsets < 1:
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
    _raise_if(dataset_problems(plan, available, labeled_available), origin)


# ---------------------------------------------------------------------------------------------
# plans for a team's own dataset


def read_case_list(path: os.PathLike) -> List[str]:
    """Case ids from a text file, one per line; blank lines and ``#`` comments are skipped.

    A line may also be an image or label file name (``case_0000.nii.gz``, ``case.nii.gz``).

    Raises:
        InputError: the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: case list not found")
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = os.path.basename(line)
        for tail in (layout.CHANNEL + layout.FILE_ENDING, layout.FILE_ENDING):
            if name.endswith(tail):
                name = name[: -len(tail)]
                break
        ids.append(name)
    return ids


def plan_from_dataset(raw_dataset_dir: os.PathLike, unlabeled_dir: os.PathLike,
                      test_list: Optional[os.PathLike] = None, *, dataset_id: int,
                      dataset_name: Optional[str] = None, name: Optional[str] = None,
                      note: Optional[str] = None, method: str = "atso", generations: int = 2,
                      subsets: int = 2, seed: int = 0, views: Sequence[str] = VIEWS,
                      configuration: str = "2d", fold: Any = "all", metric: str = "mean",
                      eval_label_map: Optional[Mapping[str, int]] = None,
                      network: Optional[Mapping[str, Any]] = None,
                      schedule: Optional[Mapping[str, Any]] = None) -> ExperimentPlan:
    """Plan for a team's own nnU-Net dataset plus a folder of unlabeled images.

    S = the cases of ``<raw_dataset_dir>/imagesTr`` (each needs its ``labelsTr`` label);
    R = the ``<case>_0000.nii.gz`` images of ``unlabeled_dir`` minus the test cases;
    E = the ids of ``test_list`` (see :func:`read_case_list`), found in ``unlabeled_dir`` (then
    taken out of R; no ground truth, so E is predicted but not scored) or in the raw dataset's
    ``imagesTs`` (scored where ``labelsTs`` has the label). Both folders are recorded in
    ``sources`` as absolute paths; the note records which test ids were taken out of R.

    Raises:
        InputError: missing folders, no images, labeled cases without labels, unknown test ids,
            or any plan problem (all listed).
    """
    raw = Path(raw_dataset_dir).expanduser().resolve()
    unl = Path(unlabeled_dir).expanduser().resolve()
    problems = []
    for p, what in ((raw, "raw dataset"), (unl, "unlabeled folder")):
        if not p.is_dir():
            problems.append(f"{what} {p}: not a folder")
    _raise_if(problems, "make plan")

    labeled = layout.case_ids_in(raw / layout.IMAGES_TR)
    if not labeled:
        problems.append(f"{raw / layout.IMAGES_TR}: no images <case>_0000{layout.FILE_ENDING}")
    no_label = sorted(set(labeled) - set(layout.label_ids_in(raw / layout.LABELS_TR)))
    if no_label:
        problems.append(f"{raw / layout.LABELS_TR}: labeled case(s) without label file: {', '.join(no_label)}")
    unlabeled = layout.case_ids_in(unl)
    if not unlabeled:
        problems.append(f"{unl}: no images <case>_0000{layout.FILE_ENDING}")

    test: List[str] = []
    if test_list is not None:
        try:
            test = read_case_list(test_list)
        except InputError as e:
            problems.append(str(e))
        raw_test = set(layout.case_ids_in(raw / layout.IMAGES_TS))
        unknown = sorted(set(test) - set(unlabeled) - raw_test - set(labeled))
        if unknown:
            problems.append(f"test list {test_list}: case(s) in neither {unl} nor {raw / layout.IMAGES_TS}: "
                            f"{', '.join(unknown)}")
    _raise_if(problems, "make plan")

    taken = sorted(set(test) & set(unlabeled))
    test_ids = set(test)
    reference = [c for c in unlabeled if c not in test_ids]
    raw_name = raw.name
    m = re.match(r"^Dataset\d+_(.+)$", raw_name)
    dataset_name = dataset_name or f"{m.group(1) if m else raw_name}{method.upper()}"
    auto_note = (f"made by atso_nnunet_make_plan: labeled = {raw / layout.IMAGES_TR}, reference = {unl}"
                 + (f", test ids from {Path(test_list).resolve()}" if test_list is not None else ", no test set")
                 + (f"; {len(taken)} test case(s) taken out of the reference set: {', '.join(taken)}"
                    if taken else ""))
    data = {
        "name": name or f"{dataset_name}: {len(labeled)} labeled, {len(reference)} unlabeled",
        "note": f"{note}; {auto_note}" if note else auto_note,
        "sources": [str(raw), str(unl)],
        "dataset_id": dataset_id,
        "dataset_name": dataset_name,
        "labeled": labeled,
        "reference": reference,
        "test": test,
        "seed": seed,
        "subsets": subsets,
        "generations": generations,
        "views": list(views),
        "configuration": configuration,
        "fold": fold,
        "method": method,
        "metric": metric,
        "eval_label_map": _copy(eval_label_map) if eval_label_map is not None else {},
        "network": _copy(network),
        "schedule": _copy(schedule),
    }
    return plan_from_dict(data, origin="generated plan")


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def write_plan(plan: ExperimentPlan, out_path: os.PathLike) -> Path:
    """Atomically write ``plan`` as JSON (without a computed split) and return the path."""
    return write_json(plan.to_dict(), out_path)


def write_plan_from_dataset(raw_dataset_dir: os.PathLike, unlabeled_dir: os.PathLike,
                            test_list: Optional[os.PathLike] = None, *, out_path: os.PathLike,
                            **options: Any) -> ExperimentPlan:
    """:func:`plan_from_dataset`, written to ``out_path``; returns the plan.

    Args:
        raw_dataset_dir: the team's nnU-Net raw dataset (S = its ``imagesTr``).
        unlabeled_dir: folder of unlabeled ``<case>_0000.nii.gz`` images (R).
        test_list: optional text file of test case ids (E).
        out_path: plan JSON to write.
        **options: keyword arguments of :func:`plan_from_dataset` (``dataset_id`` required).

    Raises:
        InputError: see :func:`plan_from_dataset`.
    """
    plan = plan_from_dataset(raw_dataset_dir, unlabeled_dir, test_list, **options)
    write_plan(plan, out_path)
    logger.info("wrote plan %s: %d labeled, %d reference, %d test cases", out_path, len(plan.labeled),
                len(plan.reference), len(plan.test))
    return plan

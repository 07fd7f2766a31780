"""The experiment plan as typed data: :class:`ExperimentPlan`, one plan JSON file.

A plan file (``plans/<dataset>/<split>.json``, see ``docs/design.md``) becomes an
:class:`ExperimentPlan` whose sections are the dataclasses of :mod:`atso_nnunet.plan.sections`
(:class:`NetworkSection`, :class:`TrainingSection`, :class:`SyntheticSpec` per generated source,
:class:`CaseRule`) and a validated ``slurm`` mapping. :mod:`atso_nnunet.plan.load` checks a plan
completely. Nothing here imports nnU-Net, torch or SimpleITK.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from atso_nnunet.limits import limits
from atso_nnunet.plan.fields import KEY_ORDER, MAX_LABEL_VALUE, NUMBER_LIMITS
from atso_nnunet.plan.sections import CaseRule, NetworkSection, SyntheticSpec, TrainingSection, unknown_keys
from atso_nnunet.plan.training import got
from atso_nnunet.plan.cases import case_problems
from atso_nnunet.plan.validate import (_TYPES, _fold_problems, _method_problems, _renamed,
                                       _section_problems, _source_problems, _value_problems, raise_if)
from atso_nnunet.monitors.stability import StabilityFilter
from atso_nnunet.views import VIEWS



# ---------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class ExperimentPlan:
    """One experiment: data sets, their sources and the method's settings (one plan JSON file).

    Constructing a plan validates it completely (:func:`plan_problems`);
    an invalid plan cannot exist. Sections given as mappings are converted to their classes.

    Attributes:
        name: human-readable title.
        sources: nnU-Net raw datasets the cases come from: names under ``nnUNet_raw`` or
            absolute paths (a raw dataset, or a flat folder of ``<case>_0000.nii.gz`` images).
        dataset_id: nnU-Net id of the experiment dataset the driver materialises (1-999, not
            the id of a source).
        dataset_name: its name, ``Dataset<dataset_id>_<dataset_name>``.
        labeled: case ids of the labeled set S.
        reference: case ids of the reference (unlabeled) set R.
        test: case ids of the test set E (may be empty: no evaluation on E).
        validation: case ids of a validation set V, disjoint from S, R and E, for choosing settings
            (a benchmark's calibration scores V, never E). A run does not read them.
        method: a method of :mod:`atso_nnunet.methods` (``atso``, ``stso``, ``self``, ``supervised``).
        generations: teacher-student generations T (the method says how many are valid).
        note: where the protocol comes from.
        convert_hint: command that builds the sources.
        seed: seed of the reference split.
        subsets: number K of reference subsets (ATSO: >= 2).
        views: slicing views, a subset of :data:`atso_nnunet.views.VIEWS`.
        configuration: nnU-Net configuration the tri-view planner makes (:data:`CONFIGURATIONS`).
        fold: ``"all"`` (every labeled case trains) or a fold 0-4 of nnU-Net's 5-fold split.
        metric: ``mean`` (mean of per-case DSC, the paper's) or ``global`` (pooled DSC).
        eval_label_map: ground-truth values mapped before scoring, ``{"2": 1}``.
        fusion: how the views' predictions are fused: ``vote`` (majority vote, ties by
            probability) or ``mean`` (mean probability).
        method_options: options of a method, by method name (``{"atso": {"test_model":
            "combined"}}``; each method's options class says which exist).
        may_be_absent: case ids a source release may lack; a run leaves them out with a warning.
        network: optional network overrides for small runs.
        training: training settings (all unset: nnU-Net's defaults).
        synthetic: generator settings per synthetic source (generated on first use).
        slurm: optional SLURM settings for ``--executor slurm`` (fields of
            ``atso_nnunet.execution.slurm.config.SlurmConfig``); command-line flags override them.
        case_rule: reference and test sets read from a converted source (``reference`` and
            ``test`` stay empty until :func:`atso_nnunet.plan.splits.resolve_case_rule`).
        stability_filter: leave the pseudo-labelled cases that change most between two rounds out of
            the next trainings (:class:`atso_nnunet.monitors.stability.StabilityFilter`); None: off.
        pseudo_label_volume: ``predicted`` (the teacher's argmax) or ``labeled_mean``: each
            pseudo-label set thresholded at the one foreground probability that gives it the labeled
            cases' mean organ volume (:mod:`atso_nnunet.pseudolabels.volume_prior`; fusion ``mean``,
            binary tasks). Test predictions keep the argmax.
        ship_generation: which generation the run ships (:data:`atso_nnunet.monitors.ship_rule.SHIP_RULES`):
            ``last`` (T) or ``before_drift`` (chosen from the label-free drift monitor); the shipped
            generation's model is what ``atso_nnunet_segment`` uses (:mod:`atso_nnunet.run.shipping`).
        reference_split: explicit K lists partitioning ``reference``; None: computed by
            :func:`atso_nnunet.plan.splits.split_reference` from ``seed``.
    """

    name: str
    sources: Tuple[str, ...]
    dataset_id: int = field(metadata=limits(*NUMBER_LIMITS["dataset_id"]))
    dataset_name: str
    labeled: Tuple[str, ...]
    reference: Tuple[str, ...]
    test: Tuple[str, ...]
    method: str
    generations: int = field(metadata=limits(*NUMBER_LIMITS["generations"]))
    note: str = ""
    convert_hint: str = ""
    validation: Tuple[str, ...] = ()
    seed: int = field(default=0, metadata=limits(*NUMBER_LIMITS["seed"]))
    subsets: int = field(default=2, metadata=limits(*NUMBER_LIMITS["subsets"]))
    views: Tuple[str, ...] = VIEWS
    configuration: str = "2d"
    fold: Any = "all"
    metric: str = "mean"
    eval_label_map: Dict[str, int] = field(default_factory=dict, metadata=limits(
        limits_text=f"label values 0 to {MAX_LABEL_VALUE}"))
    network: Optional[NetworkSection] = None
    training: TrainingSection = field(default_factory=TrainingSection)
    synthetic: Dict[str, SyntheticSpec] = field(default_factory=dict)
    slurm: Optional[Dict[str, Any]] = None
    case_rule: Optional[CaseRule] = None
    fusion: str = "vote"
    method_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    may_be_absent: Tuple[str, ...] = ()
    stability_filter: Optional[StabilityFilter] = None
    pseudo_label_volume: str = "predicted"
    ship_generation: str = "last"
    reference_split: Optional[Tuple[Tuple[str, ...], ...]] = None

    def __post_init__(self):
        # Lists from JSON (or a caller) become tuples, dicts are copied, sections given as mappings
        # become their classes: a plan never shares mutable state with its caller. Then it is checked.
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("sources", "labeled", "reference", "test", "validation", "views", "may_be_absent"):
            if isinstance(getattr(self, name), list):
                put(name, tuple(getattr(self, name)))
        if isinstance(self.reference_split, (list, tuple)):
            put("reference_split", tuple(tuple(s) if isinstance(s, (list, tuple)) else s
                                         for s in self.reference_split))
        if isinstance(self.method_options, Mapping):
            put("method_options", {k: dict(v) if isinstance(v, Mapping) else v
                                   for k, v in self.method_options.items()})
        for name in ("eval_label_map", "slurm"):
            if isinstance(getattr(self, name), Mapping):
                put(name, dict(getattr(self, name)))
        if isinstance(self.network, Mapping):
            put("network", NetworkSection.from_dict(self.network))
        if self.network == NetworkSection():
            put("network", None)  # an empty override is no override
        if self.training is None or isinstance(self.training, Mapping):
            put("training", TrainingSection.from_dict(self.training))
        if self.synthetic is None:
            put("synthetic", {})
        elif isinstance(self.synthetic, Mapping):
            put("synthetic", {k: SyntheticSpec.from_dict(v) if isinstance(v, Mapping) else v
                              for k, v in self.synthetic.items()})
        if isinstance(self.case_rule, Mapping):
            put("case_rule", CaseRule.from_dict(self.case_rule))
        if isinstance(self.stability_filter, Mapping) and not StabilityFilter.problems(self.stability_filter):
            put("stability_filter", StabilityFilter.from_dict(self.stability_filter))
        self.validate()

    def validate(self, origin: str = "experiment plan") -> None:
        """Check the whole plan.

        Raises:
            InputError: listing every problem found, each starting with its field's path.
        """
        raise_if(plan_problems(self.to_dict(include_split=True)), origin)

    def to_dict(self, include_split: bool = False) -> Dict[str, Any]:
        """The plan as JSON-able data in the key order of the plan files.

        Sections that hold nothing are written as ``null``; the training section is ``training``.

        Args:
            include_split: also write ``reference_split`` when it is None (as ``null``).
        """
        out: Dict[str, Any] = {}
        for key in KEY_ORDER:
            value = getattr(self, key)
            if key == "reference_split" and value is None and not include_split:
                continue
            if key == "validation" and not value:
                continue  # plans (and run folders) made before V existed stay byte-identical
            if (key, value) in (("stability_filter", None), ("ship_generation", "last"),
                                ("pseudo_label_volume", "predicted")):
                continue  # likewise for plans made before these options existed
            if key == "training":
                value = value.to_dict() or None
            elif key == "synthetic":
                value = {k: s.to_dict() for k, s in value.items()} or None
            elif isinstance(value, (NetworkSection, CaseRule, StabilityFilter)):
                value = value.to_dict()
            out[key] = jsonable(value)
        return out

    @property
    def final_model(self) -> str:
        """Name of the model whose test predictions are the result (the method's, see :mod:`atso_nnunet.methods`)."""
        from atso_nnunet.methods import get_method

        return get_method(self.method).final_model(self)


REQUIRED_KEYS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExperimentPlan)
                                       if f.default is dataclasses.MISSING
                                       and f.default_factory is dataclasses.MISSING)  # type: ignore[misc]


def jsonable(value: Any) -> Any:
    """Tuples as lists, recursively (what ``json`` writes)."""
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def source_dir(paths: Any, source: str) -> Path:
    """Folder of a plan source: an absolute path, or a dataset name under ``paths.raw`` (``nnUNet_raw``)."""
    p = Path(source)
    return p if p.is_absolute() else Path(paths.raw) / source


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
    return (problems + _value_problems(v) + _source_problems(v) + case_problems(v) + _fold_problems(v)
            + _section_problems(v) + _method_problems(v))

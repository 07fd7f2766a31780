"""The method protocol and its registry.

A method is one small class in one module of this package, registered with :func:`register`.
It says what it adds to the schedule after the shared generation 0, which model is its result,
which nnU-Net trainer each model uses, what it needs from a plan, and the words the report and
``--help`` use for it. The driver, the runners, the report and the CLIs ask the method object;
nothing outside this package branches on a method's name.

Adding a method: a new module ``atso_nnunet/methods/<name>.py`` with a :class:`Method` subclass
decorated with ``@register`` (modules here are discovered on import), plus its tests. It then
appears in ``atso_nnunet_run --method``, in plan validation, the schedule and the report.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Type

SUPERVISED_TRAINER = "ATSOTrainer"
SEMI_TRAINER = "ATSOSemiTrainer"

_REGISTRY: Dict[str, "Method"] = {}


def fusion_words(fusion: str) -> str:
    """A fusion in words: ``vote`` -> "majority vote", ``mean`` -> "mean probability"."""
    return "majority vote" if fusion == "vote" else "mean probability"


def views_words(views, fusion: str = "vote") -> str:
    """How a model is scored over ``views`` with the plan's ``fusion``: "tri-view majority vote",
    "tri-view mean probability", "axial view only", ..."""
    views = list(views)
    if len(views) == 1:
        return f"{views[0]} view only"
    how = fusion_words(fusion)
    if len(views) == 3:
        return f"tri-view {how}"
    return f"{how} of the {' and '.join(views)} views"


class Method(ABC):
    """What a semi-supervised method (or baseline) contributes to a run.

    Class attributes:
        name: the plan's ``method`` value and the ``--method`` choice.
        summary: one line for ``--help`` and docs.
        how_evaluated: the report's sentence on which model is scored on E per generation.
        uses_subsets: whether the reference set is split into ``subsets`` parts that the
            method trains on separately (ATSO).
        needs_reference: whether the method needs reference (unlabeled) cases.
        min_generations: smallest valid ``generations`` (0 for labeled-only training).
        max_generations: largest valid ``generations`` (None: no limit).
        word: the method's name in reports and comparison tables (empty: ``name``).
        comparison_role: its part in a comparison of methods (:mod:`atso_nnunet.comparison`):
            ``"learner"`` (compared pairwise and against the baseline), ``"baseline"`` (labeled-only:
            trains each seed's M0, which the other runs adopt) or ``"bound"`` (a reference line the
            learners are read against, as the oracle).
        line_label, line_style: the reference line of a baseline or bound in the comparison figure.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    how_evaluated: ClassVar[str]
    uses_subsets: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = True
    min_generations: ClassVar[int] = 1
    max_generations: ClassVar[Any] = None
    word: ClassVar[str] = ""
    comparison_role: ClassVar[str] = "learner"
    line_label: ClassVar[str] = ""
    line_style: ClassVar[str] = "-"

    def plan_problems(self, values: Mapping[str, Any]) -> List[str]:
        """Problems of a plan (JSON values, defaults filled in) that concern this method."""
        problems = []
        g = values.get("generations")
        if isinstance(g, int) and not isinstance(g, bool):
            if g < self.min_generations:
                problems.append(f"generations: method {self.name!r} needs at least {self.min_generations} "
                                f"generation(s), got {g}")
            elif self.max_generations is not None and g > self.max_generations:
                what = "trains M0 only" if self.max_generations == 0 else \
                    f"runs at most {self.max_generations} generation(s)"
                problems.append(f"generations: method {self.name!r} {what}; set generations to "
                                f"{self.max_generations} (got {g})")
        k = values.get("subsets")
        if self.uses_subsets and isinstance(k, int) and not isinstance(k, bool) and k < 2:
            problems.append(f"subsets: method {self.name!r} needs at least 2 reference subsets, got {k}")
        ref = values.get("reference")
        if self.needs_reference and isinstance(ref, (list, tuple)) and not ref and not values.get("case_rule"):
            problems.append(f"reference: method {self.name!r} needs reference (unlabeled) cases; the list is empty")
        return problems

    #: the method's options (a frozen dataclass whose fields have defaults and may list their
    #: ``choices`` in metadata), read from the plan's ``method_options.<name>``; None: no options
    options_cls: ClassVar[Optional[type]] = None

    def options(self, plan) -> Any:
        """This method's options from ``plan.method_options`` (defaults where not given)."""
        if self.options_cls is None:
            return None
        return self.options_cls(**(getattr(plan, "method_options", {}) or {}).get(self.name, {}))

    def options_problems(self, data: Mapping[str, Any], path: str) -> List[str]:
        """Problems of ``method_options.<name>`` (unknown keys, values outside their choices)."""
        if self.options_cls is None:
            return [f"{path}: method {self.name!r} has no options"] if data else []
        import difflib

        out = []
        fields = {f.name: f for f in dataclasses.fields(self.options_cls)}
        for key, value in data.items():
            if key not in fields:
                hint = difflib.get_close_matches(key, list(fields), n=1)
                out.append(f"{path}.{key}: unknown option" + (f" (did you mean {hint[0]!r}?)" if hint else
                                                              f"; options: {', '.join(fields)}"))
                continue
            choices = fields[key].metadata.get("choices")
            if choices and value not in choices:
                out.append(f"{path}.{key}: must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return out

    def describe(self, plan) -> str:
        """The report's words on how this run is evaluated (options included); ``{views}`` in
        :attr:`how_evaluated` becomes the plan's views and fusion ("tri-view majority vote", "tri-view
        mean probability", "axial view only")."""
        return self.how_evaluated.replace("{views}", views_words(plan.views, getattr(plan, "fusion", "vote")))

    def default_generations(self) -> int:
        """``generations`` when ``--method`` switches a plan to this method without ``--generations``."""
        return max(self.min_generations, 0)

    @abstractmethod
    def add_generations(self, b) -> None:
        """Add this method's steps after generation 0 to the builder ``b`` (pure)."""

    def final_label_round(self, plan) -> int:
        """How many rounds of pseudo-labels stand behind the final model: round 1 is M0's labels,
        round t the labels of a model trained on round t - 1 (0: no pseudo-labels). A comparison
        is like-for-like when every semi-supervised method's final model learned from the same round."""
        return plan.generations if self.needs_reference else 0

    @abstractmethod
    def final_model(self, plan) -> str:
        """Name of the model whose predictions are the run's result (what ``segment`` uses)."""

    def generation_model(self, plan, t: int) -> Optional[str]:
        """The model a team gets when it ships generation ``t`` (the plan's ``ship_generation``): M0 at
        0, :meth:`final_model` at T, otherwise the generation's own model (None where the method has
        no single model for it: the caller says so and ships the final model)."""
        if t == 0:
            return "M0"
        return self.final_model(plan) if t >= plan.generations else None

    def dataset_problems(self, dataset_dir, plan) -> List[str]:
        """Problems of the materialised experiment dataset for this method (checked before training)."""
        return []

    def trainer_for(self, model: str) -> str:
        """nnU-Net trainer class of a model: M0 learns from S only, the others from S + labels of R."""
        return SUPERVISED_TRAINER if model == "M0" else SEMI_TRAINER


def register(cls: Type[Method]) -> Type[Method]:
    """Class decorator: make a method available by its ``name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__}: a method needs a name")
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice ({type(_REGISTRY[cls.name]).__name__}, "
                         f"{cls.__name__})")
    _REGISTRY[cls.name] = cls()
    return cls


def registry() -> Dict[str, Method]:
    return _REGISTRY


def names() -> Tuple[str, ...]:
    return tuple(_REGISTRY)

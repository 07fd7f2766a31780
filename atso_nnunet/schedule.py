"""The generation schedule: an experiment turned into ordered steps, decided before anything runs.

:func:`build_schedule` is a pure function from an :class:`~atso_nnunet.experiment.ExperimentPlan`
and its reference split to a list of :class:`Step` in dependency order. Every step names its
inputs (ids of earlier steps) and its outputs (relative artefact names the driver maps to
folders); nothing here touches files.

Naming (``t`` generation, ``k``/``j`` 1-based subset index, ``v`` view, ``X`` = ``R`` or ``E``):

=============== ====================================== =========================================
kind            step id                                outputs
=============== ====================================== =========================================
train           ``g{t}/train/{model}/{v}``             ``model/{model}/{v}``
predict         ``g{t}/predict/{model}/{v}/{X}``       ``pred/{model}/{v}/{X}``
fuse (labels)   ``g{t}/fuse/R_g{t}``                   ``R_g{t}`` (the pseudo-label set)
fuse (scoring)  ``g{t}/fuse/{label}/{X}``              ``fused/{label}/{X}``
ingest          ``g{t}/ingest/R_g{t-1}/{v}``           ``ingested/R_g{t-1}/{v}``
evaluate        ``g{t}/evaluate/{target}/{part}``      ``eval/{target}/{part}``
report          ``report``                             ``report``
=============== ====================================== =========================================

The steps of ATSO's final model use the prefix ``final`` instead of ``g{t}`` and carry
generation ``T + 1``. ``part`` is ``R`` (all of R), ``R_h{j}`` (subset j) or ``E``.

Models: ``M0`` (generation 0, trained on S), ``g{t}_h{k}`` (ATSO, generation t, trained on
S + subset k), ``g{t}_all`` (STSO / self-learning, trained on S + all of R), ``final`` (ATSO,
trained on S + all of R after the last generation). A model is trained once per view.

Pseudo-label sets: ``R_g{t}`` holds a label for every reference case, produced by the models of
generation t and read by the trainings of generation t + 1 (``R_g0`` comes from M0). Its
evaluation is the "updated R_t" / "@R" column of the paper's Tables 1, 4 and 6.

Semantics (Algorithm 1 of the paper; every method shares the same generation 0):

- G0: M0 per view on S; M0 predicts R and E per view; views fused by majority vote into
  ``R_g0`` and ``fused/M0/E``; both scored (R also per subset: Table 4's G0 row).
- ``atso`` (K subsets): generation t ingests ``R_g{t-1}`` per view and trains ``g{t}_h{k}``
  from scratch on S + subset k (K x views trainings, independent of each other). Every
  ``g{t}_h{k}`` predicts all of R and E. ``R_g{t}`` labels subset j with the fusion over all views
  of the models *not* trained on subset j (for K = 2: subset 1 from ``g{t}_h2``, subset 2 from
  ``g{t}_h1``); these are the same predictions the per-model scores use, made once. Scores per
  generation: each model fused over views on each subset (``eval/g{t}_h{k}/R_h{j}``: Table 4's
  M_t^(k) @ R^(j)), ``R_g{t}`` (updated R_t), and M_t @ E, defined as the fusion of the K models
  x views ensemble (``eval/g{t}_ens/E``). After generation T, ``final`` is trained from scratch
  on S + all of R with ``R_g{T}`` (the last fold-swapped labels), predicts E and is scored.
- ``stso``: generation t trains ``g{t}_all`` from scratch on S + R with ``R_g{t-1}``; it predicts
  R (giving ``R_g{t}``) and E. The result is ``g{T}_all``.
- ``self``: as ``stso`` but each student starts from its teacher's final checkpoint of the same
  view (``init="teacher"``, ``init_from`` = ``M0`` at t = 1, then ``g{t-1}_all``).
- ``supervised``: generation 0 only; the result is M0.

Test cases are only ever predicted and scored, never trained on or pseudo-labelled.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from atso_nnunet.errors import InputError
from atso_nnunet.experiment import ExperimentPlan

KINDS: Tuple[str, ...] = ("train", "predict", "fuse", "ingest", "evaluate", "report")
ROLES: Tuple[str, ...] = ("pseudo_label", "reference_eval", "test_eval")
INITS: Tuple[str, ...] = ("scratch", "teacher")

_ID_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")


@dataclass(frozen=True)
class FuseGroup:
    """Cases fused from one set of predictions (a fuse step has one group per case set).

    Attributes:
        cases: case ids to fuse.
        predictions: names of the prediction sets (``pred/{model}/{view}/{X}``) voted over.
    """

    cases: Tuple[str, ...]
    predictions: Tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One unit of work of a run; what it reads and writes is named, never a path.

    Attributes:
        id: unique, stable, filesystem-safe (``g1/train/g1_h2/axial``).
        kind: one of :data:`KINDS`.
        generation: 0 for M0, t for generation t, T + 1 for ATSO's final model.
        model: the model trained / predicting / fused over views (None for a fusion across
            models, an ingest or the report).
        view: the view of a train / predict / ingest step.
        cases: cases predicted, fused, ingested or evaluated (sorted; empty for training, which
            always uses all of S).
        train_cases: reference cases a training uses with pseudo-labels (empty for M0).
        pseudo_labels: the pseudo-label set (``R_g{t}``) a training or ingest reads.
        init: ``"scratch"`` or ``"teacher"`` for training steps, else None.
        init_from: model whose final checkpoint (same view) initialises a ``"teacher"`` start.
        inputs: ids of the steps that must finish first.
        outputs: names this step produces.
        role: ``"pseudo_label"``, ``"reference_eval"`` or ``"test_eval"`` for predict, fuse and
            evaluate steps (which ground truth applies: ``labelsRef`` or ``labelsTs``), else None.
        subset: 1-based reference subset: of an ATSO half-model's training, or of an evaluation
            restricted to one subset.
        reads: names this step reads (outputs of its inputs).
        fuse_groups: for fuse steps, which predictions are voted over for which cases.
    """

    id: str
    kind: str
    generation: int
    model: Optional[str] = None
    view: Optional[str] = None
    cases: Tuple[str, ...] = ()
    train_cases: Tuple[str, ...] = ()
    pseudo_labels: Optional[str] = None
    init: Optional[str] = None
    init_from: Optional[str] = None
    inputs: Tuple[str, ...] = ()
    outputs: Tuple[str, ...] = ()
    role: Optional[str] = None
    subset: Optional[int] = None
    reads: Tuple[str, ...] = ()
    fuse_groups: Tuple[FuseGroup, ...] = ()

    def __post_init__(self):
        # Steps are built by this module; a bad one is a programming error, not user input.
        if not _ID_RE.match(self.id):
            raise ValueError(f"step id {self.id!r} is not filesystem-safe")
        if self.kind not in KINDS:
            raise ValueError(f"step {self.id}: kind {self.kind!r} not in {KINDS}")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"step {self.id}: role {self.role!r} not in {ROLES}")
        if (self.init is not None) != (self.kind == "train") or (self.init and self.init not in INITS):
            raise ValueError(f"step {self.id}: init {self.init!r} (training steps only, one of {INITS})")
        if (self.init == "teacher") != (self.init_from is not None):
            raise ValueError(f"step {self.id}: init_from must be given exactly when init is 'teacher'")


# ---------------------------------------------------------------------------------------------
# names


def model_name(generation: int, subset: Optional[int] = None) -> str:
    """``M0``; ``g{t}_h{k}`` for an ATSO half-model; ``g{t}_all`` for STSO / self-learning."""
    if generation == 0:
        return "M0"
    return f"g{generation}_h{subset}" if subset is not None else f"g{generation}_all"


def pseudo_label_set(generation: int) -> str:
    """Name of the pseudo-label set produced by generation ``generation``: ``R_g{t}``."""
    return f"R_g{generation}"


def _model_out(model: str, view: str) -> str:
    return f"model/{model}/{view}"


def _pred_out(model: str, view: str, part: str) -> str:
    return f"pred/{model}/{view}/{part}"


# ---------------------------------------------------------------------------------------------
# building


class _Builder:
    """Accumulates steps in order; knows which step produces which output."""

    def __init__(self):
        self.steps: List[Step] = []
        self.producer: Dict[str, str] = {}

    def add(self, **kw) -> Step:
        reads = tuple(kw.get("reads", ()))
        inputs = tuple(dict.fromkeys(list(kw.pop("extra_inputs", ())) + [self.producer[r] for r in reads]))
        step = Step(inputs=inputs, **kw)
        for out in step.outputs:
            if out in self.producer:
                raise ValueError(f"output {out!r} of {step.id} already produced by {self.producer[out]}")
            self.producer[out] = step.id
        self.steps.append(step)
        return step

    def train(self, prefix: str, t: int, model: str, view: str, train_cases=(), pseudo=None,
              subset=None, init_from: Optional[str] = None) -> None:
        reads = []
        if pseudo is not None:
            reads.append(f"ingested/{pseudo}/{view}")
        if init_from is not None:
            reads.append(_model_out(init_from, view))
        self.add(id=f"{prefix}/train/{model}/{view}", kind="train", generation=t, model=model, view=view,
                 train_cases=tuple(train_cases), pseudo_labels=pseudo, subset=subset,
                 init="teacher" if init_from else "scratch", init_from=init_from,
                 reads=tuple(reads), outputs=(_model_out(model, view),))

    def predict(self, prefix: str, t: int, model: str, view: str, part: str, cases) -> None:
        if not cases:
            return
        self.add(id=f"{prefix}/predict/{model}/{view}/{part}", kind="predict", generation=t, model=model,
                 view=view, cases=tuple(cases), role="pseudo_label" if part == "R" else "test_eval",
                 reads=(_model_out(model, view),), outputs=(_pred_out(model, view, part),))

    def fuse(self, step_id: str, t: int, output: str, role: str, groups: Sequence[FuseGroup],
             model: Optional[str] = None) -> None:
        cases = tuple(sorted(c for g in groups for c in g.cases))
        reads = tuple(dict.fromkeys(p for g in groups for p in g.predictions))
        self.add(id=step_id, kind="fuse", generation=t, model=model, cases=cases, role=role,
                 reads=reads, outputs=(output,), fuse_groups=tuple(groups))

    def evaluate(self, prefix: str, t: int, target: str, fused: str, part: str, cases, role: str,
                 model: Optional[str] = None, subset: Optional[int] = None) -> None:
        self.add(id=f"{prefix}/evaluate/{target}/{part}", kind="evaluate", generation=t, model=model,
                 cases=tuple(cases), role=role, subset=subset, reads=(fused,),
                 outputs=(f"eval/{target}/{part}",))

    def ingest(self, prefix: str, t: int, pseudo: str, view: str, cases) -> None:
        self.add(id=f"{prefix}/ingest/{pseudo}/{view}", kind="ingest", generation=t, view=view,
                 cases=tuple(cases), pseudo_labels=pseudo, reads=(pseudo,),
                 outputs=(f"ingested/{pseudo}/{view}",))


def _checked_split(plan: ExperimentPlan, reference_split: Sequence[Sequence[str]]) -> Tuple[Tuple[str, ...], ...]:
    split = tuple(tuple(sorted(s)) for s in reference_split)
    flat = [c for s in split for c in s]
    problems = []
    if set(flat) != set(plan.reference) or len(flat) != len(set(flat)):
        problems.append("reference_split: must partition the plan's reference cases exactly")
    if plan.reference and any(not s for s in split):
        problems.append("reference_split: a subset is empty")
    if plan.method == "atso" and len(split) != plan.subsets:
        problems.append(f"reference_split: {len(split)} subsets given, plan says subsets = {plan.subsets}")
    if problems:
        raise InputError("cannot build the schedule:\n" + "\n".join(f"  - {p}" for p in problems))
    return split


def build_schedule(plan: ExperimentPlan, reference_split: Sequence[Sequence[str]]) -> List[Step]:
    """Turn an experiment into ordered steps (pure; nothing is executed).

    Args:
        plan: a validated experiment plan.
        reference_split: the K subsets of R (``experiment.reference_subsets(plan)``).

    Returns:
        Steps in dependency order: every step's inputs come earlier in the list. The last step
        is the ``report``, depending on all others.

    Raises:
        InputError: ``reference_split`` does not partition the plan's reference set (into
            ``plan.subsets`` non-empty parts for ATSO).
    """
    split = _checked_split(plan, reference_split)
    R = tuple(sorted(plan.reference))
    E = tuple(sorted(plan.test))
    views = tuple(plan.views)
    T = plan.generations
    b = _Builder()

    def score_pseudo_labels(prefix: str, t: int) -> None:
        pl = pseudo_label_set(t)
        b.evaluate(prefix, t, pl, pl, "R", R, "reference_eval")
        if len(split) > 1:
            for j, part in enumerate(split, 1):
                b.evaluate(prefix, t, pl, pl, f"R_h{j}", part, "reference_eval", subset=j)

    def single_model_outputs(prefix: str, t: int, model: str) -> None:
        """Predict R and E per view; R fused into R_g{t}, E fused and scored."""
        for v in views:
            b.predict(prefix, t, model, v, "R", R)
            b.predict(prefix, t, model, v, "E", E)
        if R:
            b.fuse(f"{prefix}/fuse/{pseudo_label_set(t)}", t, pseudo_label_set(t), "pseudo_label",
                   [FuseGroup(R, tuple(_pred_out(model, v, "R") for v in views))], model=model)
            score_pseudo_labels(prefix, t)
        if E:
            fused = f"fused/{model}/E"
            b.fuse(f"{prefix}/fuse/{model}/E", t, fused, "test_eval",
                   [FuseGroup(E, tuple(_pred_out(model, v, "E") for v in views))], model=model)
            b.evaluate(prefix, t, model, fused, "E", E, "test_eval", model=model)

    # Generation 0, identical for every method.
    for v in views:
        b.train("g0", 0, "M0", v)
    single_model_outputs("g0", 0, "M0")

    if plan.method in ("stso", "self"):
        teacher = "M0"
        for t in range(1, T + 1):
            prefix, pseudo, model = f"g{t}", pseudo_label_set(t - 1), model_name(t)
            for v in views:
                b.ingest(prefix, t, pseudo, v, R)
            for v in views:
                b.train(prefix, t, model, v, train_cases=R, pseudo=pseudo,
                        init_from=teacher if plan.method == "self" else None)
            single_model_outputs(prefix, t, model)
            teacher = model
    elif plan.method == "atso":
        _atso_generations(b, plan, split, R, E, views)

    b.add(id="report", kind="report", generation=max(s.generation for s in b.steps),
          reads=tuple(o for s in b.steps for o in s.outputs if o.startswith("eval/")),
          extra_inputs=tuple(s.id for s in b.steps), outputs=("report",))
    return b.steps


def _atso_generations(b: _Builder, plan: ExperimentPlan, split, R, E, views) -> None:
    K, T = len(split), plan.generations
    for t in range(1, T + 1):
        prefix, pseudo = f"g{t}", pseudo_label_set(t - 1)
        halves = [model_name(t, k) for k in range(1, K + 1)]
        for v in views:
            b.ingest(prefix, t, pseudo, v, R)
        for k, model in enumerate(halves, 1):
            for v in views:
                b.train(prefix, t, model, v, train_cases=split[k - 1], pseudo=pseudo, subset=k)
        for model in halves:
            for v in views:
                b.predict(prefix, t, model, v, "R", R)
                b.predict(prefix, t, model, v, "E", E)
        # Scores of each half-model on each subset (Table 4).
        for model in halves:
            fused = f"fused/{model}/R"
            b.fuse(f"{prefix}/fuse/{model}/R", t, fused, "reference_eval",
                   [FuseGroup(R, tuple(_pred_out(model, v, "R") for v in views))], model=model)
            for j, part in enumerate(split, 1):
                b.evaluate(prefix, t, model, fused, f"R_h{j}", part, "reference_eval", model=model, subset=j)
        # Fold swap: subset j is labelled by the ensemble of the models not trained on it.
        groups = [FuseGroup(part, tuple(_pred_out(m, v, "R") for k, m in enumerate(halves, 1) if k != j
                                        for v in views))
                  for j, part in enumerate(split, 1)]
        b.fuse(f"{prefix}/fuse/{pseudo_label_set(t)}", t, pseudo_label_set(t), "pseudo_label", groups)
        pl = pseudo_label_set(t)
        b.evaluate(prefix, t, pl, pl, "R", R, "reference_eval")
        for j, part in enumerate(split, 1):
            b.evaluate(prefix, t, pl, pl, f"R_h{j}", part, "reference_eval", subset=j)
        if E:
            ens = f"g{t}_ens"
            b.fuse(f"{prefix}/fuse/{ens}/E", t, f"fused/{ens}/E", "test_eval",
                   [FuseGroup(E, tuple(_pred_out(m, v, "E") for m in halves for v in views))])
            b.evaluate(prefix, t, ens, f"fused/{ens}/E", "E", E, "test_eval")

    # The final model: S + all of R labelled by the last fold swap, from scratch.
    tf, pseudo = T + 1, pseudo_label_set(T)
    for v in views:
        b.ingest("final", tf, pseudo, v, R)
    for v in views:
        b.train("final", tf, "final", v, train_cases=R, pseudo=pseudo)
    for v in views:
        b.predict("final", tf, "final", v, "E", E)
    if E:
        b.fuse("final/fuse/final/E", tf, "fused/final/E", "test_eval",
               [FuseGroup(E, tuple(_pred_out("final", v, "E") for v in views))], model="final")
        b.evaluate("final", tf, "final", "fused/final/E", "E", E, "test_eval", model="final")


# ---------------------------------------------------------------------------------------------
# helpers over a schedule


def steps_by_id(steps: Iterable[Step]) -> Dict[str, Step]:
    """``{step.id: step}``.

    Raises:
        ValueError: two steps share an id.
    """
    out: Dict[str, Step] = {}
    for s in steps:
        if s.id in out:
            raise ValueError(f"duplicate step id {s.id!r}")
        out[s.id] = s
    return out


def order_problems(steps: Sequence[Step]) -> List[str]:
    """Steps whose inputs are unknown or not earlier in the list, and outputs produced twice."""
    problems, seen = [], set()
    outputs = Counter(o for s in steps for o in s.outputs)
    known = {s.id for s in steps}
    for s in steps:
        for i in s.inputs:
            if i not in known:
                problems.append(f"{s.id}: input {i} is no step")
            elif i not in seen:
                problems.append(f"{s.id}: input {i} comes later")
        seen.add(s.id)
    problems += [f"output {o} produced by {n} steps" for o, n in outputs.items() if n > 1]
    return problems


def topological_batches(steps: Sequence[Step]) -> List[List[Step]]:
    """Group steps into batches that can run concurrently.

    Batch i holds every step whose inputs all lie in batches before i (as early as possible);
    within a batch the order of ``steps`` is kept. For ATSO all K x views trainings of one
    generation land in one batch.

    Raises:
        ValueError: an input names no step, or the dependencies have a cycle.
    """
    by_id = steps_by_id(steps)
    for s in steps:
        unknown = [i for i in s.inputs if i not in by_id]
        if unknown:
            raise ValueError(f"step {s.id}: unknown input(s) {unknown}")
    done: Set[str] = set()
    remaining = list(steps)
    batches: List[List[Step]] = []
    while remaining:
        ready = [s for s in remaining if all(i in done for i in s.inputs)]
        if not ready:
            raise ValueError(f"dependency cycle among {[s.id for s in remaining]}")
        batches.append(ready)
        done.update(s.id for s in ready)
        ready_ids = {s.id for s in ready}
        remaining = [s for s in remaining if s.id not in ready_ids]
    return batches


def trained_cases(steps: Iterable[Step]) -> Dict[str, Set[str]]:
    """Reference cases each model has been trained on, including through its ``init_from`` chain."""
    steps = list(steps)
    direct: Dict[str, Set[str]] = {}
    parent: Dict[str, Optional[str]] = {}
    for s in steps:
        if s.kind == "train":
            direct.setdefault(s.model, set()).update(s.train_cases)
            if s.init_from:
                parent[s.model] = s.init_from
    out: Dict[str, Set[str]] = {}
    for model in direct:
        cases, m, seen = set(), model, set()
        while m is not None and m not in seen:
            seen.add(m)
            cases |= direct.get(m, set())
            m = parent.get(m)
        out[model] = cases
    return out


def check_fold_swap(steps: Sequence[Step], reference_split: Sequence[Sequence[str]]) -> List[str]:
    """Violations of ATSO's fold swap (empty list: none).

    A violation is a pseudo-label fusion that uses a model's predictions for a case the model
    was trained on (directly or through its teacher), or an ATSO half-model whose training cases
    are not exactly its reference subset. STSO and self-learning label the cases they train on
    by design, so only ATSO schedules are expected to pass.

    Args:
        steps: a schedule.
        reference_split: the reference subsets it was built with.
    """
    trained = trained_cases(steps)
    pred_model = {o: s.model for s in steps if s.kind == "predict" for o in s.outputs}
    problems = []
    for s in steps:
        if s.kind == "train" and s.subset is not None:
            expected = set(reference_split[s.subset - 1]) if 0 < s.subset <= len(reference_split) else None
            if expected is None or set(s.train_cases) != expected:
                problems.append(f"{s.id}: model {s.model} of subset {s.subset} trains on cases "
                                "other than that subset")
        if s.kind != "fuse" or s.role != "pseudo_label":
            continue
        for g in s.fuse_groups:
            for p in g.predictions:
                model = pred_model.get(p)
                overlap = sorted(set(g.cases) & trained.get(model, set()))
                if overlap:
                    problems.append(f"{s.id}: model {model} pseudo-labels case(s) it was trained on: "
                                    f"{', '.join(overlap)}")
    return problems

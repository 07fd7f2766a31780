"""The schedule builder: the vocabulary methods use to add their steps (pure, no files).

A method (:mod:`atso_nnunet.methods`) receives a :class:`ScheduleBuilder` that already holds
generation 0 (M0 on S, its predictions of R and E, ``R_g0``, their scores and monitors) and adds
its generations with :meth:`ScheduleBuilder.train`, :meth:`~ScheduleBuilder.predict`,
:meth:`~ScheduleBuilder.fuse`, ... or the composite helpers below them. The builder wires inputs
from the artefacts each step reads, so a method never names a step id it depends on.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

from atso_nnunet.schedule.artefacts import (
    GroundTruth,
    Ingested,
    LabelSet,
    Model,
    Monitor,
    Prediction,
    Score,
)
from atso_nnunet.schedule.step import FuseGroup, ReportCell, Step

if TYPE_CHECKING:  # pragma: no cover
    from atso_nnunet.methods.base import Method


def model_name(generation: int, subset: Optional[int] = None) -> str:
    """``M0``; ``g{t}_h{k}`` for a model of reference subset k; ``g{t}_all`` for a model of all of R."""
    if generation == 0:
        return "M0"
    return f"g{generation}_h{subset}" if subset is not None else f"g{generation}_all"


def pseudo_label_set(generation: int) -> LabelSet:
    """The pseudo-label set produced by generation ``generation``: ``R_g{t}``."""
    return LabelSet(f"R_g{generation}")


def stability_monitor(labels) -> Optional[Monitor]:
    """The stability filter's monitor of a pseudo-label set ``R_g{t}`` (None for other label sets)."""
    if not isinstance(labels, LabelSet) or not labels.is_pseudo_labels:
        return None
    return Monitor(f"stability_{labels.name}")


class ScheduleBuilder:
    """Accumulates steps in order; knows which step produces which artefact.

    Attributes:
        plan: the experiment plan.
        split: the K reference subsets (sorted tuples).
        method: the method object (decides trainers and training roles).
        R, E: sorted reference and test cases.
        views: the plan's views.
    """

    def __init__(self, plan, split: Sequence[Sequence[str]], method: "Method", n_classes: Optional[int] = None):
        self.plan = plan
        self.n_classes = n_classes
        self.split: Tuple[Tuple[str, ...], ...] = tuple(tuple(sorted(s)) for s in split)
        self.method = method
        self.R: Tuple[str, ...] = tuple(sorted(plan.reference))
        self.E: Tuple[str, ...] = tuple(sorted(plan.test))
        self.views: Tuple[str, ...] = tuple(plan.views)
        self.steps: List[Step] = []
        self.producer: Dict[str, str] = {}
        self.fusion: str = getattr(plan, "fusion", "vote")

    # -- primitives ---------------------------------------------------------------------------

    def add(self, extra_inputs: Sequence[str] = (), **kw) -> Step:
        reads = tuple(kw.get("reads", ()))
        missing = [r.key for r in reads if r.key not in self.producer]
        if missing:
            raise ValueError(f"step {kw.get('id')}: reads {missing}, produced by no earlier step")
        inputs = tuple(dict.fromkeys([*extra_inputs, *(self.producer[r.key] for r in reads)]))
        step = Step(inputs=inputs, **kw)
        for out in step.outputs:
            if out.key in self.producer:
                raise ValueError(f"output {out.key!r} of {step.id} already produced by {self.producer[out.key]}")
            self.producer[out.key] = step.id
        self.steps.append(step)
        return step

    def model(self, name: str, view: str) -> Model:
        """The artefact of model ``name`` in ``view``, with the trainer the method gives it."""
        return Model(name, view, self.method.trainer_for(name))

    def produced(self, artefact) -> bool:
        return artefact.key in self.producer

    def train(self, prefix: str, t: int, name: str, view: str, *, role: str, train_cases: Sequence[str] = (),
              labels: Optional[Union[LabelSet, GroundTruth]] = None, subset: Optional[int] = None,
              init_from: Optional[str] = None) -> Model:
        """Train model ``name`` on S (+ ``train_cases`` with ``labels``) in one view."""
        reads = []
        if labels is not None:
            reads.append(Ingested(labels, view))
        teacher = self.model(init_from, view) if init_from is not None else None
        if teacher is not None:
            reads.append(teacher)
        # With the plan's stability filter, pseudo-labels that have a previous round are filtered:
        # the training reads the stability monitor of its labels and keeps the cases it keeps.
        case_filter = stability_monitor(labels) if labels is not None else None
        if case_filter is not None and self.produced(case_filter):
            reads.append(case_filter)
        else:
            case_filter = None
        model = self.model(name, view)
        self.add(id=f"{prefix}/train/{name}/{view}", kind="train", generation=t, model=name, view=view,
                 train_cases=tuple(sorted(train_cases)), labels=labels, subset=subset,
                 init="teacher" if teacher else "scratch", init_from=teacher, training_role=role,
                 reads=tuple(reads), outputs=(model,), case_filter=case_filter)
        return model

    def predict(self, prefix: str, t: int, name: str, view: str, part: str, cases: Sequence[str]) -> Optional[Prediction]:
        """Predict ``cases`` (all of R or E) with one model and view; None when there are none."""
        if not cases:
            return None
        model = self.model(name, view)
        pred = Prediction(model, part)
        self.add(id=f"{prefix}/predict/{name}/{view}/{part}", kind="predict", generation=t, model=name, view=view,
                 cases=tuple(cases), role="pseudo_label" if part == "R" else "test_eval",
                 reads=(model,), outputs=(pred,))
        return pred

    def fuse(self, step_id: str, t: int, output: LabelSet, role: str, groups: Sequence[FuseGroup],
             model: Optional[str] = None) -> LabelSet:
        cases = tuple(sorted(c for g in groups for c in g.cases))
        reads = tuple(dict.fromkeys(p for g in groups for p in g.predictions))
        self.add(id=step_id, kind="fuse", generation=t, model=model, cases=cases, role=role,
                 reads=reads, outputs=(output,), fuse_groups=tuple(groups), fusion=self.fusion)
        return output

    def evaluate(self, prefix: str, t: int, target: str, labels: LabelSet, part: str, cases: Sequence[str],
                 role: str, cells: Sequence[ReportCell] = (), model: Optional[str] = None,
                 subset: Optional[int] = None) -> Score:
        score = Score(target, part)
        self.add(id=f"{prefix}/evaluate/{target}/{part}", kind="evaluate", generation=t, model=model,
                 cases=tuple(cases), role=role, subset=subset, reads=(labels,), outputs=(score,),
                 report_cells=tuple(cells))
        return score

    def ingest(self, prefix: str, t: int, labels: Union[LabelSet, GroundTruth], view: str,
               cases: Sequence[str]) -> Ingested:
        out = Ingested(labels, view)
        reads = (labels,) if self.produced(labels) else ()
        self.add(id=f"{prefix}/ingest/{labels.name}/{view}", kind="ingest", generation=t, view=view,
                 cases=tuple(cases), labels=labels, reads=reads, outputs=(out,))
        return out

    def monitor(self, prefix: str, t: int, kind: str, name: str, reads: Sequence, cases: Sequence[str],
                cells: Sequence[ReportCell], subset: Optional[int] = None) -> Monitor:
        out = Monitor(name)
        self.add(id=f"{prefix}/monitor/{name}", kind="monitor", generation=t, monitor=kind, cases=tuple(cases),
                 subset=subset, reads=tuple(reads), outputs=(out,), report_cells=tuple(cells))
        return out

    def finish(self) -> List[Step]:
        """The steps, with probabilities kept by exactly the predictions a fusion needs them from.

        A prediction keeps nnU-Net's probabilities (``--save_probabilities``) when a fusion
        reading it averages probabilities, or votes where ties can happen: an even number of
        voters, or three or more voters of a task with three or more classes (``n_classes``; None:
        not known, taken as two) - ties are broken by probability, never by class order.
        """
        needs = set()
        multi = (self.n_classes or 2) > 2
        for s in self.steps:
            if s.kind != "fuse":
                continue
            for g in s.fuse_groups:
                n = len(g.predictions)
                if s.fusion == "mean" or (n > 1 and (n % 2 == 0 or multi)):
                    needs.update(g.predictions)
        return [dataclasses.replace(s, save_probabilities=True) if s.kind == "predict" and s.output in needs else s
                for s in self.steps]

    # -- composites ---------------------------------------------------------------------------

    def view_predictions(self, name: str, part: str) -> Tuple[Prediction, ...]:
        return tuple(Prediction(self.model(name, v), part) for v in self.views)

    def predict_all_views(self, prefix: str, t: int, name: str, parts: str = "RE") -> None:
        for v in self.views:
            if "R" in parts:
                self.predict(prefix, t, name, v, "R", self.R)
            if "E" in parts:
                self.predict(prefix, t, name, v, "E", self.E)

    def score_on_test(self, prefix: str, t: int, name: str, cells: Sequence[ReportCell],
                      predictions: Optional[Sequence[Prediction]] = None) -> None:
        """Fuse a model's (or an ensemble's) views on E and score it."""
        if not self.E:
            return
        fused = LabelSet(name, "E")
        preds = tuple(predictions) if predictions is not None else self.view_predictions(name, "E")
        is_model = predictions is None
        self.fuse(f"{prefix}/fuse/{name}/E", t, fused, "test_eval", [FuseGroup(self.E, preds)],
                  model=name if is_model else None)
        self.evaluate(prefix, t, name, fused, "E", self.E, "test_eval", cells=cells,
                      model=name if is_model else None)

    def score_pseudo_labels(self, prefix: str, t: int, half_model_cells: bool = False) -> None:
        """@R of ``R_g{t}`` (all of R, and per subset when R is split) and its monitors."""
        pl = pseudo_label_set(t)
        self.evaluate(prefix, t, pl.name, pl, "R", self.R, "reference_eval", cells=[ReportCell(t, "reference")])
        if len(self.split) > 1:
            K = len(self.split)
            for j, part in enumerate(self.split, 1):
                # At G0 every half-model cell M_k@R_j is M0's (Table 4's first row).
                cells = [ReportCell(t, "half_model", f"M{k}@R{j}") for k in range(1, K + 1)] if half_model_cells else []
                self.evaluate(prefix, t, pl.name, pl, f"R_h{j}", part, "reference_eval", cells=cells, subset=j)
        self.monitor(prefix, t, "empty", f"empty_{pl.name}", [pl], self.R, [ReportCell(t, "empty")])
        if t >= 1:
            prev = pseudo_label_set(t - 1)
            self.monitor(prefix, t, "change", f"change_{pl.name}", [pl, prev], self.R, [ReportCell(t, "change")])
        self.volume_monitor(prefix, t)
        if t >= 1 and getattr(self.plan, "stability_filter", None) is not None:
            self.monitor(prefix, t, "stability", stability_monitor(pl).name, [pl, pseudo_label_set(t - 1)], self.R,
                         [ReportCell(t, "stability")])

    def volume_monitor(self, prefix: str, t: int) -> Monitor:
        """The drift monitor of ``R_g{t}`` (:mod:`atso_nnunet.monitors.drift`): its volume, against ``R_g0``'s and the
        previous generation's (their volume monitors), and against the predictions it was fused from."""
        pl = pseudo_label_set(t)
        fuse = next(s for s in self.steps if s.id == self.producer[pl.key])
        earlier = [Monitor(f"volume_{pseudo_label_set(g).name}") for g in dict.fromkeys((0, t - 1)) if 0 <= g < t]
        reads = [pl, *earlier, *dict.fromkeys(p for g in fuse.fuse_groups for p in g.predictions)]
        out = Monitor(f"volume_{pl.name}")
        self.add(id=f"{prefix}/monitor/{out.name}", kind="monitor", generation=t, monitor="volume", cases=self.R,
                 reads=tuple(reads), outputs=(out,), report_cells=(ReportCell(t, "volume"),),
                 fuse_groups=fuse.fuse_groups)
        return out

    def single_model_generation(self, prefix: str, t: int, name: str) -> None:
        """A model of all views predicts R and E; R fused into ``R_g{t}``, E fused; all scored."""
        self.predict_all_views(prefix, t, name)
        if self.R:
            self.fuse(f"{prefix}/fuse/{pseudo_label_set(t).name}", t, pseudo_label_set(t), "pseudo_label",
                      [FuseGroup(self.R, self.view_predictions(name, "R"))], model=name)
            self.score_pseudo_labels(prefix, t, half_model_cells=(t == 0 and self.method.uses_subsets))
        self.score_on_test(prefix, t, name, cells=[ReportCell(t, "test")])

    def generation_zero(self) -> None:
        """M0 per view on S, its predictions, ``R_g0`` and their scores: identical for every method."""
        for v in self.views:
            self.train("g0", 0, "M0", v, role="M0")
        self.single_model_generation("g0", 0, "M0")

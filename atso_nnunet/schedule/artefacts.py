"""Typed references to what a step reads and writes.

A schedule names its artefacts with these small frozen values; the run folder
(:class:`atso_nnunet.run.rundir.RunDir`) resolves them to paths. Nothing downstream builds a name
or a path from a string or parses a step id: a runner asks ``run.path(ref)``, the report reads
the :class:`Score` and :class:`Monitor` a step declares.

Every reference has a ``key``, unique within a schedule (``model/M0/axial``,
``pred/M0/axial/R``, ``labels/R_g1``, ``fused/g1_h1/R``, ``ingested/R_g0/axial``,
``eval/M0/E``, ``monitor/change_g1``, ``report``), used to check that each artefact has exactly
one producer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

PARTS = ("R", "E")


@dataclass(frozen=True)
class Model:
    """A trained nnU-Net model of one view (``<Trainer>__<plans>__<configuration>/fold_<f>``).

    Attributes:
        name: the schedule's model name (``M0``, ``g1_h2``, ``g1_all``, ``final`` ...).
        view: slicing view.
        trainer: nnU-Net trainer class it is trained with (decided by the method).
    """

    name: str
    view: str
    trainer: str

    @property
    def key(self) -> str:
        return f"model/{self.name}/{self.view}"


@dataclass(frozen=True)
class Prediction:
    """One model's prediction of one view of R or E (nnU-Net's output, original geometry)."""

    model: Model
    part: str

    def __post_init__(self):
        if self.part not in PARTS:
            raise ValueError(f"prediction part {self.part!r} not in {PARTS}")

    @property
    def key(self) -> str:
        return f"pred/{self.model.name}/{self.model.view}/{self.part}"


@dataclass(frozen=True)
class LabelSet:
    """Label maps in the images' geometry, made by fusing predictions.

    A pseudo-label set (``R_g{t}``: ``part`` None, read by trainings) or fused predictions kept
    for scoring (``fused/{name}/{part}``).
    """

    name: str
    part: Union[str, None] = None

    @property
    def is_pseudo_labels(self) -> bool:
        return self.part is None

    @property
    def key(self) -> str:
        return f"labels/{self.name}" if self.part is None else f"fused/{self.name}/{self.part}"


@dataclass(frozen=True)
class GroundTruth:
    """True labels of the reference set (``labelsRef``), used as labels by the oracle only."""

    name: str = "R_true"

    @property
    def key(self) -> str:
        return f"truth/{self.name}"


@dataclass(frozen=True)
class Ingested:
    """A label set brought into one view's preprocessed space (nnU-Net's training format)."""

    labels: Union[LabelSet, GroundTruth]
    view: str

    @property
    def key(self) -> str:
        return f"ingested/{self.labels.name}/{self.view}"


@dataclass(frozen=True)
class Score:
    """Scores of a label set against ground truth: ``eval/{target}/{part}``.

    ``part`` is ``R`` (all of R), ``R_h{j}`` (subset j) or ``E``.
    """

    target: str
    part: str

    @property
    def key(self) -> str:
        return f"eval/{self.target}/{self.part}"


@dataclass(frozen=True)
class Monitor:
    """A label-free figure (agreement between models, change of pseudo-labels, empty labels)."""

    name: str

    @property
    def key(self) -> str:
        return f"monitor/{self.name}"


@dataclass(frozen=True)
class Report:
    """The run's report files."""

    @property
    def key(self) -> str:
        return "report"


Artefact = Union[Model, Prediction, LabelSet, GroundTruth, Ingested, Score, Monitor, Report]

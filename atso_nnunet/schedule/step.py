"""One unit of work of a run, and where its figure goes in the report."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from atso_nnunet.schedule.artefacts import Artefact, GroundTruth, LabelSet, Model, Monitor, Prediction

KINDS: Tuple[str, ...] = ("train", "predict", "fuse", "ingest", "evaluate", "monitor", "report")
ROLES: Tuple[str, ...] = ("pseudo_label", "reference_eval", "test_eval")
INITS: Tuple[str, ...] = ("scratch", "teacher")
MONITORS: Tuple[str, ...] = ("agreement", "change", "empty", "volume", "stability")
FUSIONS: Tuple[str, ...] = ("vote", "mean")
# Report columns a step can fill (see atso_nnunet.evaluation.report): @R of the pseudo-labels, M_t @E,
# the final model @E, Table 4's half-model cells, and the label-free monitors (volume: the drift
# monitor of atso_nnunet.monitors.drift; stability: the cases atso_nnunet.monitors.stability leaves out).
COLUMNS: Tuple[str, ...] = ("reference", "test", "final", "half_model", "agreement", "change", "empty", "volume",
                            "stability")

_ID_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")


@dataclass(frozen=True)
class FuseGroup:
    """Cases fused from one set of predictions (a fuse step has one group per case set).

    Attributes:
        cases: case ids to fuse.
        predictions: the per-view predictions voted over (or averaged).
    """

    cases: Tuple[str, ...]
    predictions: Tuple[Prediction, ...]


@dataclass(frozen=True)
class ReportCell:
    """A cell of the report filled by a step's output.

    Attributes:
        generation: the report row (0 = M0; ATSO's final model is reported in the last row's
            ``final`` column).
        column: one of :data:`COLUMNS`.
        key: the sub-column for ``half_model`` (``M1@R2``) and ``agreement`` (``R1``).
    """

    generation: int
    column: str
    key: Optional[str] = None

    def __post_init__(self):
        if self.column not in COLUMNS:
            raise ValueError(f"report column {self.column!r} not in {COLUMNS}")


@dataclass(frozen=True)
class Step:
    """One unit of work of a run; what it reads and writes are typed artefacts, never paths.

    Attributes:
        id: unique, stable, filesystem-safe (``g1/train/g1_h2/axial``); a marker name only.
        kind: one of :data:`KINDS`.
        generation: 0 for M0, t for generation t, T + 1 for ATSO's final model.
        model: name of the model trained / predicting (None for fusions across models, ingests,
            monitors, the report).
        view: the view of a train / predict / ingest step.
        cases: cases predicted, fused, ingested, evaluated or monitored (sorted; empty for
            training, which always uses all of S).
        train_cases: reference cases a training uses with labels (empty for M0).
        labels: the label set a training or ingest reads (pseudo-labels, or R's ground truth
            for the oracle).
        init: ``"scratch"`` or ``"teacher"`` for training steps, else None.
        init_from: the model (same view) whose final checkpoint starts a ``"teacher"`` training.
        training_role: which of the plan's training settings a training uses (``M0``,
            ``student``, ``self``, ``combined``, ``final``, ``oracle``).
        inputs: ids of the steps that must finish first.
        outputs: artefacts this step produces.
        reads: artefacts this step reads (outputs of its inputs).
        role: ``"pseudo_label"``, ``"reference_eval"`` or ``"test_eval"`` for predict, fuse and
            evaluate steps (which ground truth applies: ``labelsRef`` or ``labelsTs``).
        subset: 1-based reference subset: of an ATSO half-model's training, or of an evaluation
            or monitor restricted to one subset.
        fuse_groups: for fuse steps, which predictions are fused for which cases; for a ``volume``
            monitor, those its pseudo-labels were fused from (the vote/view volume ratio).
        monitor: for monitor steps, one of :data:`MONITORS`.
        report_cells: where the step's output appears in the report.
        case_filter: for training steps on pseudo-labels: the ``stability`` monitor whose kept
            cases the training is restricted to (:mod:`atso_nnunet.monitors.stability`); None: all
            ``train_cases``.
        save_probabilities: for predict steps: also keep nnU-Net's softmax probabilities, because
            a fusion reading this prediction needs them (mean fusion, or ties of an even vote).
        fusion: for fuse steps: ``"vote"`` (majority vote; ties, possible with an even number of
            voters, go to the class with the highest summed probability) or ``"mean"`` (argmax
            of the mean probability).
    """

    id: str
    kind: str
    generation: int
    model: Optional[str] = None
    view: Optional[str] = None
    cases: Tuple[str, ...] = ()
    train_cases: Tuple[str, ...] = ()
    labels: Optional[Union[LabelSet, GroundTruth]] = None
    init: Optional[str] = None
    init_from: Optional[Model] = None
    training_role: Optional[str] = None
    inputs: Tuple[str, ...] = ()
    outputs: Tuple[Artefact, ...] = ()
    reads: Tuple[Artefact, ...] = ()
    role: Optional[str] = None
    subset: Optional[int] = None
    fuse_groups: Tuple[FuseGroup, ...] = ()
    monitor: Optional[str] = None
    report_cells: Tuple[ReportCell, ...] = ()
    save_probabilities: bool = False
    fusion: Optional[str] = None
    case_filter: Optional[Monitor] = None

    def __post_init__(self):
        # Steps are built by the schedule; a bad one is a programming error, not user input.
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
        if (self.fusion is not None) != (self.kind == "fuse") or (self.fusion and self.fusion not in FUSIONS):
            raise ValueError(f"step {self.id}: fusion {self.fusion!r} (fuse steps only, one of {FUSIONS})")
        if self.save_probabilities and self.kind != "predict":
            raise ValueError(f"step {self.id}: save_probabilities is for predict steps")
        if (self.monitor is not None) != (self.kind == "monitor") or (self.monitor and self.monitor not in MONITORS):
            raise ValueError(f"step {self.id}: monitor {self.monitor!r} (monitor steps only, one of {MONITORS})")
        if self.case_filter is not None and (self.kind != "train" or self.case_filter not in self.reads):
            raise ValueError(f"step {self.id}: case_filter is for training steps that read it")

    @property
    def output(self) -> Artefact:
        """The single output of a step that has exactly one."""
        if len(self.outputs) != 1:
            raise ValueError(f"step {self.id} has {len(self.outputs)} outputs")
        return self.outputs[0]

"""The generation schedule: an experiment turned into ordered steps, decided before anything runs.

:func:`build_schedule` is a pure function from a plan, its reference split and a method
(:mod:`atso_nnunet.methods`) to a list of :class:`Step` in dependency order. Every step names
what it reads and writes as typed artefacts (:mod:`atso_nnunet.schedule.artefacts`) and where
its figure goes in the report (:class:`ReportCell`); nothing here touches files.

Naming (``t`` generation, ``k``/``j`` 1-based subset index, ``v`` view, ``X`` = ``R`` or ``E``):

=============== ====================================== =========================================
kind            step id                                output
=============== ====================================== =========================================
train           ``g{t}/train/{model}/{v}``             ``Model(model, v, trainer)``
predict         ``g{t}/predict/{model}/{v}/{X}``       ``Prediction(model, X)``
fuse (labels)   ``g{t}/fuse/R_g{t}``                   ``LabelSet("R_g{t}")`` (pseudo-labels)
fuse (scoring)  ``g{t}/fuse/{label}/{X}``              ``LabelSet(label, X)``
ingest          ``g{t}/ingest/{labels}/{v}``           ``Ingested(labels, v)``
evaluate        ``g{t}/evaluate/{target}/{part}``      ``Score(target, part)``
monitor         ``g{t}/monitor/{name}``                ``Monitor(name)`` (label-free)
report          ``report``                             ``Report()``
=============== ====================================== =========================================

Steps of a final model use the prefix ``final`` and generation ``T + 1``. ``part`` is ``R``
(all of R), ``R_h{j}`` (subset j) or ``E``. Step ids are marker names and never parsed.

Models: ``M0`` (generation 0, trained on S), ``g{t}_h{k}`` (a model of reference subset k),
``g{t}_all`` (STSO / self-learning, S + all of R), ``g{t}_comb`` (ATSO's per-generation combined
model), ``final`` (ATSO's final model), ``oracle``. A model is trained once per view.

Pseudo-label sets: ``R_g{t}`` holds a label for every reference case, produced by the models of
generation t and read by the trainings of generation t + 1 (``R_g0`` comes from M0). Its
evaluation is the "updated R_t" / "@R" column of the paper's Tables 1, 4 and 6.

What each method adds after generation 0 is documented in its module under
:mod:`atso_nnunet.methods`. Test cases are only ever predicted and scored, never trained on or
pseudo-labelled.
"""
from atso_nnunet.schedule.artefacts import (
    GroundTruth,
    Ingested,
    LabelSet,
    Model,
    Monitor,
    Prediction,
    Report,
    Score,
)
from atso_nnunet.schedule.build import build_schedule
from atso_nnunet.schedule.vocabulary import ScheduleBuilder, model_name, pseudo_label_set
from atso_nnunet.schedule.checks import (
    check_fold_swap,
    order_problems,
    steps_by_id,
    topological_batches,
    trained_cases,
)
from atso_nnunet.schedule.step import COLUMNS, INITS, KINDS, MONITORS, ROLES, FuseGroup, ReportCell, Step

__all__ = [
    "COLUMNS", "FuseGroup", "GroundTruth", "INITS", "Ingested", "KINDS", "LabelSet", "MONITORS", "Model",
    "Monitor", "Prediction", "ROLES", "Report", "ReportCell", "ScheduleBuilder", "Score", "Step",
    "build_schedule", "check_fold_swap", "model_name", "order_problems",
    "pseudo_label_set", "steps_by_id", "topological_batches", "trained_cases",
]

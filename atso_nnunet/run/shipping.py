"""The model a finished run ships: the one ``atso_nnunet_segment`` uses by default.

The plan's ``ship_generation`` decides (:mod:`atso_nnunet.monitors.ship_rule`): ``last`` ships the
method's final model; ``before_drift`` reads the run's label-free volume monitor from
``report.json`` (pseudo-label volume on R per generation), takes the last generation before the
pseudo-labels drifted, and ships that generation's model (:meth:`Method.generation_model`: M0,
ATSO's combined M_t, STSO's and self-learning's ``g{t}_all``; the final model at T). Nothing here
reads a label.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from atso_nnunet.errors import InputError
from atso_nnunet.io import read_json
from atso_nnunet.methods import get_method
from atso_nnunet.monitors.ship_rule import report_volumes, ship_generation

logger = logging.getLogger("atso_nnunet.shipping")


@dataclass(frozen=True)
class Shipped:
    """What a run ships: the generation, its model's name, and the sentence that says why."""

    generation: int
    model: str
    why: str


def shipped_model(run_dir: Path, plan) -> Shipped:
    """The model the plan's ``ship_generation`` rule ships for the run in ``run_dir``.

    Raises:
        InputError: ``before_drift`` on a run without ``report.json`` (not run yet), or a generation
            whose method has no single model.
    """
    method = get_method(plan.method)
    T = plan.generations
    if plan.ship_generation == "last":
        return Shipped(T, method.final_model(plan), f"ship_generation 'last': the final model (G{T})")
    report = read_json(run_dir / "report.json")
    if report is None:
        raise InputError(f"{run_dir}: no report.json, so the plan's ship_generation {plan.ship_generation!r} "
                         "cannot read the run's monitors; finish the run with atso_nnunet_run first "
                         "(or name a model with --model)")
    volumes = report_volumes(report)
    if not any(v is not None for v in volumes.values()):
        return Shipped(T, method.final_model(plan),
                       f"ship_generation {plan.ship_generation!r}: no pseudo-label volumes recorded, the final model")
    t = ship_generation(volumes, T, plan.ship_generation)
    model = method.generation_model(plan, t)
    if model is None:
        raise InputError(f"{run_dir}: ship_generation {plan.ship_generation!r} chose G{t}, for which method "
                         f"{plan.method!r} with this plan's options has no single model; name one with --model")
    why = (f"ship_generation {plan.ship_generation!r}: no drift, the final model (G{T})" if t == T else
           f"ship_generation {plan.ship_generation!r}: the pseudo-labels drifted after G{t}, so G{t}'s model "
           f"{model!r} is shipped instead of the final model")
    return Shipped(t, model, why)

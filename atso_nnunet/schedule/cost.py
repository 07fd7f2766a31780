"""What a schedule costs in trainings: counted from its steps and the plan's training settings (pure)."""
from __future__ import annotations

from typing import Dict, Sequence


def training_cost(plan, steps: Sequence) -> Dict[str, int]:
    """``{"trainings": n, "iterations": i}``: the schedule's training steps and their iterations
    (epochs x iterations per epoch of each step's role; nnU-Net's 1000 x 250 where the plan is silent).
    Generation 0 (M0) counts: a method's cost is what its run trains, M0 included."""
    trainings = [s for s in steps if s.kind == "train"]
    iterations = sum(plan.training.iterations(s.training_role) for s in trainings)
    return {"trainings": len(trainings), "iterations": int(iterations)}

"""``--dry-run``: every step of a run as the command that would run it, in order.

Training and prediction are printed as nnU-Net's own commands (with the variables atso_nnunet
sets); plugin steps as ``atso_nnunet_run ... --step <id>``, so a team can drive a run from its
own scheduler.
"""
from __future__ import annotations

from typing import Sequence

from atso_nnunet import runners
from atso_nnunet.runners import RunContext
from atso_nnunet.schedule import Step, topological_batches

PREPARE = "prepare"


def command_lines(ctx: RunContext, steps: Sequence[Step]) -> list:
    """The dry-run listing as lines (comments start with ``#``)."""
    base = f"atso_nnunet_run --plan {ctx.run.root / 'plan.json'} --run-dir {ctx.run.root}"
    lines = [f"# {len(steps)} steps; plugin steps run with: {base} --step <id>",
             f"# prepare (sources, experiment dataset, tri-view plan + preprocess): {base} --step {PREPARE}"]
    batches = topological_batches(steps)
    for i, batch in enumerate(batches):
        lines.append(f"# batch {i + 1}/{len(batches)} ({len(batch)} independent step(s))")
        for s in batch:
            if s.kind == "train":
                lines.append(f"# {s.id}\n" + runners.describe_job(runners.train_job(ctx, s)))
            elif s.kind != "predict":
                lines.append(f"{base} --step {s.id}")
        for group in runners.prediction_groups(batch).values():
            job = runners.predict_job(ctx, group, link=False)
            lines.append(f"# {', '.join(s.id for s in group)}\n" + runners.describe_job(job))
    return lines


def print_commands(ctx: RunContext, steps: Sequence[Step]) -> None:
    print("\n".join(command_lines(ctx, steps)))

"""``--dry-run``: every step of a run as the command that would run it, in order.

Training and prediction are printed as nnU-Net's own commands (with the variables atso_nnunet
sets); plugin steps as ``atso_nnunet_run ... --step <id>``, so a team can drive a run from its
own scheduler.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from atso_nnunet.nnunet.training_log import epoch_seconds
from atso_nnunet.plan.sections import NNUNET_DEFAULTS
from atso_nnunet.run import steps as runners
from atso_nnunet.run.context import RunContext
from atso_nnunet.schedule import Step, topological_batches

PREPARE = "prepare"


def command_lines(ctx: RunContext, steps: Sequence[Step]) -> list:
    """The dry-run listing as lines (comments start with ``#``)."""
    base = f"atso_nnunet_run --plan {ctx.run.root / 'plan.json'} --run-dir {ctx.run.root}"
    done = {s.id for s in steps if ctx.run.is_done(s.id)}

    def mark(step_id: str) -> str:
        return f"{step_id} (done)" if step_id in done else step_id

    lines = [f"# {len(steps)} steps; plugin steps run with: {base} --step <id>"
             + (f"; this run folder has {len(done)} of them done, marked '(done)' (a run skips them)"
                if done else ""),
             f"# prepare (sources, experiment dataset, tri-view plan + preprocess): {base} --step {PREPARE}"
             + (" (done)" if ctx.run.is_done(PREPARE) else "")]
    batches = topological_batches(steps)
    for i, batch in enumerate(batches):
        lines.append(f"# batch {i + 1}/{len(batches)} ({len(batch)} independent step(s)"
                     + (", all done)" if all(s.id in done for s in batch) else ")"))
        for s in batch:
            if s.kind == "train":
                lines.append(f"# {mark(s.id)}\n" + runners.describe_job(runners.train_job(ctx, s, preview=True)))
            elif s.kind != "predict":
                lines.append(f"{base} --step {s.id}" + ("  # (done)" if s.id in done else ""))
        for group in runners.prediction_groups(batch).values():
            job = runners.predict_job(ctx, group, link=False)
            lines.append(f"# {', '.join(mark(s.id) for s in group)}\n" + runners.describe_job(job))
    if done and len(done) == len(steps):
        lines.append("# every step is done: a run only rewrites the report")
    return lines


def training_iterations(ctx: RunContext, steps: Sequence[Step]) -> Dict[int, int]:
    """Training iterations per generation (epochs x iterations per epoch of each training)."""
    out: Dict[int, int] = {}
    for s in steps:
        if s.kind == "train":
            out[s.generation] = out.get(s.generation, 0) + ctx.plan.training.iterations(s.training_role)
    return out


def seconds_per_iteration(folder: Path) -> Optional[float]:
    """Median wall-clock seconds per training iteration in nnU-Net's ``training_log_*.txt`` below ``folder``.

    Epochs are timed by :func:`epoch_seconds`; the iterations per epoch come from the run config
    atso_nnunet writes next to the log (``atso_run_config.json``), else nnU-Net's 250. An epoch
    includes its validation iterations and nnU-Net's end-of-epoch work, so the figure errs on the
    safe side.
    """
    import json

    rates: List[float] = []
    for log in sorted(Path(folder).rglob("training_log_*.txt")):
        times = epoch_seconds(log.read_text(errors="replace"))
        if not times:
            continue
        cfg = log.parent / "atso_run_config.json"
        ipe = (json.loads(cfg.read_text()).get("num_iterations_per_epoch") if cfg.is_file() else None) or NNUNET_DEFAULTS["num_iterations_per_epoch"]
        rates += [t / ipe for t in times]
    return statistics.median(rates) if rates else None


def budget_lines(ctx: RunContext, steps: Sequence[Step], sec_per_iter: Optional[float] = None) -> List[str]:
    """The run's training budget: iterations per generation and, given seconds per iteration, GPU-hours."""
    per_gen = training_iterations(ctx, steps)
    trainings: Dict[int, int] = {}
    for s in steps:
        if s.kind == "train":
            trainings[s.generation] = trainings.get(s.generation, 0) + 1
    total = sum(per_gen.values())
    lines = [f"# training budget: {sum(trainings.values())} trainings, {total:,} iterations in total"
             + (f", about {total * sec_per_iter / 3600:.1f} GPU-hours at {sec_per_iter:.3g} s/iteration"
                if sec_per_iter else " (give --sec-per-iter or --timing-from for GPU-hours)")]
    T = max(per_gen) if per_gen else 0
    for t in sorted(per_gen):
        name = "G0 (M0)" if t == 0 else ("final model" if t == T and t == ctx.plan.generations + 1 else f"G{t}")
        lines.append(f"#   {name}: {trainings[t]} training(s), {per_gen[t]:,} iterations"
                     + (f", {per_gen[t] * sec_per_iter / 3600:.1f} GPU-hours" if sec_per_iter else ""))
    return lines


def print_schedule(ctx: RunContext, steps: Sequence[Step], sec_per_iter: Optional[float] = None) -> None:
    """The budget and the schedule's steps (ids), from the plan alone: no file is read or written.

    What ``--dry-run`` shows when the data are not there yet (their nnU-Net commands need the
    prepared run folder).
    """
    lines = budget_lines(ctx, steps, sec_per_iter)
    lines.append(f"# schedule: {len(steps)} steps (the nnU-Net commands are printed once the sources exist)")
    lines += [f"#   {s.id}" for s in steps]
    print("\n".join(lines))


def print_commands(ctx: RunContext, steps: Sequence[Step], sec_per_iter: Optional[float] = None) -> None:
    print("\n".join(budget_lines(ctx, steps, sec_per_iter) + command_lines(ctx, steps)))

"""How often does a training stay on the all-background plateau? Repeat trainings of a finished run.

    .venv/bin/python benchmarks/screen_plateau.py -d synthetic -f 10pct \\
        --run-dir /work/fast/demo_warm6/run --nnunet-dir /work/fast/demo_warm6/nn \\
        --steps g0/train/M0 g1/train/g1_h1 --repeats 2 --tag lr0.01 --set initial_lr=0.01 \\
        --out /work/screen

Short schedules (the demo's 7 x 50 iterations) leave the plateau where the network predicts
background everywhere at a random epoch, sometimes never (docs/lab/diagnosis.md). This script repeats
chosen training steps of an existing run folder, each ``--repeats`` times per view, with the same
nnU-Net argument list the run used (``nnUNetv2_train ... -tr <trainer> -p <plans>``), the same
preprocessed data and pseudo-labels, and the trainer settings of the run overridden by ``--set``
(any key of the run's trainer config: ``initial_lr``, ``oversample_foreground``, ...). The
repeats write to ``<out>/<tag>/<step>/<view>/r<i>``, never into the run folder's models.

It reads only nnU-Net's training log (the per-epoch "Pseudo dice" on its own validation batches,
i.e. training cases for fold ``all``): no test case is predicted or scored, so settings chosen
with it are not chosen on test accuracy. Per training it records the pseudo Dice per epoch, the
first epoch above ``--escape`` ("left the plateau") and whether the last epoch is still below it
("stuck"). Results: ``<out>/<tag>/results.json`` (rerunning skips finished repeats) and a summary
table over all tags in ``<out>/summary.md``, the pseudo Dice curves in ``<out>/plateau.png``.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

from atso_nnunet.nnunet.training_log import parse_training_log

logger = logging.getLogger("screen_plateau")


def pseudo_dice_per_epoch(log_text: str) -> List[float]:
    """The mean foreground pseudo Dice of each epoch in an nnU-Net training log."""
    return parse_training_log(log_text)["pseudo_dice"]


def escape_epoch(dice: List[float], threshold: float) -> Optional[int]:
    """First epoch whose pseudo Dice exceeds ``threshold`` (None: never)."""
    return next((i for i, d in enumerate(dice) if d > threshold), None)


def parse_set(items: List[str]) -> Dict[str, object]:
    """``key=value`` pairs; values read as JSON where they parse (numbers, true/false, null)."""
    out: Dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected key=value, e.g. initial_lr=0.01")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_jobs(args, overrides: Dict[str, object]):
    """(record, Job) per repeat of each chosen step and view, from the run's own training jobs."""
    from dataclasses import replace

    from atso_nnunet.cli.common import nnunet_paths
    from atso_nnunet.run.driver import PREPARE, DriverOptions, make_context
    from atso_nnunet.run.prepare import drop_absent_cases
    from atso_nnunet.methods import get_method
    from atso_nnunet.plan import find_plan, load_plan, reference_subsets, resolve_case_rule, with_overrides
    from atso_nnunet.run import steps as runners
    from atso_nnunet.schedule import build_schedule

    plan = with_overrides(load_plan(find_plan(args.dataset, args.split)), views=args.views)
    paths = nnunet_paths(args.nnunet_dir)
    plan = drop_absent_cases(resolve_case_rule(plan, paths), paths)
    steps = build_schedule(plan, reference_subsets(plan), get_method(plan.method))
    ctx = make_context(plan, DriverOptions(run_dir=args.run_dir.resolve(), paths=paths, executor=None, device="cpu"))
    if not ctx.run.is_done(PREPARE):
        raise SystemExit(f"{args.run_dir}: not a prepared run folder of this plan (run it first)")
    todo = []
    for prefix in args.steps:
        chosen = [s for s in steps if s.kind == "train" and s.id.startswith(prefix.rstrip("/") + "/")]
        if not chosen:
            raise SystemExit(f"--steps {prefix}: no training step of the run starts with it; "
                             f"training steps: {', '.join(sorted({s.id.rsplit('/', 1)[0] for s in steps if s.kind == 'train'}))}")
        for step in chosen:
            if step.init_from is not None and not ctx.run.is_done(step.id):
                raise SystemExit(f"{step.id}: continues another model; finish the run first")
            job = runners.train_job(ctx, step)  # rewrites the run's own config with the same content
            base_config = json.loads(Path(job.env["ATSO_RUN_CONFIG"]).read_text())
            view = step.output.view
            for r in range(args.repeats):
                where = args.out / args.tag / step.id.rsplit("/", 1)[0].replace("/", "__") / view / f"r{r}"
                record = {"tag": args.tag, "step": step.id, "view": view, "repeat": r, "folder": str(where),
                          "overrides": overrides}
                where.mkdir(parents=True, exist_ok=True)
                config = where / "atso_run_config.json"
                config.write_text(json.dumps({**base_config, **overrides}, indent=2))
                env = {**job.env, "nnUNet_results": str(where / "nnUNet_results"), "ATSO_RUN_CONFIG": str(config)}
                argv = [a for a in job.argv if a != "--c"]
                todo.append((record, replace(job, name=f"{args.tag}_{step.id}_{r}".replace("/", "_"), argv=argv,
                                             resume_argv=argv + ["--c"], env=env, log_path=where / "train.log",
                                             done_marker=None)))
    return todo


def read_result(record: dict, threshold: float) -> dict:
    logs = sorted(Path(record["folder"]).rglob("training_log_*.txt"))
    dice = pseudo_dice_per_epoch(logs[-1].read_text(errors="replace")) if logs else []
    esc = escape_epoch(dice, threshold)
    return {**record, "pseudo_dice": [round(d, 4) for d in dice], "escape_epoch": esc,
            "stuck": bool(dice) and dice[-1] <= threshold, "final_pseudo_dice": round(dice[-1], 4) if dice else None}


def load_tags(out: Path) -> List[List[dict]]:
    """The results of every tag under ``out`` (one list of rows per tag; tags without rows left out)."""
    return [res for res in (json.loads(r.read_text()) for r in sorted(out.glob("*/results.json"))) if res]


def settings_words(rows: List[dict]) -> str:
    return ", ".join(f"{k}={v}" for k, v in rows[0]["overrides"].items()) or "the run's own"


def summarize(out: Path) -> str:
    """A markdown table over every tag's results under ``out``."""
    rows = ["| tag | settings | trainings | stuck at the end | never left | left late (epoch >= 4) or never | "
            "escape epoch (median of those that left) | final pseudo Dice (median) |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for res in load_tags(out):
        esc = [r["escape_epoch"] for r in res if r["escape_epoch"] is not None]
        final = [r["final_pseudo_dice"] for r in res if r["final_pseudo_dice"] is not None]
        rows.append(f"| {res[0]['tag']} | {settings_words(res)} | {len(res)} | {sum(r['stuck'] for r in res)} | "
                    f"{sum(r['escape_epoch'] is None for r in res)} | "
                    f"{sum(r['escape_epoch'] is None or r['escape_epoch'] >= 4 for r in res)} | "
                    f"{statistics.median(esc) if esc else '-'} | {round(statistics.median(final), 3) if final else '-'} |")
    return "\n".join(rows) + "\n"


def plot(out: Path, target: Path) -> None:
    """Pseudo Dice per epoch of every training, one panel per tag, coloured by view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = load_tags(out)
    if not tags:
        return
    colours = {"axial": "tab:blue", "coronal": "tab:orange", "sagittal": "tab:green"}
    fig, axes = plt.subplots(1, len(tags), figsize=(3.2 * len(tags), 3.0), sharey=True, squeeze=False)
    for ax, res in zip(axes[0], tags):
        for r in res:
            style = "-" if "/M0/" in r["step"] else "--"
            ax.plot(range(len(r["pseudo_dice"])), r["pseudo_dice"], style, color=colours.get(r["view"], "grey"),
                    alpha=0.8, lw=1.2)
        ax.set_title(f"{res[0]['tag']}\n{settings_words(res)}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.axhline(0.1, color="k", lw=0.5, ls=":")
    axes[0][0].set_ylabel("pseudo Dice (training batches)")
    handles = [plt.Line2D([], [], color=c, label=v) for v, c in colours.items()]
    handles += [plt.Line2D([], [], color="k", ls="-", label="M0"), plt.Line2D([], [], color="k", ls="--", label="student")]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("-d", dest="dataset", required=True, help="dataset of the run's plan (as for atso_nnunet_run)")
    p.add_argument("-f", dest="split", required=True, help="split of the run's plan")
    p.add_argument("--views", nargs="+", help="views of the run (default: the plan's)")
    p.add_argument("--run-dir", type=Path, required=True, help="a run folder whose preparation (and the "
                   "pseudo-labels the chosen steps read) is finished")
    p.add_argument("--nnunet-dir", type=Path, required=True, help="the run's nnU-Net folder")
    p.add_argument("--steps", nargs="+", required=True, help="training step ids without the view, e.g. g0/train/M0")
    p.add_argument("--repeats", type=int, default=2, help="trainings per step and view (default 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="trainer setting to change, e.g. initial_lr=0.01 (repeatable)")
    p.add_argument("--tag", required=True, help="name of this setting's results folder")
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once, one torch thread each (default 2)")
    p.add_argument("--escape", type=float, default=0.1, help="pseudo Dice above which a training has left the "
                   "plateau (default 0.1)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    from atso_nnunet.execution.options import make_executor

    results_file = args.out / args.tag / "results.json"
    done = {(r["step"], r["repeat"]): r for r in (json.loads(results_file.read_text()) if results_file.is_file() else [])}
    overrides = parse_set(args.overrides)
    todo = [(rec, job) for rec, job in build_jobs(args, overrides) if (rec["step"], rec["repeat"]) not in done]
    logger.info("%d training(s) to run, %d already in %s", len(todo), len(done), results_file)
    executor = make_executor("local", cpu_jobs=args.jobs)
    try:
        executor.warm_up(args.out / args.tag)
        for i in range(0, len(todo), args.jobs):
            chunk = todo[i:i + args.jobs]
            results = executor.run_batch([job for _, job in chunk])
            for (rec, _), res in zip(chunk, results):
                if not res.ok:
                    logger.error("%s failed: see %s", rec["step"], rec["folder"])
                    continue
                row = read_result(rec, args.escape)
                done[(rec["step"], rec["repeat"])] = row
                logger.info("%s r%d: pseudo Dice per epoch %s", rec["step"], rec["repeat"], row["pseudo_dice"])
            results_file.write_text(json.dumps(sorted(done.values(), key=lambda r: (r["step"], r["repeat"])), indent=1))
    finally:
        executor.close()
    table = summarize(args.out)
    (args.out / "summary.md").write_text(table)
    plot(args.out, args.out / "plateau.png")
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

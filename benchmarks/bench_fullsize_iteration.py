"""Seconds per training iteration of a full-size 2D nnU-Net (512 x 512 slices, nnU-Net's planned network).

Issue 25, item 8: the NIH plans' budget line (``atso_nnunet_run -d NIH -f 10pct --dry-run
--sec-per-iter S``) should rest on a measured S, not an example value. This script measures S the
way those plans train: a synthetic NIH-like source of 512 x 512 axial slices (0.8 x 0.8 x 2.5 mm,
the generator's domain A), a plan with no ``network`` key (so nnU-Net's default planner sizes the
network, patch and batch as it would for NIH CT), labeled-only M0, and only the preparation and the
training steps of the real driver (``--step prepare``, ``--step g0/train/M0/<view>``): nnU-Net's
planning, preprocessing and ``nnUNetv2_train`` with torch.compile as nnU-Net sets it. It then reads
the wall clock between epochs from nnU-Net's training logs (end-of-epoch work included, as
``--timing-from`` does), leaves out the first ``--warmup`` epochs (compilation, cudnn autotuning), and
prints the NIH plan's budget at the measured rate.

    # on a GPU machine (one call; data and planning take most of it)
    python benchmarks/bench_fullsize_iteration.py --out /tmp/fullsize --gpus 0
    # on this CPU, a check that the path works (figures far from a GPU's)
    python benchmarks/bench_fullsize_iteration.py --out /tmp/fullsize --device cpu --epochs 3 \\
        --iterations 2 --warmup 0 --cases 2 --slices 8

What it prints: the planned network (patch, batch size, stages, features), the epochs' wall clock,
seconds per iteration (median of the epochs after the warm-up), and the budget lines of the plans
given with ``--budget-plan`` (default: plans/NIH/10pct.json and 20pct.json). ``--json`` writes the
same figures to a file. Nothing here is a test: the figure depends on the machine.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from atso_nnunet.data.synthetic_config import case_id, case_prefix_or_default
from atso_nnunet.nnunet.training_log import epoch_seconds

logger = logging.getLogger("bench_fullsize_iteration")

REPO = Path(__file__).resolve().parents[1]
SOURCE = "Dataset988_SynthFullSize"
DATASET_ID, DATASET_NAME = 989, "FullSize"


def timing_plan(cases: int, slices: int, views: List[str], epochs: int, iterations: int) -> dict:
    """A labeled-only plan on ``cases`` synthetic 512 x 512 x ``slices`` volumes, nnU-Net's planned network."""
    ids = [case_id(case_prefix_or_default("A"), i) for i in range(cases + 1)]
    return {
        "name": "full-size 2D timing (512 x 512 slices, nnU-Net's planned network)",
        "note": "benchmarks/bench_fullsize_iteration.py: seconds per training iteration for the NIH plans' budget "
                "line (issue 25, item 8). Only preparation and M0's trainings run; the test case is never predicted.",
        "sources": [SOURCE],
        "dataset_id": DATASET_ID,
        "dataset_name": DATASET_NAME,
        "convert_hint": "generated automatically on first use (atso_nnunet_synth)",
        "seed": 0, "subsets": 2, "generations": 0, "views": views, "configuration": "2d", "fold": "all",
        "method": "supervised",
        "labeled": ids[:cases], "reference": [], "test": ids[cases:],
        "training": {"num_epochs": epochs, "num_iterations_per_epoch": iterations,
                     "num_val_iterations_per_epoch": 1, "final_validation": False,
                     "test_time_augmentation": False},
        "synthetic": {SOURCE: {"domain": "A", "n_cases": cases + 1, "seed": 0, "shape": [512, 512, slices],
                               "spacing": [0.8, 0.8, 2.5]}},
    }


def driver(args, plan_file: Path, step: str) -> None:
    cmd = [str(Path(sys.executable).with_name("atso_nnunet_run")), "--plan", str(plan_file),
           "--run-dir", str(args.out / "run"), "--nnunet-dir", str(args.out / "nnunet"), "--step", step,
           "--num-processes", str(args.num_processes)]
    cmd += ["--gpus", args.gpus] if args.gpus else ["--device", args.device]
    logger.info("%s", " ".join(cmd))
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"bench_fullsize_iteration: step {step} failed; its log: {args.out / 'run' / 'run.log'} "
                         f"(and the training's log under {args.out / 'run' / 'models'})")


def planned_network(out: Path, view: str) -> Dict[str, object]:
    """Patch size, batch size and network of the view's 2D configuration, from the plans nnU-Net wrote."""
    found = sorted((out / "nnunet" / "nnUNet_preprocessed").glob(f"Dataset{DATASET_ID}_*/ATSOPlans_{view}.json"))
    if not found:
        return {}
    cfg = json.loads(found[0].read_text())["configurations"]["2d"]
    arch = cfg.get("architecture", {}).get("arch_kwargs", {})
    return {"patch_size": cfg.get("patch_size"), "batch_size": cfg.get("batch_size"),
            "n_stages": arch.get("n_stages"), "features_per_stage": arch.get("features_per_stage")}


def view_timing(out: Path, view: str, iterations: int, warmup: int) -> Dict[str, object]:
    logs = sorted((out / "run" / "models" / "M0").rglob(f"*ATSOPlans_{view}__2d/**/training_log_*.txt"))
    walls = [w for log in logs for w in epoch_seconds(log.read_text(errors="replace"))]
    steady = walls[warmup:]  # none left (a training that stopped early): no figure rather than a warm-up one
    per_iter = statistics.median(steady) / iterations if steady else None
    return {"view": view, "epoch_wall_s": [round(w, 2) for w in walls], "warmup_epochs_left_out": warmup,
            "sec_per_iteration": per_iter, **planned_network(out, view)}


def budget(plan: Path, sec_per_iter: float, out: Path) -> str:
    cmd = [str(Path(sys.executable).with_name("atso_nnunet_run")), "--plan", str(plan), "--dry-run",
           "--sec-per-iter", f"{sec_per_iter:.4g}", "--nnunet-dir", str(out / "budget_nnunet")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    lines = []
    for line in res.stdout.splitlines():
        if line.startswith("# schedule"):
            break
        lines.append(line)
    return "\n".join(lines)


def device_name(args) -> str:
    if not args.gpus:
        return f"CPU ({platform.processor() or platform.machine()})"
    import torch
    return torch.cuda.get_device_name(int(args.gpus.split(",")[0]))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--out", type=Path, required=True, help="work folder (data, nnU-Net folders, run)")
    p.add_argument("--gpus", default="", help="GPU ids for the driver (e.g. 0); empty: --device")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="without --gpus")
    p.add_argument("--views", nargs="+", default=["axial"], help="views to time (axial: 512 x 512 slices)")
    p.add_argument("--cases", type=int, default=4, help="labeled cases (default 4)")
    p.add_argument("--slices", type=int, default=64,
                   help="axial slices a case (default 64: with 4 cases, enough slices that nnU-Net's 5 %% cap on the batch size does not bind and the batch is what NIH gets)")
    p.add_argument("--epochs", type=int, default=6, help="epochs a view (default 6: 3 timed after the warm-up)")
    p.add_argument("--iterations", type=int, default=50, help="iterations per epoch (default 50)")
    p.add_argument("--warmup", type=int, default=2, help="first epochs left out of the median (default 2)")
    p.add_argument("--num-processes", type=int, default=8, help="processes for preprocessing (default 8)")
    p.add_argument("--budget-plan", type=Path, nargs="*",
                   default=[REPO / "plans" / "NIH" / "10pct.json", REPO / "plans" / "NIH" / "20pct.json"])
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in ("cases", "slices", "epochs", "iterations", "num_processes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0 or args.epochs - args.warmup < 2:
        p.error(f"--epochs ({args.epochs}) must exceed --warmup ({args.warmup}, at least 0) by at least 2: "
                "the last epoch of a log is not timed")

    args.out.mkdir(parents=True, exist_ok=True)
    plan_file = args.out / "plan.json"
    plan_file.write_text(json.dumps(timing_plan(args.cases, args.slices, args.views, args.epochs, args.iterations), indent=1))
    driver(args, plan_file, "prepare")
    for view in args.views:
        driver(args, plan_file, f"g0/train/M0/{view}")

    results = {"device": device_name(args), "views": [view_timing(args.out, v, args.iterations, args.warmup) for v in args.views]}
    print(f"device: {results['device']}")
    for r in results["views"]:
        print(f"{r['view']}: patch {r.get('patch_size')}, batch {r.get('batch_size')}, {r.get('n_stages')} stages "
              f"{r.get('features_per_stage')}; epoch wall clock (s) {r['epoch_wall_s']}; "
              f"seconds per iteration {r['sec_per_iteration']:.4g} (median after {r['warmup_epochs_left_out']} warm-up epochs)"
              if r["sec_per_iteration"] else f"{r['view']}: no timed epoch")
    rates = [r["sec_per_iteration"] for r in results["views"] if r["sec_per_iteration"]]
    if rates:
        rate = max(rates)
        results["budget"] = {str(b): budget(b, rate, args.out) for b in args.budget_plan}
        for b, text in results["budget"].items():
            print(f"\n{Path(b).relative_to(REPO) if Path(b).is_relative_to(REPO) else b} at {rate:.4g} s/iteration "
                  f"(the slowest timed view):\n{text}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if rates else 1


if __name__ == "__main__":
    sys.exit(main())

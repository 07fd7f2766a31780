"""Where a training's epoch goes: training iterations, validation, end-of-epoch work.

Runs real trainings of a plan's M0 (the driver's own ``nnUNetv2_train`` command line and run
config, in a fresh process each) with the trainer's epoch hooks timed, and prints per setting
the median over the steady epochs (the first ``--skip`` left out) of:

- ``wall``: one epoch start to the next (what the training costs);
- ``iterations``: the training iterations (batches drawn, augmented, forward/backward);
- ``validation``: the validation batches of the epoch;
- ``checkpoint`` / ``plot`` / ``log``: nnU-Net's end-of-epoch work (best and latest checkpoint
  saves, the progress plot, the log lines), and ``other`` (the rest of the epoch's bookkeeping);
- ``wall / iterations``: the target of issue 26 is <= 1.1 for the benchmark network on a CPU.

Settings are crossed: ``--cadence`` ``nnunet`` (nnU-Net's: plot and best-checkpoint check every
epoch) and ``plan`` (the plan's ``plot_every`` / ``best_checkpoint_every``), ``--parallel`` (1 =
one training alone, 2 = two side by side, axial and coronal), ``--threads`` (torch intra-op threads
per training), ``--interop`` (inter-op threads), ``--da`` (nnU-Net augmentation workers per
training, ``nnUNet_n_proc_DA``). The load average is printed before each setting: measure on an
idle machine.

    python benchmarks/bench_epoch_cost.py --work /tmp/epoch_cost                      # the demo plan
    python benchmarks/bench_epoch_cost.py -d synthetic -f bench_10pct --epochs 12 --parallel 1 2 --threads 1 2
    python benchmarks/bench_epoch_cost.py --work W --cadence nnunet plan --markdown   # tables for the docs
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

logger = logging.getLogger("bench_epoch_cost")

PHASES = ("wall", "iterations", "validation", "checkpoint", "plot", "log", "other")


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ------------------------------------------------------------------ worker (one training, timed)

def _timed_run_training(trainer) -> None:
    """Wrap the hooks of one trainer instance with clocks, run its training, write the epochs."""
    clock = time.perf_counter
    epochs: List[Dict[str, float]] = []
    cur: Dict[str, float] = {}

    def wrap(name, before=None, after=None, acc=None, owner=trainer):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t0 = clock()
            if before:
                cur[before] = t0
            try:
                return original(*args, **kwargs)
            finally:
                t1 = clock()
                if after:
                    cur[after] = t1
                if acc and "epoch_end_start" in cur:   # only inside on_epoch_end
                    cur[acc] = cur.get(acc, 0.0) + t1 - t0
        setattr(owner, name, wrapper)

    original_epoch_start = trainer.on_epoch_start

    def on_epoch_start():
        now = clock()
        if cur:
            cur["next_start"] = now
            epochs.append(dict(cur))
            cur.clear()
        cur["start"] = now
        original_epoch_start()

    trainer.on_epoch_start = on_epoch_start
    wrap("on_train_epoch_start", after="it0")
    wrap("on_train_epoch_end", before="it1")
    wrap("on_validation_epoch_start", before="v0")
    wrap("on_validation_epoch_end", after="v1")
    wrap("on_epoch_end", before="epoch_end_start", after="epoch_end_end")
    wrap("save_checkpoint", acc="checkpoint")
    wrap("print_to_log_file", acc="log")
    trainer._atso_bench_epochs = epochs
    trainer._atso_bench_cur = cur
    trainer._atso_bench_wrap = wrap


def _phases(e: Dict[str, float]) -> Dict[str, float]:
    end = e.get("next_start", e.get("epoch_end_end"))
    out = {"wall": end - e["start"], "iterations": e["it1"] - e["it0"], "validation": e["v1"] - e["v0"],
           "checkpoint": e.get("checkpoint", 0.0), "plot": e.get("plot", 0.0), "log": e.get("log", 0.0)}
    out["other"] = out["wall"] - sum(out[k] for k in ("iterations", "validation", "checkpoint", "plot", "log"))
    return out


def worker(argv: Sequence[str], out: Path, threads: int, interop: Optional[int]) -> int:
    """Run ``nnUNetv2_train`` in this process with timed hooks; write the epochs' phases to ``out``."""
    import torch
    from nnunetv2.run import run_training as rt
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if interop:
        torch.set_num_interop_threads(interop)
    original_set = torch.set_num_threads
    torch.set_num_threads = lambda n: original_set(max(1, min(int(n), threads)))   # nnU-Net asks for all CPUs
    torch.set_num_threads(threads)

    original_run = nnUNetTrainer.run_training
    result: Dict[str, object] = {}

    def run_training(self):
        _timed_run_training(self)
        # the plot is called on the logger inside on_epoch_end; wrapped on its class, since the
        # trainer's cadence hides the method with an instance attribute on epochs it skips
        self._atso_bench_wrap("plot_progress_png", acc="plot", owner=type(self.logger))
        try:
            original_run(self)
        finally:
            epochs = self._atso_bench_epochs
            if self._atso_bench_cur.get("epoch_end_end"):
                epochs.append(dict(self._atso_bench_cur))
            result["epochs"] = [_phases(e) for e in epochs if "v1" in e and "epoch_end_end" in e]

    nnUNetTrainer.run_training = run_training
    sys.argv = list(argv)
    rt.run_training_entry()
    out.write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------ parent (settings, table)

def prepare(plan: Sequence[str], work: Path) -> Path:
    """The plan's dataset planned and preprocessed under ``work/nn`` (once)."""
    nn = work / "nn"
    if not (work / "prep" / "state" / "prepare.done").is_file():
        subprocess.run([str(Path(sys.executable).parent / "atso_nnunet_run"), "-d", plan[0], "-f", plan[1],
                        "--nnunet-dir", str(nn), "--run-dir", str(work / "prep"), "--step", "prepare",
                        "--num-processes", "1"], check=True)
    return nn


def m0_jobs(plan_ref: Sequence[str], nn: Path, run_dir: Path, views: Sequence[str]):
    """The driver's M0 training jobs of ``views`` (command line, environment, run config)."""
    from atso_nnunet.cli.common import nnunet_paths
    from atso_nnunet.run.driver import DriverOptions, make_context
    from atso_nnunet.plan import find_plan, load_plan, reference_subsets
    from atso_nnunet.run.steps import train_job
    from atso_nnunet.methods import get_method
    from atso_nnunet.schedule import build_schedule

    plan = load_plan(find_plan(*plan_ref))
    ctx = make_context(plan, DriverOptions(run_dir=run_dir, paths=nnunet_paths(nn), device="cpu", num_processes=1))
    steps = build_schedule(plan, reference_subsets(plan), get_method(plan.method))
    by_view = {s.view: s for s in steps if s.kind == "train" and s.model == "M0"}
    return [train_job(ctx, by_view[v]) for v in views]


def run_setting(args, nn: Path, cadence: str, parallel: int, threads: int, interop: Optional[int],
                da: int) -> Dict[str, float]:
    """One setting: ``parallel`` trainings side by side; the medians of their steady epochs."""
    tag = f"{cadence}_p{parallel}_t{threads}_i{interop or 0}_da{da}"
    run_dir = args.work / "runs" / tag
    shutil.rmtree(run_dir, ignore_errors=True)
    views = ["axial", "coronal", "sagittal"][:parallel]
    jobs = m0_jobs(args.plan, nn, run_dir, views)
    procs = []
    for job in jobs:
        env = {**os.environ, **job.env, "ATSO_NUM_EPOCHS": str(args.epochs), "nnUNet_n_proc_DA": str(da)}
        if cadence == "nnunet":
            env.update({"ATSO_PLOT_EVERY": "1", "ATSO_BEST_CHECKPOINT_EVERY": "1"})
        out = run_dir / f"{job.name}.epochs.json"
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "_worker", "--out", str(out), "--threads", str(threads),
               *(["--interop", str(interop)] if interop else []), "--", *job.argv]
        procs.append((subprocess.Popen(cmd, env=env, stdout=open(job.log_path, "w"), stderr=subprocess.STDOUT), out,
                      job))
    for proc, out, job in procs:
        if proc.wait() != 0:
            raise SystemExit(f"training {job.name} failed (exit {proc.returncode}); see {job.log_path}")
    rows, totals = [], []
    for _, out, _ in procs:
        epochs = json.loads(out.read_text())["epochs"][args.skip:]
        rows.append({k: statistics.median(e[k] for e in epochs) for k in PHASES})
        # the whole measured stretch, the epochs on the cadence (and the last) included
        totals.append(sum(e["wall"] for e in epochs) / sum(e["iterations"] for e in epochs))
    med = {k: statistics.mean(r[k] for r in rows) for k in PHASES}
    med["ratio"] = med["wall"] / med["iterations"]
    med["total_ratio"] = statistics.mean(totals)
    return med


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        p = argparse.ArgumentParser(prog="bench_epoch_cost.py _worker", allow_abbrev=False)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--threads", type=int, required=True)
        p.add_argument("--interop", type=int)
        p.add_argument("cmd", nargs=argparse.REMAINDER)
        a = p.parse_args(argv[1:])
        cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
        return worker(cmd, a.out, a.threads, a.interop)

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("-d", dest="dataset", default="synthetic")
    p.add_argument("-f", dest="plan_name", default="10pct")
    p.add_argument("--work", type=Path, default=Path("/tmp/epoch_cost"))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--skip", type=int, default=2, help="first epochs left out of the medians (default 2)")
    p.add_argument("--cadence", nargs="+", choices=["nnunet", "plan"], default=["nnunet", "plan"])
    p.add_argument("--parallel", nargs="+", type=int, default=[1, 2])
    p.add_argument("--threads", nargs="+", type=int, default=[1])
    p.add_argument("--interop", nargs="+", type=int, default=[0], help="0 = torch's default")
    p.add_argument("--da", nargs="+", type=int, default=[0], help="nnUNet_n_proc_DA per training (default 0)")
    p.add_argument("--repeat", type=int, default=1, help="trials; odd trials run the settings in reverse "
                   "order, so that a changing machine load falls on every setting alike")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if args.skip >= args.epochs:
        p.error(f"--skip {args.skip} leaves no epoch of --epochs {args.epochs}")
    if any(n < 1 or n > 3 for n in args.parallel):
        p.error("--parallel takes 1, 2 or 3 (one training per view)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.plan = (args.dataset, args.plan_name)
    args.work.mkdir(parents=True, exist_ok=True)
    nn = prepare(args.plan, args.work)
    results = []
    settings = list(itertools.product(args.cadence, args.parallel, args.threads, args.interop, args.da))
    order = [st for trial in range(args.repeat) for st in (settings if trial % 2 == 0 else settings[::-1])]
    for cadence, parallel, threads, interop, da in order:
        before = load()
        med = run_setting(args, nn, cadence, parallel, threads, interop or None, da)
        results.append(((cadence, parallel, threads, interop, da), med, before))
        logger.info("cadence %s, %d side by side, %d thread(s), interop %s, DA %d (load %s): wall %.3f s, "
                    "iterations %.3f, validation %.3f, checkpoint %.3f, plot %.3f, log %.3f, other %.3f; "
                    "wall/iterations %.3f (all measured epochs: %.3f)", cadence, parallel, threads,
                    interop or "default", da, before, *(med[k] for k in PHASES), med["ratio"], med["total_ratio"])
    if args.markdown:
        print(f"\nplan {args.plan[0]}/{args.plan[1]}, {args.epochs} epochs, median of epochs {args.skip + 1}-"
              f"{args.epochs} (mean over the trainings side by side), seconds per epoch; the last two columns: "
              "wall / iterations of the median epoch and of all measured epochs together (the epochs on the "
              "plot and checkpoint cadence, and the last, included):\n")
        print("| cadence | side by side | threads | interop | DA workers | load before | wall | iterations | "
              "validation | checkpoint | plot | log | other | epochs / s, all trainings | wall / iterations | "
              "all epochs |")
        print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (cadence, parallel, threads, interop, da), med, before in results:
            print(f"| {cadence} | {parallel} | {threads} | {interop or 'default'} | {da} | {before} | "
                  + " | ".join(f"{med[k]:.3f}" for k in PHASES)
                  + f" | {parallel / med['wall']:.2f} | **{med['ratio']:.3f}** | {med['total_ratio']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

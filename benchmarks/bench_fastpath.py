"""Benchmark of the local fast path: warm workers vs plain subprocesses, CPU slots, driver overhead.

Sub-commands (each prints its figures; ``--markdown`` for tables to paste into docs/lab/benchmarks.md):

``threads``  two of the demo's trainings (M0, axial and coronal) on a prepared demo dataset, run
             (a) one after the other with nnU-Net's default torch threads (all CPUs) and
             (b) both at once with one torch thread each; warm workers in both cases.
``startup``  per-call start-up of ``nnUNetv2_train`` / ``nnUNetv2_predict`` on the prepared dataset,
             warm and plain: a training that stops right after start-up (``--val`` on a model
             folder without checkpoint: imports, trainer lookup, trainer set-up, then exit 1) and a
             prediction of an empty folder (imports, model and trainer loaded, nothing to do).
``demo``     the whole demo (``atso_nnunet_run -d synthetic -f 10pct``) in fresh folders, timed,
             then the figures of its run folder (as ``figures``).
``figures``  figures of finished run folders: run wall, sum of job walls, time with at least one
             job running, driver overhead, and the start-up share estimated from ``startup``'s
             per-call figures.

The machine load (``/proc/loadavg``) is printed before and after each measurement: on a shared
machine, say how loaded it was.

Usage:
    python benchmarks/bench_fastpath.py threads --work /tmp/fp
    python benchmarks/bench_fastpath.py startup --work /tmp/fp --repeat 3
    python benchmarks/bench_fastpath.py demo --work /tmp/fp --mode warm     # or plain
    python benchmarks/bench_fastpath.py demo --work /tmp/fp --mode warm --tag v2 --runs 10   # final DSC spread
    python benchmarks/bench_fastpath.py figures /tmp/fp/demo_warm/run /tmp/fp/demo_plain/run
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from atso_nnunet.errors import StepFailedError
from atso_nnunet.execution.jobs import Job
from atso_nnunet.execution.local import LocalExecutor
from atso_nnunet.execution.warm.pool import WarmPool
from atso_nnunet.methods import get_method

PLAN = ("synthetic", "10pct")


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _ctx(nnunet_dir: Path, run_dir: Path):
    """RunContext and schedule of the demo plan over a prepared nnU-Net folder (as the driver builds them)."""
    from atso_nnunet.cli.common import nnunet_paths
    from atso_nnunet.run.driver import DriverOptions, make_context
    from atso_nnunet.plan import find_plan, load_plan, reference_subsets
    from atso_nnunet.schedule import build_schedule

    plan = load_plan(find_plan(*PLAN))
    ctx = make_context(plan, DriverOptions(run_dir=run_dir, paths=nnunet_paths(nnunet_dir), device="cpu",
                                           num_processes=1))
    return ctx, build_schedule(plan, reference_subsets(plan), get_method(plan.method))


def prepare(work: Path) -> Path:
    """The demo's dataset planned and preprocessed under ``work/nn`` (once)."""
    nn = work / "nn"
    if not (work / "prep" / "state" / "prepare.done").is_file():
        subprocess.run([str(Path(sys.executable).parent / "atso_nnunet_run"), "-d", PLAN[0], "-f", PLAN[1],
                        "--nnunet-dir", str(nn), "--run-dir", str(work / "prep"), "--step", "prepare"], check=True)
    return nn


def _executor(mode: str, slots: int, threads: Optional[int]) -> LocalExecutor:
    if mode == "warm":
        return LocalExecutor(max_parallel=slots, retries=0, warm=WarmPool(slots, threads=threads))
    return LocalExecutor(max_parallel=slots, retries=0)


def cmd_threads(args) -> int:
    from dataclasses import replace

    from atso_nnunet.run import steps as steps_mod

    nn = prepare(args.work)
    views = ["axial", "coronal"]
    rows = []
    configs = (("2 jobs one after the other, all CPUs each", 1, None), ("2 jobs at once, 1 thread each", 2, 1))
    for trial in range(args.repeat):
        for label, slots, threads in configs[::(1 if trial % 2 == 0 else -1)]:
            run_dir = args.work / f"threads_{slots}_{trial}"
            shutil.rmtree(run_dir, ignore_errors=True)
            ctx, steps = _ctx(nn, run_dir)
            jobs = [steps_mod.train_job(ctx, s) for s in steps if s.kind == "train" and s.model == "M0" and s.view in views]
            jobs = [replace(j, env={**j.env, "ATSO_NUM_EPOCHS": str(args.epochs)}) for j in jobs]
            pool = WarmPool(slots, threads=threads)
            pool.warm_up(run_dir / "logs")
            for worker in pool.workers:  # the workers' imports are not timed
                worker.wait_ready(1800)
            before = load()
            t0 = time.monotonic()
            procs = []
            pending = list(jobs)
            walls, cpus = [], []
            while pending or procs:
                while pending and len(procs) < slots:
                    job = pending.pop(0)
                    job.log_path.parent.mkdir(parents=True, exist_ok=True)
                    log = open(job.log_path, "ab")
                    procs.append((pool.start(job.argv, job.child_env(), job.cwd, log), log, time.monotonic()))
                time.sleep(0.05)
                for item in [p for p in procs if p[0].poll() is not None]:
                    proc, log, started = item
                    procs.remove(item)
                    log.close()
                    if proc.returncode != 0:
                        raise SystemExit(f"training failed ({proc.returncode}); see {run_dir / 'logs'}")
                    walls.append(round(time.monotonic() - started, 1))
                    cpus.append(round(proc.cpu_s, 1))
            wall = time.monotonic() - t0
            pool.close()
            rows.append((label, trial, wall, walls, cpus, before, load()))
            print(f"{label}: {wall:.1f} s (job walls {walls}, job CPU s {cpus}; load {before} -> {load()})", flush=True)
    if args.markdown:
        print("\n| schedule | trial | wall, 2 trainings (s) | job walls (s) | job CPU (s) | load before -> after |\n"
              "|---|---:|---:|---|---|---|")
        for label, trial, wall, walls, cpus, before, after in rows:
            print(f"| {label} | {trial + 1} | {wall:.1f} | {walls} | {cpus} | {before} -> {after} |")
    return 0


def cmd_startup(args) -> int:
    from dataclasses import replace

    from atso_nnunet.run import steps as steps_mod

    nn = prepare(args.work)
    run_dir = args.work / "startup"
    ctx, steps = _ctx(nn, run_dir)
    m0 = next(s for s in steps if s.kind == "train" and s.model == "M0" and s.view == "axial")
    if not steps_mod.outputs_present(ctx, m0):
        job = steps_mod.train_job(ctx, m0)  # one short epoch: the prediction only needs a model to load
        LocalExecutor(retries=0).run_batch([replace(job, env={**job.env, "ATSO_NUM_EPOCHS": "1"})])
    pred_steps = [s for s in steps if s.kind == "predict" and s.model == "M0" and s.view == "axial"]
    empty = args.work / "empty_input"
    empty.mkdir(parents=True, exist_ok=True)
    figures: Dict[str, Dict[str, List[float]]] = {}
    for mode in ("warm", "plain"):
        executor = _executor(mode, 1, None)
        if mode == "warm":
            executor.run_batch([_noop_predict(ctx, pred_steps, empty, "warmup")])  # the worker's import: not per call
        for i in range(args.repeat):
            train = _startup_train(ctx, steps, f"{mode}{i}")
            pred = _noop_predict(ctx, pred_steps, empty, f"{mode}{i}")
            for kind, job in (("train", train), ("predict", pred)):
                t0 = time.monotonic()
                try:
                    executor.run_batch([job])
                except StepFailedError:  # the training probe exits 1 by design
                    pass
                wall = time.monotonic() - t0
                figures.setdefault(mode, {}).setdefault(kind, []).append(wall)
            print(f"{mode} #{i + 1}: train {figures[mode]['train'][-1]:.2f} s, predict {figures[mode]['predict'][-1]:.2f} s "
                  f"(load {load()})", flush=True)
        executor.close()
    out = {mode: {kind: statistics.median(v) for kind, v in kinds.items()} for mode, kinds in figures.items()}
    out["load"] = load()
    (args.work / "startup.json").write_text(json.dumps({"median_s": out, "all_s": figures}, indent=1))
    print(json.dumps(out))
    if args.markdown:
        print("\n| per call (median of %d) | warm (s) | plain (s) |\n|---|---:|---:|" % args.repeat)
        for kind in ("train", "predict"):
            print(f"| `nnUNetv2_{kind}` start-up | {out['warm'][kind]:.2f} | {out['plain'][kind]:.2f} |")
    return 0


def _startup_train(ctx, steps, tag: str) -> Job:
    from atso_nnunet.run import steps as steps_mod
    from dataclasses import replace

    step = next(s for s in steps if s.kind == "train" and s.model == "M0" and s.view == "coronal")
    job = steps_mod.train_job(ctx, step)
    # --val on a model folder without a checkpoint: nnU-Net imports, looks the trainer up, sets it up, then
    # fails to load checkpoint_final.pth (exit 1). That is a training's start-up, without its work.
    return replace(job, name=f"startup_train_{tag}", argv=[a for a in job.argv if a != "--c"] + ["--val"],
                   log_path=ctx.run.root / "logs" / f"startup_train_{tag}.log")


def _noop_predict(ctx, pred_steps, empty: Path, tag: str) -> Job:
    from atso_nnunet.run import steps as steps_mod
    from dataclasses import replace

    job = steps_mod.predict_job(ctx, pred_steps, link=False)
    argv = list(job.argv)
    argv[argv.index("-i") + 1] = str(empty)
    argv[argv.index("-o") + 1] = str(ctx.run.root / "empty_out" / tag)
    return replace(job, name=f"startup_predict_{tag}", argv=argv,
                   log_path=ctx.run.root / "logs" / f"startup_predict_{tag}.log")


# ------------------------------------------------------------------------------------------ figures

_TS = r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3})"
_FINISHED = re.compile(_TS + r" INFO atso_nnunet\.execution\.local: job (\S+): attempt \d+ finished with exit code "
                       r"(-?\d+) after ([\d.]+) s")
# module names before and after the move into sub-packages (issue 27), so that older run folders still read
_READY = re.compile(_TS + r" INFO atso_nnunet\.execution\.warm(?:\.pool)?: warm worker \d+ ready after ([\d.]+) s")
_ANY = re.compile(_TS + r" ")
_STEP = re.compile(_TS + r" INFO atso_nnunet\.(?:run\.)?(?:driver|progress): \[\d+/\d+\] (\S+) done in")


def _ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def run_figures(run_dir: Path, startup: Optional[dict] = None) -> dict:
    """Figures of a finished run folder from its ``run.log`` (the last driver session in it)."""
    lines = (run_dir / "run.log").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if "atso_nnunet.run.driver: run folder:" in line]
    lines = lines[starts[-1]:] if starts else lines
    stamps = [_ts(m.group(1)) for m in map(_ANY.match, lines) if m]
    jobs: List[Tuple[float, float, str]] = []
    for line in lines:
        m = _FINISHED.match(line)
        if m:
            end, wall = _ts(m.group(1)), float(m.group(4))
            jobs.append((end - wall, end, m.group(2)))
    ready = [float(m.group(2)) for m in map(_READY.match, lines) if m]
    wall = stamps[-1] - stamps[0]
    phases: Dict[str, float] = {}  # seconds from the start to the last finished step of each phase
    for line in lines:
        m = _ANY.match(line)
        if m and "planning and preprocessing ready" in line:
            phases["prepare"] = round(_ts(m.group(1)) - stamps[0], 1)
        step = _STEP.match(line)
        if step:
            phases[step.group(2).split("/", 1)[0]] = round(_ts(step.group(1)) - stamps[0], 1)
    busy, cur_start, cur_end = 0.0, None, None
    for s, e, _ in sorted(jobs):
        if cur_end is None or s > cur_end:
            if cur_end is not None:
                busy += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    if cur_end is not None:
        busy += cur_end - cur_start
    n_train = sum(1 for _, _, name in jobs if "__train__" in name)
    n_pred = len(jobs) - n_train
    out = {"run_dir": str(run_dir), "run_wall_s": round(wall, 1), "jobs": len(jobs), "train_jobs": n_train,
           "predict_jobs": n_pred, "sum_job_walls_s": round(sum(e - s for s, e, _ in jobs), 1),
           "time_with_a_job_running_s": round(busy, 1), "warm_worker_ready_s": ready, "phase_end_s": phases}
    out["run_wall_over_sum_job_walls"] = round(wall / out["sum_job_walls_s"], 3) if jobs else None
    out["run_wall_over_busy_time"] = round(wall / busy, 3) if busy else None
    if busy and "prepare" in phases:  # the driver's share once the data are prepared
        out["after_prepare_wall_over_busy_time"] = round((wall - phases["prepare"]) / busy, 3)
    if startup is not None:
        mode = "warm" if ready else "plain"
        per_call = startup["median_s"][mode]
        total = n_train * per_call["train"] + n_pred * per_call["predict"] + (max(ready) if ready else 0.0)
        out["startup_mode"] = mode
        out["startup_estimate_s"] = round(total, 1)
        out["startup_share"] = round(total / wall, 3)
    dsc = json.loads((run_dir / "report.json").read_text()).get("final", {}) if (run_dir / "report.json").is_file() else {}
    out["final_test_dsc_mean"] = dsc.get("test_dsc_mean")
    return out


def cmd_figures(args) -> int:
    startup = json.loads(args.startup.read_text()) if args.startup and args.startup.is_file() else None
    for run_dir in args.run_dirs:
        print(json.dumps(run_figures(run_dir, startup)))
    return 0


def _one_demo(args, where: Path) -> dict:
    shutil.rmtree(where, ignore_errors=True)
    cmd = [str(Path(sys.executable).parent / "atso_nnunet_run"), "-d", PLAN[0], "-f", PLAN[1],
           "--nnunet-dir", str(where / "nn"), "--run-dir", str(where / "run"), "--num-processes", "1"]  # as `make demo`
    if args.mode == "plain":
        cmd.append("--no-warm-workers")
    cmd += args.extra
    print(f"$ {' '.join(cmd)}\nload before: {load()}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rc = proc.wait(timeout=args.time_limit)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the driver stops its jobs; rerunning the command would continue
        rc = proc.wait()
        print(f"stopped after the time limit of {args.time_limit} s", flush=True)
    wall = time.monotonic() - t0
    print(f"exit {rc}; wall {wall:.1f} s ({wall / 60:.1f} min); load after: {load()}", flush=True)
    startup = json.loads(args.startup.read_text()) if args.startup and args.startup.is_file() else None
    figures = run_figures(where / "run", startup)
    figures["command_wall_s"] = round(wall, 1)
    figures["exit_code"] = rc
    print(json.dumps(figures), flush=True)
    (where / "figures.json").write_text(json.dumps(figures, indent=1))
    return figures


def cmd_demo(args) -> int:
    """One demo, or ``--runs N`` of them (resumable: finished ones are read back), then the final DSCs."""
    if args.runs == 1:
        _one_demo(args, args.work / f"demo_{args.mode}{args.tag}")
        return 0
    runs = []
    for i in range(1, args.runs + 1):
        where = args.work / f"demo_{args.mode}{args.tag}_{i}"
        done = where / "figures.json"
        runs.append(json.loads(done.read_text()) if done.is_file() else _one_demo(args, where))
    dsc = [r["final_test_dsc_mean"] for r in runs]
    walls = [r["command_wall_s"] / 60 for r in runs]
    print("final-model test DSC (%) per run: " + ", ".join("-" if d is None else f"{100 * d:.2f}" for d in dsc))
    finished = [100 * d for d in dsc if d is not None]
    if finished:
        print(f"min {min(finished):.1f}, median {statistics.median(finished):.1f}, max {max(finished):.1f} "
              f"over {len(finished)} finished run(s); {sum(d < 10 for d in finished)} below 10 % (collapsed)")
    print(f"wall per run (min): " + ", ".join(f"{w:.1f}" for w in walls))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("threads", "startup", "demo"):
        p = sub.add_parser(name)
        p.add_argument("--work", type=Path, required=True, help="scratch folder")
        p.add_argument("--markdown", action="store_true")
        if name in ("threads", "startup"):
            p.add_argument("--repeat", type=int, default=1)
        if name == "threads":
            p.add_argument("--epochs", type=int, default=1, help="epochs of 50 iterations per training")
        if name == "demo":
            p.add_argument("--mode", choices=("warm", "plain"), required=True)
            p.add_argument("--tag", default="")
            p.add_argument("--runs", type=int, default=1, help="demos one after the other (folders "
                           "demo_<mode><tag>_<i>; finished ones are read back), then final DSC min/median/max")
            p.add_argument("--startup", type=Path, help="startup.json written by the startup command")
            p.add_argument("--time-limit", type=float, default=None, help="stop the run after this many seconds")
            p.add_argument("extra", nargs="*", help="further atso_nnunet_run options (after --)")
    p = sub.add_parser("figures")
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--startup", type=Path)
    args = parser.parse_args(argv)
    if hasattr(args, "work"):
        args.work = args.work.resolve()
    return {"threads": cmd_threads, "startup": cmd_startup, "demo": cmd_demo, "figures": cmd_figures}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

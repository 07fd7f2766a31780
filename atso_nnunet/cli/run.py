"""``atso_nnunet_run``: run an ATSO experiment (or a baseline) end to end, resumably.

    atso_nnunet_run -d NIH -f 10pct                      # plans/NIH/10pct.json
    atso_nnunet_run -d synthetic -f 10pct --nnunet-dir work   # the embedded demo
    atso_nnunet_run --plan my_plan.json --method stso --gpus 0,1,2,3
    atso_nnunet_run -d NIH -f 10pct --dry-run            # print every command instead
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from atso_nnunet.cli.common import (add_alias, add_nnunet_dir_option, add_verbose_option, add_views_option, folder,
                                    nnunet_paths, number, plain, run_cli)
from atso_nnunet.errors import InputError
from atso_nnunet.limits import PROCESSES_MAX, RETRIES_MAX
from atso_nnunet.plan.fields import MAX_GENERATIONS, MAX_SUBSETS

logger = logging.getLogger("atso_nnunet.run")

DEVICES = ("cpu", "cuda")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="atso_nnunet_run",
        description="Semi-supervised nnU-Net training with ATSO (asynchronous teacher-student optimization) "
                    "or a baseline (stso, self-learning, supervised), 2D tri-view. Rerun the same command to "
                    "continue an interrupted run.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=plain(__doc__))
    src = p.add_argument_group("experiment plan (plans/<dataset>/<split>.json, or any file)")
    src.add_argument("-d", "--dataset", help="plan folder, e.g. NIH, synthetic, transfer")
    src.add_argument("-f", "--split", help="plan file in that folder, e.g. 10pct, 20pct")
    src.add_argument("--plan", type=Path, help="path of a plan JSON file (instead of -d/-f)")
    ov = p.add_argument_group("overrides of the plan")
    from atso_nnunet.methods import get_method, method_names

    ov.add_argument("--method", choices=method_names(), metavar="METHOD",
                    help="default: the plan's. " + "; ".join(f"{n}: {get_method(n).summary}" for n in method_names()))
    ov.add_argument("--generations", type=number(0, MAX_GENERATIONS), help="number of teacher-student generations T")
    ov.add_argument("--subsets", type=number(1, MAX_SUBSETS), help="ATSO: number of reference subsets K (K > 2: each subset is "
                                               "pseudo-labelled by the ensemble of the models not trained on it)")
    add_views_option(ov, default=None, help="views to train instead of the plan's")
    ov.add_argument("--configuration", help="nnU-Net configuration: 2d (tri-view) or 3d_fullres")
    ex = p.add_argument_group("execution")
    ex.add_argument("--run-dir", type=folder, help="run folder (default: $nnUNet_results/atso_runs/"
                                                "Dataset<id>_<name>__<method>)")
    add_nnunet_dir_option(ex)
    ex.add_argument("--num-processes", type=number(1, PROCESSES_MAX), default=2, help="processes for preprocessing and ingestion (default: %(default)s)")
    ex.add_argument("--dry-run", action="store_true", help="print every command (nnU-Net's own for training and "
                                                          "prediction) in order, run nothing; over an existing run "
                                                          "folder, the steps it has finished are marked (done)")
    ex.add_argument("--sec-per-iter", type=number(0, 3600, integer=False, above_minimum=True), metavar="S",
                    help="with --dry-run: seconds per training iteration on your GPU, to print GPU-hours per "
                         "generation and in total")
    ex.add_argument("--timing-from", type=Path, metavar="DIR",
                    help="with --dry-run: read seconds per iteration from nnU-Net's training logs below DIR "
                         "(wall clock between epochs; a run folder or model folder of an earlier run on the same GPU)")
    ex.add_argument("--overwrite", action="store_true", help="delete this run's previous outputs and start over")
    add_alias(ex, "--fresh", "--overwrite", "overwrite", flag=True)
    ex.add_argument("--step", metavar="ID", help="run one step of the schedule (see --dry-run), e.g. from your own "
                                                "scheduler; 'prepare' prepares the data")
    add_execution_options(p, ex)
    add_verbose_option(p)
    return p


def _slurm_number(name: str):
    """The argparse type of a ``--slurm-*`` number: the limits of its :class:`SlurmConfig` field."""
    import dataclasses

    from atso_nnunet.execution.slurm.config import SlurmConfig

    meta = {f.name: f.metadata for f in dataclasses.fields(SlurmConfig)}[name]
    return number(meta["min"], meta["max"], integer=isinstance(SlurmConfig.__dataclass_fields__[name].default, int),
                  above_minimum=bool(meta.get("above_min")))


def add_execution_options(p: argparse.ArgumentParser, ex) -> None:
    """Where nnU-Net jobs run: local (GPUs, CPU slots, warm workers) or SLURM, and the device.

    Shared by ``atso_nnunet_run`` and ``atso_nnunet_compare``.
    """
    ex.add_argument("--executor", choices=("local", "slurm"), default="local",
                    help="where nnU-Net jobs run: this machine or SLURM job arrays (default: %(default)s)")
    ex.add_argument("--gpus", help="local GPU ids, e.g. 0,1,2,3: one job per GPU (default: CPU, see --cpu-jobs)")
    ex.add_argument("--jobs-per-gpu", type=number(1, 64), default=None, metavar="N",
                    help="local with --gpus: N jobs share each GPU at a time, each with CPUs/(GPUs x N) - 1 "
                         "augmentation workers unless nnUNet_n_proc_DA is set (default 1; small networks leave "
                         "a large GPU mostly idle, see docs/lab/benchmarks.md 'On a GPU')")
    ex.add_argument("--device", choices=DEVICES, help="where nnU-Net trains and predicts (default: cuda with --gpus "
                                                     "or SLURM GPUs per job > 0, else cpu)")
    ex.add_argument("--retries", type=number(0, RETRIES_MAX), default=None, help="retries of a failed job (default 1)")
    ex.add_argument("--no-warm-workers", dest="warm_workers", action="store_false", default=None,
                    help="local: start every nnU-Net command as a fresh subprocess instead of forking it from a "
                         "worker that imported torch and nnU-Net once (also: ATSO_WARM_WORKERS=0)")
    ex.add_argument("--cpu-jobs", type=number(1, PROCESSES_MAX), default=None, metavar="N",
                    help="local without --gpus: nnU-Net jobs at a time, each with CPUs/N torch threads (default: "
                         "ATSO_CPU_JOBS, else 2 with warm workers and 1 without; the thread cap needs warm workers)")
    sl = p.add_argument_group("SLURM (--executor slurm; submitit). Defaults come from the plan's 'slurm' section, "
                              "then from atso_nnunet.execution.slurm.config.SlurmConfig; these flags override both")
    sl.add_argument("--slurm-partition", metavar="NAME",
                    help="partition the jobs run in (default: the cluster's default partition); checked with sinfo "
                         "before anything is submitted")
    sl.add_argument("--slurm-gpus-per-job", type=_slurm_number("gpus_per_job"), metavar="N",
                    help="GPUs per job (default 1, or 0 with --device cpu); 0 trains on the CPU")
    sl.add_argument("--slurm-cpus", type=_slurm_number("cpus_per_task"), metavar="N",
                    help="CPUs per job (default 8); nnU-Net's data-augmentation workers follow it (N - 1)")
    sl.add_argument("--slurm-mem-gb", type=_slurm_number("mem_gb"), metavar="GB", help="memory per job in GB (default 32)")
    sl.add_argument("--slurm-time-min", type=_slurm_number("time_min"), metavar="MIN",
                    help="time limit per job in minutes (default 1440); a training that needs longer gets SIGUSR2 "
                         "before the limit, is requeued and continues from its checkpoint (nnU-Net --c)")
    sl.add_argument("--slurm-signal-delay-s", type=_slurm_number("signal_delay_s"), metavar="S",
                    help="seconds before the time limit at which a job is told to stop and requeue (default 120); "
                         "must be shorter than the time limit")
    sl.add_argument("--slurm-max-requeues", type=_slurm_number("max_requeues"), metavar="N",
                    help="requeues after time-outs per job (default 3)")
    sl.add_argument("--slurm-setup", action="append", default=None, metavar="LINE",
                    help="shell line run before each job, e.g. 'module load cuda' (repeatable)")
    sl.add_argument("--slurm-log-dir", type=folder, metavar="DIR",
                    help="shared folder for submitit's files and job states (default: <run-dir>/slurm)")
    sl.add_argument("--slurm-max-parallel", type=_slurm_number("max_parallel"), metavar="N",
                    help="jobs of one array running at once (default 6)")
    sl.add_argument("--slurm-poll-s", type=_slurm_number("poll_interval_s"), metavar="S",
                    help="seconds between two looks at the queue (default 30)")


def load_experiment(args):
    from atso_nnunet.plan import find_plan, load_plan, with_overrides

    if args.plan is not None:
        if args.dataset or args.split:
            raise InputError("give either --plan FILE or -d DATASET -f SPLIT, not both")
        plan = load_plan(args.plan)
    else:
        if not (args.dataset and args.split):
            raise InputError("name the experiment: -d DATASET -f SPLIT (e.g. -d NIH -f 10pct) or --plan FILE")
        plan = load_plan(find_plan(args.dataset, args.split))
    return with_overrides(plan, method=args.method, generations=args.generations, views=args.views,
                          configuration=args.configuration, subsets=args.subsets)


SLURM_FLAGS = {"slurm_partition": "partition", "slurm_gpus_per_job": "gpus_per_job", "slurm_cpus": "cpus_per_task",
               "slurm_mem_gb": "mem_gb", "slurm_time_min": "time_min", "slurm_setup": "extra_sbatch_lines",
               "slurm_log_dir": "log_folder", "slurm_max_parallel": "max_parallel",
               "slurm_signal_delay_s": "signal_delay_s", "slurm_max_requeues": "max_requeues",
               "slurm_poll_s": "poll_interval_s"}


def slurm_config(args, plan, run_dir: Path):
    """SlurmConfig from the plan's ``slurm`` section, overridden by the ``--slurm-*`` flags given."""
    import dataclasses

    from atso_nnunet.execution.slurm.config import SlurmConfig

    settings = dict(plan.slurm or {})
    known = {f.name for f in dataclasses.fields(SlurmConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"plan field slurm: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    settings.update({field: getattr(args, flag) for flag, field in SLURM_FLAGS.items()
                     if getattr(args, flag) is not None})
    settings["log_folder"] = Path(settings.get("log_folder") or run_dir / "slurm")
    settings.setdefault("job_name_prefix", f"atso:{run_dir.name}")
    if getattr(args, "device", None) == "cpu":
        if settings.get("gpus_per_job", 0) > 0 and "gpus_per_job" in settings:
            raise InputError(f"--device cpu with {settings['gpus_per_job']} SLURM GPU(s) per job: ask for "
                             "--slurm-gpus-per-job 0 (or leave it out), or use --device cuda")
        settings["gpus_per_job"] = 0
    try:
        return SlurmConfig(**settings)
    except (TypeError, ValueError) as e:
        raise InputError(f"SLURM options: {e}") from None


# local-only options (dest -> flag): meaningless for SLURM jobs, which get their resources from --slurm-*
LOCAL_FLAGS = {"gpus": "--gpus", "cpu_jobs": "--cpu-jobs", "jobs_per_gpu": "--jobs-per-gpu",
               "warm_workers": "--no-warm-workers"}


def check_execution_options(args) -> None:
    """The execution options together, before any work and the same with or without ``--dry-run``:
    ``--slurm-*`` flags only with ``--executor slurm``, local-only flags only without it, ``--gpus``
    and ``--jobs-per-gpu`` well-formed.

    Raises:
        InputError: naming the flags and the fix.
    """
    from atso_nnunet.run.preflight import parse_gpu_ids

    if args.executor == "local":
        given = [f"--{dest.replace('_', '-')}" for dest in SLURM_FLAGS if getattr(args, dest, None) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: SLURM option(s) given with the local executor, where they would "
                             "be ignored; add --executor slurm, or leave them out")
        if args.cpu_jobs is None:
            from atso_nnunet.execution.warm.pool import default_cpu_jobs

            try:
                default_cpu_jobs(warm=True)     # ATSO_CPU_JOBS, checked as --cpu-jobs is
            except ValueError as e:
                raise InputError(f"{e}; fix or unset it, or give --cpu-jobs N") from None
    else:
        given = [flag for dest, flag in LOCAL_FLAGS.items() if getattr(args, dest, None) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: local option(s) given with --executor slurm, where they would be "
                             "ignored; SLURM jobs get their resources from --slurm-gpus-per-job and --slurm-cpus "
                             "(or the plan's slurm section): leave them out")
    check_jobs_per_gpu(args, parse_gpu_ids(args.gpus))


def check_jobs_per_gpu(args, gpus) -> int:
    """``--jobs-per-gpu`` (default 1), checked against the executor and ``--gpus``.

    Raises:
        InputError: below 1, or given without local GPUs.
    """
    jobs_per_gpu = getattr(args, "jobs_per_gpu", None)
    if jobs_per_gpu is None:
        return 1
    if jobs_per_gpu < 1:
        raise InputError(f"--jobs-per-gpu {jobs_per_gpu}: give a whole number >= 1")
    if args.executor != "local" or not gpus:
        raise InputError(f"--jobs-per-gpu {jobs_per_gpu} needs local GPUs (--gpus 0,1,...); on SLURM each job "
                         "gets its own GPUs (--slurm-gpus-per-job), on the CPU use --cpu-jobs")
    return jobs_per_gpu


def make_executor_from_args(args, run_dir: Path, plan=None):
    from atso_nnunet.execution.options import make_executor

    from atso_nnunet.run.preflight import parse_gpu_ids

    gpus = parse_gpu_ids(args.gpus)
    jobs_per_gpu = check_jobs_per_gpu(args, gpus)
    if args.executor == "slurm":
        executor = make_executor("slurm", slurm=slurm_config(args, plan, run_dir), retries=args.retries)
        executor.check_cluster()
        return executor
    # CPU slots are for CPU runs: a GPU run without --gpus keeps one job at a time unless asked otherwise
    cpu_jobs = args.cpu_jobs if args.cpu_jobs is not None or args.device in (None, "cpu") else 1
    return make_executor("local", gpus=gpus, retries=args.retries, warm_workers=args.warm_workers,
                         cpu_jobs=cpu_jobs, jobs_per_gpu=jobs_per_gpu)


def resolve_device(args, plan, run_dir: Path) -> str:
    """``--device``, else from the resources asked for: cuda with local ``--gpus`` or SLURM GPUs per job.

    Raises:
        InputError: ``--device cuda`` on SLURM jobs that get no GPU.
    """
    if args.executor == "slurm":
        gpus = slurm_config(args, plan, run_dir).gpus_per_job
        if args.device == "cuda" and gpus == 0:
            raise InputError("--device cuda with --slurm-gpus-per-job 0: the jobs would have no GPU; "
                             "use --device cpu or ask for GPUs")
        return args.device or ("cuda" if gpus > 0 else "cpu")
    return args.device or ("cuda" if args.gpus else "cpu")


def _run(args) -> int:
    from atso_nnunet.run.driver import DriverOptions, default_run_dir, run_experiment
    from atso_nnunet.plan import resolve_case_rule

    check_execution_options(args)
    if not args.dry_run and (args.sec_per_iter is not None or args.timing_from is not None):
        flag = "--sec-per-iter" if args.sec_per_iter is not None else "--timing-from"
        raise InputError(f"{flag} prices a schedule in GPU-hours and only works with --dry-run; add --dry-run, "
                         f"or leave {flag} out to run")
    plan = load_experiment(args)
    paths = nnunet_paths(args.nnunet_dir)
    plan = resolve_case_rule(plan, paths)
    run_dir = (args.run_dir or default_run_dir(paths, plan)).resolve()
    device = resolve_device(args, plan, run_dir)
    if not args.dry_run and args.executor == "local" and device != "cpu":
        from atso_nnunet.cli.segment import check_device

        check_device(device)     # the local trainings would fail one by one; SLURM nodes have their own GPUs
    executor = None if args.dry_run else make_executor_from_args(args, run_dir, plan)
    logger.info("run folder: %s", run_dir)
    sec_per_iter = args.sec_per_iter
    if args.timing_from is not None:
        from atso_nnunet.run.dryrun import seconds_per_iteration

        sec_per_iter = seconds_per_iteration(args.timing_from)
        if sec_per_iter is None:
            raise InputError(f"--timing-from {args.timing_from}: no nnU-Net training_log_*.txt with timed epochs "
                             "below it; give --sec-per-iter instead")
        logger.info("%.3g s per training iteration, from the nnU-Net logs below %s", sec_per_iter, args.timing_from)
    if sec_per_iter is not None and sec_per_iter <= 0:
        raise InputError(f"--sec-per-iter: must be > 0, got {sec_per_iter}")
    options = DriverOptions(run_dir=run_dir, paths=paths, executor=executor, device=device,
                            num_processes=args.num_processes, dry_run=args.dry_run, fresh=args.overwrite,
                            only_step=args.step, sec_per_iter=sec_per_iter)
    try:
        report = run_experiment(plan, options)
    except KeyboardInterrupt:
        logger.error("interrupted; rerun the same command to continue where it stopped")
        return 130
    if report is not None:
        print((run_dir / "report.md").read_text())
        logger.info("report: %s (also report.csv, report.json, report.png)", run_dir / "report.md")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""The executor named on the command line or in a plan: :func:`make_executor`.

- :class:`~atso_nnunet.execution.local.LocalExecutor`: subprocesses on this machine, one job per
  GPU slot (one or more slots per GPU).
- :class:`~atso_nnunet.execution.slurm.executor.SlurmExecutor`: one SLURM job array per batch
  through submitit, with requeue on time-out and reattachment after a driver restart.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Optional, Sequence

from atso_nnunet.errors import InputError
from atso_nnunet.execution.jobs import Executor
from atso_nnunet.execution.local import LocalExecutor
from atso_nnunet.execution.slurm.config import SlurmConfig

logger = logging.getLogger(__name__)

EXECUTOR_KINDS = ("local", "slurm")


def make_executor(kind: str, gpus: Optional[Sequence[str]] = None, slurm: Optional[SlurmConfig] = None,
                  retries: Optional[int] = None, max_parallel: Optional[int] = None,
                  warm_workers: Optional[bool] = None, cpu_jobs: Optional[int] = None,
                  jobs_per_gpu: int = 1) -> Executor:
    """Build the executor named ``kind``.

    Args:
        kind: ``"local"`` or ``"slurm"``.
        gpus: local GPU ids (``"local"`` only); ``None``: CPU-only, one job at a time.
        slurm: the SLURM configuration (required for ``"slurm"``).
        retries: resubmissions of a failed job; ``None``: 1 for ``"local"``,
            ``slurm.retries`` for ``"slurm"`` (a value given here overrides it).
        max_parallel: local only: jobs at a time (default: number of GPUs, or 1).
        warm_workers: local only: run nnU-Net's commands in warm workers
            (:mod:`atso_nnunet.execution.warm.pool`); ``None``: unless ``ATSO_WARM_WORKERS=0``.
        cpu_jobs: local without GPUs: nnU-Net jobs at a time, each with ``cpus // cpu_jobs`` torch
            threads (a cap that needs warm workers; plain nnU-Net takes every CPU per job).
            ``None``: :func:`~atso_nnunet.execution.warm.pool.default_cpu_jobs`.
        jobs_per_gpu: local with GPUs: jobs sharing one GPU at a time (default 1).

    Raises:
        InputError: unknown ``kind``, missing ``slurm`` configuration, or an invalid option.
    """
    try:
        if kind == "local":
            from atso_nnunet.execution.warm.pool import cpu_threads_per_job, default_cpu_jobs, warm_workers_enabled

            warm = warm_workers_enabled() if warm_workers is None else warm_workers
            threads = None
            if not gpus:
                cpu_jobs = default_cpu_jobs(warm) if cpu_jobs is None else cpu_jobs
                threads = cpu_threads_per_job(cpu_jobs)
                max_parallel = cpu_jobs if max_parallel is None else max_parallel
                if cpu_jobs > 1 and not warm:
                    logger.warning("%d CPU jobs at a time without warm workers: nnU-Net gives each job a thread "
                                   "per CPU, so the jobs share the cores", cpu_jobs)
            if jobs_per_gpu != 1 and not gpus:
                raise InputError(f"jobs per GPU {jobs_per_gpu} (option 'jobs_per_gpu') needs GPUs (option 'gpus'); "
                                 "on the CPU use cpu_jobs")
            return LocalExecutor(gpus=gpus, max_parallel=max_parallel, retries=1 if retries is None else retries,
                                 warm=warm, threads_per_job=threads, jobs_per_gpu=jobs_per_gpu)
        if kind == "slurm":
            if not isinstance(slurm, SlurmConfig):
                raise InputError("executor 'slurm' needs a SlurmConfig (option 'slurm'), got "
                                 f"{type(slurm).__name__}")
            from atso_nnunet.execution.slurm.executor import SlurmExecutor

            return SlurmExecutor(slurm if retries is None else dataclasses.replace(slurm, retries=retries))
    except ValueError as e:
        raise InputError(f"executor {kind!r}: {e}") from e
    raise InputError(f"executor: unknown kind {kind!r} (option 'kind'); choose one of {', '.join(EXECUTOR_KINDS)}")


"""Executors: run a batch of independent jobs (trainings, predictions) and report their outcome.

- :class:`~atso_nnunet.execution.local.LocalExecutor`: subprocesses on this machine, one job per
  GPU slot.
- :class:`~atso_nnunet.execution.slurm.SlurmExecutor`: one SLURM job array per batch through
  submitit, with requeue on time-out and reattachment after a driver restart.

Use :func:`make_executor` to build one from command-line options.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from atso_nnunet.errors import InputError
from atso_nnunet.execution.jobs import Executor, Job, JobResult
from atso_nnunet.execution.local import LocalExecutor
from atso_nnunet.execution.slurm import CommandJob, SlurmConfig, SlurmExecutor, render_submission

EXECUTOR_KINDS = ("local", "slurm")

__all__ = ["EXECUTOR_KINDS", "CommandJob", "Executor", "Job", "JobResult", "LocalExecutor", "SlurmConfig",
           "SlurmExecutor", "make_executor", "render_submission"]


def make_executor(kind: str, gpus: Optional[Sequence[str]] = None, slurm: Optional[SlurmConfig] = None,
                  retries: Optional[int] = None, max_parallel: Optional[int] = None,
                  warm_workers: Optional[bool] = None) -> Executor:
    """Build the executor named ``kind``.

    Args:
        kind: ``"local"`` or ``"slurm"``.
        gpus: local GPU ids (``"local"`` only); ``None``: CPU-only, one job at a time.
        slurm: the SLURM configuration (required for ``"slurm"``).
        retries: resubmissions of a failed job; ``None``: 1 for ``"local"``,
            ``slurm.retries`` for ``"slurm"`` (a value given here overrides it).
        max_parallel: local only: jobs at a time (default: number of GPUs, or 1).
        warm_workers: local only: run nnU-Net's commands in warm workers
            (:mod:`atso_nnunet.execution.warm`); ``None``: unless ``ATSO_WARM_WORKERS=0``.

    Raises:
        InputError: unknown ``kind``, missing ``slurm`` configuration, or an invalid option.
    """
    try:
        if kind == "local":
            from atso_nnunet.execution.warm import warm_workers_enabled

            warm = warm_workers_enabled() if warm_workers is None else warm_workers
            return LocalExecutor(gpus=gpus, max_parallel=max_parallel, retries=1 if retries is None else retries,
                                 warm=warm)
        if kind == "slurm":
            if not isinstance(slurm, SlurmConfig):
                raise InputError("executor 'slurm' needs a SlurmConfig (option 'slurm'), got "
                                 f"{type(slurm).__name__}")
            return SlurmExecutor(slurm if retries is None else dataclasses.replace(slurm, retries=retries))
    except ValueError as e:
        raise InputError(f"executor {kind!r}: {e}") from e
    raise InputError(f"executor: unknown kind {kind!r} (option 'kind'); choose one of {', '.join(EXECUTOR_KINDS)}")


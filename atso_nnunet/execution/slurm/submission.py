"""The sbatch submission of a batch: its name, submitit's parameters, and the rendered script
(built with submitit's own ``_make_sbatch_string``, so it can be inspected without a cluster).
"""
from __future__ import annotations

import hashlib
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from submitit.slurm.slurm import _convert_mem, _make_sbatch_string

from atso_nnunet.execution.jobs import Job, check_batch
from atso_nnunet.execution.slurm import cluster as slurm_cluster
from atso_nnunet.execution.slurm.config import SlurmConfig


def batch_name(jobs: Sequence[Job]) -> str:
    """A stable, filesystem-safe name for a batch: the first job's name and a hash of all names."""
    names = sorted(job.name for job in jobs)
    digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:10]
    first = names[0] if names else "empty"
    return f"{first[:40]}-{len(names)}jobs-{digest}"


def sbatch_parameters(config: SlurmConfig, name: str) -> Dict[str, Any]:
    """submitit's SLURM parameters (sbatch names) for ``config``; shared by submission and rendering."""
    params: Dict[str, Any] = {
        "job_name": slurm_cluster.job_name(config.job_name_prefix, name),
        "time": config.time_min,
        "mem": _convert_mem(config.mem_gb),
        "cpus_per_task": config.cpus_per_task,
        "array_parallelism": config.max_parallel,
        "signal_delay_s": config.signal_delay_s,
    }
    if config.partition is not None:
        params["partition"] = config.partition
    if config.gpus_per_job:
        params["gpus_per_node"] = config.gpus_per_job
    if config.extra_sbatch_lines:
        params["setup"] = list(config.extra_sbatch_lines)
    if config.additional_parameters:
        params["additional_parameters"] = dict(config.additional_parameters)
    return params


def _submitit_folder(config: SlurmConfig, batch: str) -> Path:
    return config.log_folder / batch / "submitit"


def render_submission(jobs: Sequence[Job], config: SlurmConfig, batch: Optional[str] = None) -> str:
    """The sbatch script submitit submits for ``jobs`` (all of them) as one batch.

    Built with submitit's own ``_make_sbatch_string`` and the parameters
    :class:`SlurmExecutor` passes, so it can be inspected and tested without a cluster.
    submitit submits a single job without ``--array``, as this rendering does.
    """
    check_batch(jobs)
    batch = batch or batch_name(jobs)
    folder = _submitit_folder(config, batch).expanduser().absolute()
    python = config.python or shlex.quote(sys.executable)
    command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=len(jobs) if len(jobs) > 1 else None,
                               **sbatch_parameters(config, batch))

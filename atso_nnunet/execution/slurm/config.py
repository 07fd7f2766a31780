"""Resources and behaviour of the SLURM backend, as one validated dataclass.

Kept apart from :mod:`atso_nnunet.execution.slurm.executor` (submitit) so that plans and the command line
can check a ``slurm`` section without building an executor.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from atso_nnunet.execution.jobs import check_retries
from atso_nnunet.limits import PROCESSES_MAX, RETRIES_MAX, limits, metadata_problem


@dataclass
class SlurmConfig:
    """Resources and behaviour of the SLURM backend (one array task per job).

    Attributes:
        partition: SLURM partition (``--partition``); ``None``: the cluster's default.
        gpus_per_job: GPUs per array task (``--gpus-per-node``); 0 for CPU-only jobs.
        cpus_per_task: CPU cores per task (``--cpus-per-task``); nnU-Net's data augmentation
            uses ``nnUNet_n_proc_DA`` worker processes.
        mem_gb: memory per task in GB (``--mem``).
        time_min: wall-clock limit per task in minutes (``--time``); a longer training is
            requeued and resumed.
        extra_sbatch_lines: shell lines run in the batch script before the job, e.g.
            ``["module load cuda/12.1", "source /path/venv/bin/activate"]`` (submitit ``setup``).
        additional_parameters: further ``#SBATCH`` options, e.g. ``{"account": "proj42",
            "qos": "normal"}`` (submitit ``additional_parameters``).
        log_folder: shared folder for submitit's files, batch state and task logs.
        max_parallel: array tasks running at once (``%N`` of ``--array``).
        retries: resubmissions of a failed job (with ``resume_argv``).
        max_requeues: requeues after time-outs (submitit ``max_num_timeout``); preemptions do
            not count.
        signal_delay_s: seconds between the ``USR2`` warning and the end of the time limit.
        poll_interval_s: seconds between two status checks (one ``sacct`` call per check).
        python: command that runs Python on the compute nodes (default ``sys.executable``).
        job_name_prefix: start of every job name; a task is named ``<prefix>:<step>`` in
            ``squeue`` (``atso_nnunet_run`` uses ``atso:<run folder name>``).
    """

    partition: Optional[str] = None
    gpus_per_job: int = field(default=1, metadata=limits(0, 64))
    cpus_per_task: int = field(default=8, metadata=limits(1, PROCESSES_MAX))
    mem_gb: float = field(default=32.0, metadata=limits(0, 65536, above_minimum=True))
    time_min: int = field(default=24 * 60, metadata=limits(1, 366 * 24 * 60))
    extra_sbatch_lines: List[str] = field(default_factory=list)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)
    log_folder: Path = Path("slurm_logs")
    max_parallel: int = field(default=6, metadata=limits(1, 10_000))
    retries: int = field(default=1, metadata=limits(0, RETRIES_MAX))
    max_requeues: int = field(default=3, metadata=limits(0, 1000))
    signal_delay_s: int = field(default=120, metadata=limits(0, 24 * 3600))
    poll_interval_s: float = field(default=30.0, metadata=limits(0, 24 * 3600, above_minimum=True))
    python: Optional[str] = None
    job_name_prefix: str = "atso"

    def __post_init__(self) -> None:
        def positive_int(option: str, minimum: int) -> None:
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"SlurmConfig.{option} must be an integer >= {minimum}, got {value!r}")

        if self.partition is not None and (not isinstance(self.partition, str) or not self.partition.strip()):
            raise ValueError(f"SlurmConfig.partition must be a non-empty string or None, got {self.partition!r}")
        positive_int("gpus_per_job", 0)
        positive_int("cpus_per_task", 1)
        positive_int("time_min", 1)
        positive_int("max_parallel", 1)
        positive_int("max_requeues", 0)
        positive_int("signal_delay_s", 0)
        check_retries(self.retries, "SlurmConfig.retries")
        if isinstance(self.mem_gb, bool) or not isinstance(self.mem_gb, (int, float)) or self.mem_gb <= 0:
            raise ValueError(f"SlurmConfig.mem_gb must be a number > 0, got {self.mem_gb!r}")
        if not isinstance(self.poll_interval_s, (int, float)) or self.poll_interval_s <= 0:
            raise ValueError(f"SlurmConfig.poll_interval_s must be > 0 seconds, got {self.poll_interval_s!r}")
        for f in fields(self):   # the upper limits, and floats finite (NaN, Infinity)
            problem = metadata_problem(getattr(self, f.name), f.metadata) if "max" in f.metadata else None
            if problem:
                raise ValueError(f"SlurmConfig.{f.name}: {problem}")
        if self.signal_delay_s >= self.time_min * 60:
            raise ValueError(f"SlurmConfig.signal_delay_s ({self.signal_delay_s} s) must be shorter than "
                             f"SlurmConfig.time_min ({self.time_min} min), or the job is told to stop as soon "
                             "as it starts (--slurm-signal-delay-s, --slurm-time-min)")
        if isinstance(self.extra_sbatch_lines, str) or not all(isinstance(x, str) for x in self.extra_sbatch_lines):
            raise ValueError("SlurmConfig.extra_sbatch_lines must be a list of shell lines (strings), "
                             f"got {self.extra_sbatch_lines!r}")
        if not isinstance(self.additional_parameters, dict) or not all(
                isinstance(k, str) for k in self.additional_parameters):
            raise ValueError("SlurmConfig.additional_parameters must be a dict of sbatch option names "
                             f"to values, got {self.additional_parameters!r}")
        self.extra_sbatch_lines = list(self.extra_sbatch_lines)
        self.additional_parameters = dict(self.additional_parameters)
        self.log_folder = Path(self.log_folder)
        if not isinstance(self.job_name_prefix, str):
            raise ValueError(f"SlurmConfig.job_name_prefix must be a string, got {self.job_name_prefix!r}")

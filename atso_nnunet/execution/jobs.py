"""What an executor runs: :class:`Job`, what it reports: :class:`JobResult`, and the
:class:`Executor` contract shared by the local and the SLURM backends.

A job is one subprocess (an ``nnUNetv2_train`` or ``nnUNetv2_predict`` argument list). The
driver's files are the single source of truth for what is finished: a job whose
``done_marker`` exists is skipped and never run again.
"""
from __future__ import annotations

import abc
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from atso_nnunet.limits import RETRIES_MAX, limit_problem
from atso_nnunet.errors import StepFailedError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Job:
    """One independent command of a batch.

    Attributes:
        name: unique within a batch and filesystem-safe (letters, digits, ``.``, ``_``, ``-``).
        argv: the command as an argument list (never a shell string).
        env: extra environment variables, on top of the parent's environment.
        log_path: stdout and stderr of every attempt are appended here, each attempt after a
            header line ``=== attempt N ===``.
        cwd: working directory of the command (default: the caller's).
        uses_gpu: whether the command needs a GPU (a local GPU slot).
        resume_argv: the command used for every attempt after the first (a retry after a
            failure, a requeue after a SLURM time-out or preemption), e.g. ``nnUNetv2_train ... --c``
            so that training continues from its latest checkpoint. ``None``: rerun ``argv``.
        done_marker: if this file exists the job is already finished and is skipped.
    """

    name: str
    argv: List[str]
    log_path: Path
    env: Dict[str, str] = field(default_factory=dict)
    cwd: Optional[Path] = None
    uses_gpu: bool = True
    resume_argv: Optional[List[str]] = None
    done_marker: Optional[Path] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SAFE_NAME.match(self.name):
            raise ValueError(f"Job.name must be filesystem-safe ([A-Za-z0-9._-], not starting with "
                             f"'.' or '-'), got {self.name!r}")
        for option in ("argv", "resume_argv"):
            value = getattr(self, option)
            if value is None and option == "resume_argv":
                continue
            if isinstance(value, (str, bytes)) or not value or not all(isinstance(a, str) for a in value):
                raise ValueError(f"Job.{option} of job {self.name!r} must be a non-empty list of "
                                 f"strings (an argument list, not a shell string), got {value!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise ValueError(f"Job.env of job {self.name!r} must map str to str, got {self.env!r}")
        object.__setattr__(self, "log_path", Path(self.log_path))
        if self.cwd is not None:
            object.__setattr__(self, "cwd", Path(self.cwd))
        if self.done_marker is not None:
            object.__setattr__(self, "done_marker", Path(self.done_marker))

    def is_done(self) -> bool:
        """Whether the job's ``done_marker`` exists."""
        return self.done_marker is not None and self.done_marker.exists()

    def argv_for(self, attempt: int) -> List[str]:
        """The argument list of attempt ``attempt`` (1-based): ``argv`` first, then ``resume_argv``."""
        if attempt > 1 and self.resume_argv is not None:
            return list(self.resume_argv)
        return list(self.argv)

    def child_env(self, base: Optional[Mapping[str, str]] = None,
                  extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """The child's environment: ``base`` (default: a copy of ``os.environ``), then ``env``,
        then ``extra`` (e.g. the executor's ``CUDA_VISIBLE_DEVICES``). Nothing is mutated."""
        merged = dict(os.environ if base is None else base)
        merged.update(self.env)
        if extra:
            merged.update(extra)
        return merged


@dataclass(frozen=True)
class JobResult:
    """Outcome of one job of a batch.

    Attributes:
        name: the job's name.
        returncode: exit status of the last attempt (0 on success; for a job skipped because
            its done marker exists, 0; negative: killed by that signal; -1 where unknown).
        attempts: attempts run in this call (0: skipped because the done marker exists).
        log_path: the job's log file.
        wall_s: seconds the attempts ran, summed.
    """

    name: str
    returncode: int
    attempts: int
    log_path: Path
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Executor(abc.ABC):
    """Runs batches of independent jobs; a batch is one step of a generation (e.g. six trainings)."""

    def warm_up(self, log_dir: Path) -> None:
        """Start, in the background, whatever the first batch would otherwise wait for (the local
        executor's warm workers); ``log_dir`` takes their logs. Default: nothing to start."""

    @abc.abstractmethod
    def run_batch(self, jobs: Sequence[Job]) -> List[JobResult]:
        """Run ``jobs`` concurrently and return when all are finished.

        A failed job is retried (``resume_argv`` if given) up to the executor's ``retries``;
        jobs whose ``done_marker`` exists are skipped (``attempts=0``).

        Returns:
            One :class:`JobResult` per job, in the order of ``jobs``.

        Raises:
            StepFailedError: after every job has finished, if some failed on their last
                attempt; the message names each failed job and its log.
        """


def check_batch(jobs: Sequence[Job]) -> None:
    """Raise ``ValueError`` if ``jobs`` are not :class:`Job` objects with unique names."""
    seen = set()
    for job in jobs:
        if not isinstance(job, Job):
            raise ValueError(f"run_batch expects Job objects, got {type(job).__name__}")
        if job.name in seen:
            raise ValueError(f"Job names must be unique within a batch; {job.name!r} appears twice")
        seen.add(job.name)


def check_retries(retries: int, option: str = "retries") -> int:
    """Validate a retry count (an int >= 0) and return it."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"{option} must be an integer >= 0, got {retries!r}")
    if retries > RETRIES_MAX:
        raise ValueError(f"{option}: {limit_problem(retries, 0, RETRIES_MAX)}")
    return retries


def attempt_header(attempt: int) -> str:
    """The line written to a job's log before each attempt."""
    return f"=== attempt {attempt} ===\n"


def raise_failures(failures: Sequence[JobResult], details: Optional[Mapping[str, str]] = None) -> None:
    """Raise one :class:`StepFailedError` naming every failed job and its log (no-op if none).

    Args:
        failures: the results of the jobs that failed their last attempt.
        details: optional extra text per job name (e.g. the SLURM state and submitit's log).
    """
    if not failures:
        return
    details = details or {}
    lines = [f"{len(failures)} job(s) failed after their retries:"]
    for r in failures:
        extra = f"; {details[r.name]}" if r.name in details else ""
        lines.append(f"  - {r.name}: exit code {r.returncode} after {r.attempts} attempt(s); "
                     f"log: {r.log_path}{extra}")
    lines.append("Read the log(s), fix the cause and run the driver again: finished jobs are skipped.")
    raise StepFailedError("\n".join(lines))

"""SLURM backend through submitit: one job array per batch, requeue on time-out, reattach.

How a batch runs:

- The jobs of a batch that are not done are submitted as ONE job array
  (``#SBATCH --array=0-<n-1>%<max_parallel>``). Each array task runs a :class:`CommandJob`,
  which runs the job's argument list as a subprocess and appends its output to ``Job.log_path``.
- Submitted ids are recorded in ``<log_folder>/<batch>/jobs.json`` (written atomically). A new
  driver process calling :meth:`SlurmExecutor.run_batch` with the same jobs reads it first:
  still-running tasks are reattached (not resubmitted), tasks that finished successfully are
  counted as done, failed or vanished ones are resubmitted (with ``resume_argv``), and jobs
  whose ``done_marker`` exists are skipped. Interrupting the driver leaves the cluster jobs running.
- Time-out / preemption: SLURM sends ``USR2`` ``signal_delay_s`` seconds before the end
  (``--signal=USR2@<delay>``). submitit's handler in the array task calls
  :meth:`CommandJob.checkpoint`, which terminates the running command (SIGTERM to its process
  group, SIGKILL after ``CommandJob.kill_grace_s``) and returns the same job switched to
  ``resume_argv``; submitit then requeues the task (``scontrol requeue``), at most
  ``SlurmConfig.max_requeues`` times for time-outs. nnU-Net has no save-on-signal: a training
  resumed with ``--c`` continues from its latest ``checkpoint_latest.pth`` (written every
  ``save_every`` = 50 epochs in nnunetv2), so a requeue loses at most that many epochs; a
  prediction simply runs again. The command itself ignores ``USR2`` (SLURM signals every process
  of the step), so only the submitit process decides what happens.
- A command that exits non-zero fails its array task; :meth:`SlurmExecutor.run_batch`
  resubmits it up to ``SlurmConfig.retries`` times (with ``resume_argv``), then raises
  :class:`~atso_nnunet.errors.StepFailedError` once every other job has finished.

The compute nodes must see the same Python environment (``atso_nnunet`` importable with
``sys.executable``, or ``SlurmConfig.python``) and ``log_folder`` on a shared file system.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import submitit
from submitit.slurm.slurm import _convert_mem, _make_sbatch_string

from atso_nnunet.execution.jobs import (Executor, Job, JobResult, attempt_header, check_batch,
                                        check_retries, raise_failures)
from atso_nnunet.io import write_json

logger = logging.getLogger(__name__)

STATE_FILE = "jobs.json"

# sacct states of a job that is not finished yet.
_ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING",
                  "CONFIGURING", "RESIZING", "SUSPENDED", "PREEMPTED", "READY", "SIGNALING",
                  "STAGE_OUT"}
# A job just submitted may be unknown to sacct for a while; only then is "UNKNOWN" waited out.
_UNKNOWN_GRACE_S = 300.0

RUNNING, SUCCEEDED, FAILED, VANISHED = "running", "succeeded", "failed", "vanished"


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
    """

    partition: Optional[str] = None
    gpus_per_job: int = 1
    cpus_per_task: int = 8
    mem_gb: float = 32.0
    time_min: int = 24 * 60
    extra_sbatch_lines: List[str] = field(default_factory=list)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)
    log_folder: Path = Path("slurm_logs")
    max_parallel: int = 6
    retries: int = 1
    max_requeues: int = 3
    signal_delay_s: int = 120
    poll_interval_s: float = 30.0
    python: Optional[str] = None

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
        if self.signal_delay_s >= self.time_min * 60:
            raise ValueError(f"SlurmConfig.signal_delay_s ({self.signal_delay_s} s) must be shorter than "
                             f"SlurmConfig.time_min ({self.time_min} min)")
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


class CommandFailedError(RuntimeError):
    """Raised inside an array task when the job's command exits non-zero."""

    def __init__(self, name: str, returncode: int, log_path: Path) -> None:
        super().__init__(f"job {name}: command exited with code {returncode}; log: {log_path}")
        self.returncode = returncode


class CommandJob(submitit.helpers.Checkpointable):
    """The callable submitted for one :class:`Job`: runs its argument list in a subprocess.

    Picklable (plain attributes; the running process is not pickled). On the compute node
    ``__call__`` appends ``=== attempt N ===`` and the command's output to ``log_path`` and
    raises :class:`CommandFailedError` on a non-zero exit. On submitit's time-out/preemption
    signal, :meth:`checkpoint` terminates the command and returns this job switched to
    ``resume_argv`` for the requeued task.

    Args:
        job: the job to run.
        attempt: the attempt number written in the log header (1-based).
        kill_grace_s: seconds between SIGTERM and SIGKILL when the command is interrupted.
    """

    def __init__(self, job: Job, attempt: int = 1, kill_grace_s: float = 30.0) -> None:
        self.name = job.name
        self.argv = job.argv_for(attempt)
        self.resume_argv = list(job.resume_argv) if job.resume_argv is not None else list(job.argv)
        self.env = dict(job.env)
        self.log_path = str(job.log_path)
        self.cwd = None if job.cwd is None else str(job.cwd)
        self.attempt = attempt
        self.kill_grace_s = kill_grace_s
        self._proc: Optional[subprocess.Popen] = None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_proc"] = None
        return state

    def __call__(self) -> int:
        """Run the command; return 0, or raise :class:`CommandFailedError`."""
        log_path = Path(self.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.env)
        with open(log_path, "ab") as log:
            log.write(attempt_header(self.attempt).encode())
            log.flush()
            self._proc = subprocess.Popen(self.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=_ignore_requeue_signal)
            returncode = self._proc.wait()
        if returncode != 0:
            raise CommandFailedError(self.name, returncode, log_path)
        return 0

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit's signal handler: stop the command, resubmit with ``resume_argv``."""
        self._terminate_command()
        with contextlib.suppress(OSError), open(self.log_path, "ab") as log:
            log.write(b"=== interrupted (time-out or preemption); requeued to resume ===\n")
        resumed = CommandJob.__new__(CommandJob)
        resumed.__dict__.update(self.__getstate__())
        resumed.argv = list(self.resume_argv)
        resumed.attempt = self.attempt + 1
        return submitit.helpers.DelayedSubmission(resumed, *args, **kwargs)

    def _terminate_command(self) -> None:
        """SIGTERM the command's process group, SIGKILL after ``kill_grace_s``.

        Runs inside a signal handler while ``__call__`` may be blocked in ``Popen.wait`` (which
        holds the Popen's internal lock), so the child is reaped with ``os.waitpid`` directly.
        """
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_s
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, 0)


def _ignore_requeue_signal() -> None:
    """In the command's process: ignore USR2, which SLURM sends to every process of the step."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def batch_name(jobs: Sequence[Job]) -> str:
    """A stable, filesystem-safe name for a batch: the first job's name and a hash of all names."""
    names = sorted(job.name for job in jobs)
    digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:10]
    first = names[0] if names else "empty"
    return f"{first[:40]}-{len(names)}jobs-{digest}"


def sbatch_parameters(config: SlurmConfig, name: str) -> Dict[str, Any]:
    """submitit's SLURM parameters (sbatch names) for ``config``; shared by submission and rendering."""
    params: Dict[str, Any] = {
        "job_name": name,
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


@dataclass
class _Tracked:
    job: Job
    handle: Any  # a submitit Job
    attempt: int  # attempt number across driver processes (log header)
    tries: int  # submissions in this run_batch call
    submitted_at: float
    reattached: bool = False
    wall_s: float = 0.0


class SlurmExecutor(Executor):
    """Run batches as SLURM job arrays through submitit; see the module docstring.

    Args:
        config: resources and behaviour.
        cluster: ``"slurm"``, or ``"local"`` for submitit's local executor (processes on this
            machine; for tests). Resources other than the time limit are ignored locally.
    """

    def __init__(self, config: SlurmConfig, cluster: str = "slurm") -> None:
        if cluster not in ("slurm", "local"):
            raise ValueError(f"cluster must be 'slurm' or 'local', got {cluster!r}")
        self.config = config
        self.cluster = cluster

    def __repr__(self) -> str:
        return f"SlurmExecutor({self.config!r}, cluster={self.cluster!r})"

    # ---- submitit plumbing (overridden in tests) ----
    def _make_executor(self, batch: str) -> submitit.core.core.PicklingExecutor:
        folder = _submitit_folder(self.config, batch)
        params = sbatch_parameters(self.config, batch)
        if self.cluster == "local":
            ex = submitit.LocalExecutor(folder, max_num_timeout=self.config.max_requeues,
                                        python=self.config.python)
            ex.update_parameters(timeout_min=self.config.time_min, signal_delay_s=self.config.signal_delay_s)
            return ex
        ex = submitit.SlurmExecutor(folder, max_num_timeout=self.config.max_requeues, python=self.config.python)
        ex.update_parameters(**params)
        return ex

    def _handle(self, batch: str, job_id: str) -> Any:
        folder = _submitit_folder(self.config, batch)
        if self.cluster == "local":
            return submitit.local.local.LocalJob(folder, job_id)
        return submitit.SlurmJob(folder, job_id)

    def _refresh_states(self) -> None:
        """One sacct call for every registered job (no-op locally)."""
        if self.cluster == "slurm":
            submitit.SlurmJob.watcher.update()

    def _scheduler_state(self, handle: Any) -> str:
        """The job's state as the scheduler sees it (upper case, first word)."""
        if self.cluster == "local":
            if getattr(handle, "_process", None) is not None:
                return "RUNNING" if handle._process.poll() is None else "FINISHED"
            return "RUNNING" if _pid_alive(handle.job_id) else "UNKNOWN"
        state = handle.watcher.get_state(handle.job_id, mode="cache")
        return (state.split() or ["UNKNOWN"])[0].upper()

    # ---- the batch ----
    def run_batch(self, jobs: Sequence[Job], batch: Optional[str] = None) -> List[JobResult]:
        """Run ``jobs`` as one job array, reattaching to a previous driver's jobs.

        Args:
            jobs: the batch.
            batch: name of the batch's folder under ``log_folder`` (default:
                :func:`batch_name`, stable for the same job names).

        Returns:
            One :class:`JobResult` per job, in order (``wall_s`` is the driver's observation:
            from submission or reattachment to completion, queueing included).

        Raises:
            StepFailedError: some jobs failed after ``retries`` resubmissions (raised once all
                jobs have finished; the message names each job's log and submitit's log).
        """
        check_batch(jobs)
        batch = batch or batch_name(jobs)
        state_path = self.config.log_folder / batch / STATE_FILE
        state = _load_state(state_path)
        results: Dict[str, JobResult] = {}
        tracked: Dict[str, _Tracked] = {}
        to_submit: List[Tuple[Job, int, int]] = []  # (job, attempt, tries)
        details: Dict[str, str] = {}
        failures: List[JobResult] = []

        previous: List[_Tracked] = []
        for job in jobs:
            if job.is_done():
                logger.info("job %s: skipped, %s exists", job.name, job.done_marker)
                results[job.name] = JobResult(job.name, 0, 0, job.log_path, 0.0)
            elif job.name in state:
                record = state[job.name]
                handle = self._handle(batch, record["job_id"])
                previous.append(_Tracked(job, handle, record["attempt"], 0, time.monotonic(), reattached=True))
            else:
                to_submit.append((job, 1, 1))
        if previous:
            self._refresh_states()
        for t in previous:
            status, _ = self._status(t)
            if status == RUNNING:
                logger.info("job %s: reattached to SLURM job %s", t.job.name, t.handle.job_id)
                t.tries = 1
                tracked[t.job.name] = t
            elif status == SUCCEEDED:
                logger.info("job %s: SLURM job %s had finished successfully", t.job.name, t.handle.job_id)
                results[t.job.name] = JobResult(t.job.name, 0, 0, t.job.log_path, 0.0)
            else:
                logger.warning("job %s: previous SLURM job %s %s; resubmitting", t.job.name, t.handle.job_id, status)
                to_submit.append((t.job, t.attempt + 1, 1))

        self._submit(batch, to_submit, tracked, state, state_path)
        while tracked:
            time.sleep(self.config.poll_interval_s)
            self._refresh_states()
            again: List[Tuple[Job, int, int]] = []
            for name, t in list(tracked.items()):
                status, info = self._status(t)
                if status == RUNNING:
                    continue
                del tracked[name]
                t.wall_s = time.monotonic() - t.submitted_at
                if status == SUCCEEDED:
                    logger.info("job %s: SLURM job %s finished after %.0f s", name, t.handle.job_id, t.wall_s)
                    results[name] = JobResult(name, 0, t.tries, t.job.log_path, t.wall_s)
                elif t.tries <= self.config.retries:
                    logger.warning("job %s: SLURM job %s %s (%s); resubmitting (%d of %d)", name,
                                   t.handle.job_id, status, info, t.tries, self.config.retries)
                    again.append((t.job, t.attempt + 1, t.tries + 1))
                else:
                    rc = _returncode(info)
                    results[name] = JobResult(name, rc, t.tries, t.job.log_path, t.wall_s)
                    failures.append(results[name])
                    details[name] = f"SLURM job {t.handle.job_id} {status}; submitit log: {t.handle.paths.stderr}"
                    logger.error("job %s: SLURM job %s %s after %d attempt(s); log: %s", name,
                                 t.handle.job_id, status, t.tries, t.job.log_path)
            self._submit(batch, again, tracked, state, state_path)
        raise_failures(failures, details)
        return [results[job.name] for job in jobs]

    def _submit(self, batch: str, items: List[Tuple[Job, int, int]], tracked: Dict[str, _Tracked],
                state: Dict[str, Dict[str, Any]], state_path: Path) -> None:
        """Submit ``items`` as one array and record their ids in the state file."""
        if not items:
            return
        ex = self._make_executor(batch)
        with ex.batch():
            handles = [ex.submit(CommandJob(job, attempt)) for job, attempt, _ in items]
        now = time.monotonic()
        for (job, attempt, tries), handle in zip(items, handles):
            tracked[job.name] = _Tracked(job, handle, attempt, tries, now)
            state[job.name] = {"job_id": str(handle.job_id), "attempt": attempt}
            logger.info("job %s: submitted as SLURM job %s (attempt %d)", job.name, handle.job_id, attempt)
        write_json({"batch": batch, "cluster": self.cluster, "jobs": state}, state_path)

    def _status(self, t: _Tracked) -> Tuple[str, str]:
        """(RUNNING | SUCCEEDED | FAILED | VANISHED, detail) of a tracked job, without blocking
        (except up to submitit's 15 s wait for a result file of a job the scheduler says ended)."""
        handle = t.handle
        if not handle.paths.folder.is_dir():
            return VANISHED, f"submitit folder {handle.paths.folder} is missing"
        if handle.paths.result_pickle.exists():
            error = handle.exception()
            return (SUCCEEDED, "") if error is None else (FAILED, str(error))
        sched = self._scheduler_state(handle)
        if sched in _ACTIVE_STATES:
            return RUNNING, sched
        if sched == "UNKNOWN":
            if not t.reattached and time.monotonic() - t.submitted_at < _UNKNOWN_GRACE_S:
                return RUNNING, sched
            return VANISHED, "unknown to the scheduler and no result file"
        error = handle.exception()  # ended without a result file yet: submitit waits for it briefly
        if error is None:
            return SUCCEEDED, ""
        return FAILED, f"state {sched}: {error}"


def _returncode(detail: str) -> int:
    match = re.search(r"command exited with code (-?\d+)", detail)
    return int(match.group(1)) if match else -1


def _pid_alive(job_id: str) -> bool:
    try:
        os.kill(int(job_id), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _load_state(path: Path) -> Dict[str, Dict[str, Any]]:
    """The ``jobs`` mapping of a batch state file ({} if absent or unreadable)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        jobs = data["jobs"]
        return {name: {"job_id": str(rec["job_id"]), "attempt": int(rec["attempt"])}
                for name, rec in jobs.items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning("ignoring unreadable batch state %s (%s); jobs will be resubmitted", path, e)
        return {}

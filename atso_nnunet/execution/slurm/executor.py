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
- Job states come from the controller (``squeue``), with ``sacct`` only for jobs the controller
  no longer holds (:mod:`atso_nnunet.execution.slurm.cluster`): a pending, requeued or running
  task is never taken for a vanished one, with or without accounting. A job is resubmitted only
  when the cluster says it has ended; and never while ``squeue`` lists an active job of the same
  name: each array task is named after its step (``atso:<run>:<step>``), and a live task of this
  run found by that name is adopted instead of submitted again.
- Each task's output (submitit's log) is linked next to the step's log
  (``<step log>.slurm-<job id>.out``), and each attempt's header names the SLURM job and node.
- Environment: the job carries only the variables the run sets (``Job.env``: nnU-Net folders,
  ``ATSO_RUN_CONFIG``, data-loader workers); everything else comes from where the task runs.
  ``sbatch`` is called without the driver's own ``SLURM_*`` and GPU-visibility variables, so a
  driver that itself runs as a SLURM job does not hand its allocation to its children.

The compute nodes must see the same Python environment (``atso_nnunet`` importable with
``sys.executable``, or ``SlurmConfig.python``) and ``log_folder`` on a shared file system.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import submitit
from submitit.slurm.slurm import _convert_mem, _make_sbatch_string

from atso_nnunet.errors import StepFailedError
from atso_nnunet.execution.slurm import cluster as slurm_cluster
from atso_nnunet.execution.jobs import Executor, Job, JobResult, attempt_header, check_batch, raise_failures
from atso_nnunet.execution.slurm.config import SlurmConfig
from atso_nnunet.execution.slurm.env import _slurm_origin, data_loader_workers, submission_env
from atso_nnunet.io import write_json

logger = logging.getLogger(__name__)

STATE_FILE = "jobs.json"

# Seconds to wait for submitit's result file of a task the cluster says has ended (shared file
# systems can be slow to show it).
_RESULT_WAIT_S = 15.0

RUNNING, SUCCEEDED, FAILED, VANISHED = "running", "succeeded", "failed", "vanished"


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
        extra_env: variables set by the executor on top of ``job.env`` (e.g. data-loader workers
            that follow the CPUs of the task).
    """

    def __init__(self, job: Job, attempt: int = 1, kill_grace_s: float = 30.0,
                 extra_env: Optional[Dict[str, str]] = None) -> None:
        self.name = job.name
        self.argv = job.argv_for(attempt)
        self.resume_argv = list(job.resume_argv) if job.resume_argv is not None else list(job.argv)
        # Only the run's own variables travel; the rest is the environment of the node the task runs on.
        self.env = {**job.env, **(extra_env or {})}
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
            log.write(_slurm_origin(env).encode())
            log.write(f"=== command: {shlex.join(self.argv)} ===\n".encode())
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


class _SubmititSlurmExecutor(submitit.SlurmExecutor):
    """submitit's SLURM executor, with ``sbatch`` run in :func:`submission_env`.

    The two methods are submitit 1.5.4's, changed only where marked: submitit runs sbatch in the
    caller's environment and builds the executor of a job array as its own base class.
    """

    def _submit_command(self, command: str) -> submitit.core.core.Job:
        import uuid

        from submitit.core import utils

        tmp_uuid = uuid.uuid4().hex
        submission_file_path = (utils.JobPaths.get_first_id_independent_folder(self.folder)
                                / f".submission_file_{tmp_uuid}.sh")
        with submission_file_path.open("w") as f:
            f.write(self._make_submission_file_text(command, tmp_uuid))
        command_list = self._make_submission_command(submission_file_path)
        output = utils.CommandFunction(command_list, verbose=False, env=submission_env())()  # changed: env
        job_id = self._get_job_id_from_submission_command(output)
        job = self.job_class(folder=self.folder, job_id=job_id, tasks=list(range(self._num_tasks())))
        job.paths.move_temporary_file(submission_file_path, "submission_file", keep_as_symlink=True)
        self._write_job_id(job.job_id, tmp_uuid)
        self._set_job_permissions(job.paths.folder)
        return job

    def _internal_process_submissions(self, delayed_submissions: list) -> list:
        import uuid

        from submitit.core import utils

        if len(delayed_submissions) == 1:
            return super()._internal_process_submissions(delayed_submissions)
        folder = utils.JobPaths.get_first_id_independent_folder(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        timeout_min = self.parameters.get("time", 5)
        pickle_paths = []
        for d in delayed_submissions:
            pickle_path = folder / f"{uuid.uuid4().hex}.pkl"
            d.set_timeout(timeout_min, self.max_num_timeout)
            d.dump(pickle_path)
            pickle_paths.append(pickle_path)
        n = len(delayed_submissions)
        array_ex = type(self)(self.folder, self.max_num_timeout)  # changed: this class, not submitit's
        array_ex.update_parameters(**self.parameters)
        array_ex.parameters["map_count"] = n
        self._throttle()
        first_job = array_ex._submit_command(self._submitit_command_str)
        tasks_ids = list(range(first_job.num_tasks))
        jobs = [submitit.SlurmJob(folder=self.folder, job_id=f"{first_job.job_id}_{a}", tasks=tasks_ids)
                for a in range(n)]
        for job, pickle_path in zip(jobs, pickle_paths):
            job.paths.move_temporary_file(pickle_path, "submitted_pickle")
        return jobs


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
        self._states: Optional[Dict[str, slurm_cluster.JobState]] = {}

    def __repr__(self) -> str:
        return f"SlurmExecutor({self.config!r}, cluster={self.cluster!r})"

    def check_cluster(self) -> None:
        """Refuse resources the cluster can never give (``sinfo``), before anything is submitted.

        Raises:
            InputError: unknown partition, GPUs on a partition without them, a job larger than
                any node; ``sinfo`` missing or failing.
        """
        if self.cluster == "slurm":
            part = slurm_cluster.check_resources(self.config, slurm_cluster.partitions())
            logger.info("SLURM partition %s: %d CPUs, %d MB per node at most, GRES %s", part.name, part.max_cpus,
                        part.max_mem_mb, ", ".join(part.gres))
            early = slurm_cluster.earliest_warning_s(self.config)
            if early < 60:
                logger.warning("with a %d min time limit and a %d s signal delay, SLURM may tell a task to stop "
                               "%d s after it starts (it checks time limits every 30 s); an nnU-Net training "
                               "needs about 20 s to start and saves its checkpoint every save_every epochs: "
                               "a longer --slurm-time-min or a shorter --slurm-signal-delay-s lets it progress",
                               self.config.time_min, self.config.signal_delay_s, max(0, early))

    def resource_env(self) -> Dict[str, str]:
        """Variables that follow the resources of a task: ``nnUNet_n_proc_DA`` from the CPUs per task
        (unless the driver's own environment sets it: the user's choice wins)."""
        if "nnUNet_n_proc_DA" in os.environ:
            return {}
        return {"nnUNet_n_proc_DA": str(data_loader_workers(self.config.cpus_per_task))}

    def job_name(self, job: Job) -> str:
        """The name a task of ``job`` carries in ``squeue``: ``<job_name_prefix>:<step>``."""
        return slurm_cluster.job_name(self.config.job_name_prefix, job.name.replace("__", "/"))

    # ---- submitit and cluster plumbing (overridden in tests) ----
    def _make_executor(self, batch: str) -> submitit.core.core.PicklingExecutor:
        folder = _submitit_folder(self.config, batch)
        params = sbatch_parameters(self.config, batch)
        if self.cluster == "local":
            ex = submitit.LocalExecutor(folder, max_num_timeout=self.config.max_requeues,
                                        python=self.config.python)
            ex.update_parameters(timeout_min=self.config.time_min, signal_delay_s=self.config.signal_delay_s)
            return ex
        ex = _SubmititSlurmExecutor(folder, max_num_timeout=self.config.max_requeues, python=self.config.python)
        ex.update_parameters(**params)
        return ex

    def _handle(self, folder: Path, job_id: str) -> Any:
        if self.cluster == "local":
            return submitit.local.local.LocalJob(folder, job_id)
        return submitit.SlurmJob(folder, job_id)

    def _refresh_states(self, handles: Sequence[Any]) -> None:
        """Ask the cluster once about every tracked job (no-op locally); a failed query leaves
        every state unknown, which counts as still running."""
        if self.cluster != "slurm":
            return
        try:
            self._states = slurm_cluster.query_states([h.job_id for h in handles])
        except slurm_cluster.ClusterQueryError as e:
            logger.warning("cannot read job states from the cluster (%s); asking again in %.0f s", e,
                           self.config.poll_interval_s)
            self._states = None

    def _cluster_state(self, handle: Any) -> Optional[slurm_cluster.JobState]:
        """What the cluster says about ``handle`` (``None``: it could not be asked)."""
        if self.cluster == "local":
            proc = getattr(handle, "_process", None)
            alive = proc.poll() is None if proc is not None else _pid_alive(handle.job_id)
            return slurm_cluster.JobState("RUNNING" if alive else "UNKNOWN", alive, "local")
        if self._states is None:
            return None
        return self._states.get(str(handle.job_id))

    def _active_by_name(self, names: Sequence[str]) -> Dict[str, str]:
        """``{name: job id}`` of the active jobs ``squeue`` lists under ``names`` ({} locally)."""
        if self.cluster != "slurm" or not names:
            return {}
        for attempt in range(3):
            try:
                listed = slurm_cluster.squeue_jobs(names=names)
                break
            except slurm_cluster.ClusterQueryError as e:
                if attempt == 2:
                    raise StepFailedError(f"cannot ask squeue whether jobs {', '.join(names)} are queued ({e}); "
                                          "nothing was submitted: run the driver again when the controller answers")
                time.sleep(min(10.0, self.config.poll_interval_s))
        return {name: job_id for job_id, (state, name) in listed.items() if state in slurm_cluster.ACTIVE_STATES}

    def _adoptable_folder(self, job_id: str) -> Optional[Path]:
        """The submitit folder of a live job of this run's log folder, found from its StdOut."""
        stdout = slurm_cluster.job_stdout(job_id)
        if not stdout:
            return None
        folder = Path(stdout).parent
        try:
            folder.resolve().relative_to(self.config.log_folder.resolve())
        except ValueError:
            return None  # a job of the same name from another run's log folder
        return folder

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
        folder = _submitit_folder(self.config, batch)
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
                handle = self._handle(folder, record["job_id"])
                previous.append(_Tracked(job, handle, record["attempt"], 0, time.monotonic(), reattached=True))
            else:
                to_submit.append((job, 1, 1))
        if previous:
            self._refresh_states([t.handle for t in previous])
        for t in previous:
            status, info = self._status(t)
            if status == RUNNING:
                logger.info("job %s: reattached to SLURM job %s (%s)", t.job.name, t.handle.job_id, info)
                t.tries = 1
                tracked[t.job.name] = t
            elif status == SUCCEEDED:
                logger.info("job %s: SLURM job %s had finished successfully", t.job.name, t.handle.job_id)
                results[t.job.name] = JobResult(t.job.name, 0, 0, t.job.log_path, 0.0)
            else:
                logger.warning("job %s: previous SLURM job %s %s (%s); resubmitting", t.job.name,
                               t.handle.job_id, status, info)
                to_submit.append((t.job, t.attempt + 1, 1))

        self._submit(batch, to_submit, tracked, state, state_path)
        while tracked:
            time.sleep(self.config.poll_interval_s)
            self._refresh_states([t.handle for t in tracked.values()])
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
                    details[name] = (f"step {name.replace('__', '/')}: SLURM job {t.handle.job_id} {status} ({info}); "
                                     f"submitit log: {t.handle.paths.stdout}")
                    logger.error("job %s: SLURM job %s %s after %d attempt(s); log: %s", name,
                                 t.handle.job_id, status, t.tries, t.job.log_path)
            self._submit(batch, again, tracked, state, state_path)
        raise_failures(failures, details)
        return [results[job.name] for job in jobs]

    def _submit(self, batch: str, items: List[Tuple[Job, int, int]], tracked: Dict[str, _Tracked],
                state: Dict[str, Dict[str, Any]], state_path: Path) -> None:
        """Submit ``items`` as one array (adopting live tasks of the same step), record their ids."""
        if not items:
            return
        now = time.monotonic()
        live = self._active_by_name([self.job_name(job) for job, _, _ in items])
        fresh = []
        for job, attempt, tries in items:
            job_id = live.get(self.job_name(job))
            folder = self._adoptable_folder(job_id) if job_id else None
            if folder is None:
                fresh.append((job, attempt, tries))
                continue
            # A live task of this step (e.g. submitted just before a driver was killed): never a second one.
            logger.warning("job %s: SLURM job %s of the same step is still queued or running; adopting it",
                           job.name, job_id)
            tracked[job.name] = _Tracked(job, self._handle(folder, job_id), attempt, tries, now, reattached=True)
            state[job.name] = {"job_id": str(job_id), "attempt": attempt}
        if fresh:
            ex = self._make_executor(batch)
            extra = self.resource_env() if self.cluster == "slurm" else {}
            with ex.batch():
                handles = [ex.submit(CommandJob(job, attempt, extra_env=extra)) for job, attempt, _ in fresh]
            now = time.monotonic()
            for (job, attempt, tries), handle in zip(fresh, handles):
                tracked[job.name] = _Tracked(job, handle, attempt, tries, now)
                state[job.name] = {"job_id": str(handle.job_id), "attempt": attempt}
                logger.info("job %s: submitted as SLURM job %s (attempt %d)", job.name, handle.job_id, attempt)
        write_json({"batch": batch, "cluster": self.cluster, "jobs": state}, state_path)
        if fresh and self.cluster == "slurm":
            slurm_cluster.rename_jobs({str(tracked[job.name].handle.job_id): self.job_name(job)
                                       for job, _, _ in fresh})
        for job, _, _ in items:
            _link_task_log(job, tracked[job.name].handle)

    def _status(self, t: _Tracked) -> Tuple[str, str]:
        """(RUNNING | SUCCEEDED | FAILED | VANISHED, detail) of a tracked job.

        RUNNING while the cluster lists the job as active or cannot be asked; otherwise the
        outcome comes from submitit's result file (waited for up to ``_RESULT_WAIT_S`` seconds
        after the cluster says the job ended).
        """
        handle = t.handle
        if not handle.paths.folder.is_dir():
            return VANISHED, f"submitit folder {handle.paths.folder} is missing"
        outcome = _read_outcome(handle, wait_s=0.0)
        if outcome is not None:
            return self._with_final_state(handle, outcome)
        cluster = self._cluster_state(handle)
        if cluster is None:
            return RUNNING, "state unknown (the cluster could not be asked)"
        if cluster.active:
            return RUNNING, cluster.state
        outcome = _read_outcome(handle, wait_s=_RESULT_WAIT_S)
        if outcome is not None:
            return self._with_final_state(handle, outcome, cluster)
        if cluster.state == "UNKNOWN":
            return VANISHED, "no longer known to the cluster, and no result file"
        return FAILED, f"state {cluster.state} ({cluster.source}), no result file"


    def _with_final_state(self, handle: Any, outcome: Tuple[str, str],
                          known: Optional[slurm_cluster.JobState] = None) -> Tuple[str, str]:
        """A failed ``outcome`` with the state the cluster ended the job in appended, e.g.
        ``command exited with code -15; SLURM state CANCELLED``: a command killed by a signal
        says nothing of who sent it (``scancel``, an administrator, the out-of-memory killer).

        The task writes its result file a moment before the cluster records the end, so the
        cluster is asked again for up to ``_RESULT_WAIT_S`` seconds while it still lists the job
        as active. Successes, local runs and a cluster that cannot be asked leave it as it is.
        """
        status, detail = outcome
        if status != FAILED or self.cluster != "slurm":
            return outcome
        state = known
        deadline = time.monotonic() + _RESULT_WAIT_S
        while state is None or state.active:
            try:
                state = slurm_cluster.query_states([str(handle.job_id)]).get(str(handle.job_id))
            except slurm_cluster.ClusterQueryError:
                return outcome
            if state is None or not state.active or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        if state is None or state.active or state.state == "UNKNOWN":
            return outcome
        return status, f"{detail}; SLURM state {state.state}"


def _read_outcome(handle: Any, wait_s: float) -> Optional[Tuple[str, str]]:
    """(SUCCEEDED, "") or (FAILED, error) from submitit's result file; ``None`` if there is none."""
    path = handle.paths.result_pickle
    deadline = time.monotonic() + wait_s
    while not path.exists():
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)
    try:
        outcome, value = submitit.core.utils.pickle_load(path)
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as e:
        return FAILED, f"unreadable result file {path}: {e}"
    if outcome == "success":
        return SUCCEEDED, ""
    text = str(value).strip().splitlines()
    return FAILED, text[-1] if text else "failed"


def _link_task_log(job: Job, handle: Any) -> None:
    """``<step log>.slurm-<job id>.out`` -> the task's submitit log (stdout and stderr of the task)."""
    link = job.log_path.with_name(f"{job.log_path.stem}.slurm-{handle.job_id}.out")
    with contextlib.suppress(OSError):
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(Path(handle.paths.stdout).absolute())


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

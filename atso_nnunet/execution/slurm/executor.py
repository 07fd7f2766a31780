"""The SLURM executor: one job array per batch through submitit, requeue on time-out, reattach
after a driver restart (how a batch runs: :mod:`atso_nnunet.execution.slurm`)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import submitit

from atso_nnunet.errors import StepFailedError
from atso_nnunet.execution.jobs import Executor, Job, JobResult, check_batch, raise_failures
from atso_nnunet.execution.slurm import cluster as slurm_cluster
from atso_nnunet.execution.slurm.config import SlurmConfig
from atso_nnunet.execution.slurm.env import data_loader_workers
from atso_nnunet.io import write_json
from atso_nnunet.execution.slurm.submission import _submitit_folder, batch_name, sbatch_parameters
from atso_nnunet.execution.slurm.submitit_copy import _SubmititSlurmExecutor
from atso_nnunet.execution.slurm.task import CommandJob


logger = logging.getLogger(__name__)

STATE_FILE = "jobs.json"

# Seconds to wait for submitit's result file of a task the cluster says has ended (shared file
# systems can be slow to show it).
_RESULT_WAIT_S = 15.0

RUNNING, SUCCEEDED, FAILED, VANISHED = "running", "succeeded", "failed", "vanished"




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

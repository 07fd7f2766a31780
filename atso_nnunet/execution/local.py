"""Local backend: run a batch of jobs as subprocesses on this machine, one per GPU slot.

The scheduler is a simple loop in the calling thread (start what fits, poll, sleep), so that
Ctrl-C and SIGTERM reach it directly. Each child runs in its own session (process group): on
an interrupt the executor terminates every running group (the command and the worker
processes it spawned, e.g. nnU-Net's data loaders), waits for them, then re-raises.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Deque, Dict, Iterator, List, Optional, Sequence, Union

from atso_nnunet.execution.jobs import (Executor, Job, JobResult, attempt_header, check_batch,
                                        check_retries, raise_failures)
from atso_nnunet.execution.process import die_with_parent
from atso_nnunet.execution.warm.pool import WarmPool

logger = logging.getLogger(__name__)


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    log: IO[bytes]
    slot: Optional[str]
    attempt: int
    started: float


class LocalExecutor(Executor):
    """Run jobs as local subprocesses, with at most one job per GPU slot.

    Args:
        gpus: GPU ids (strings, e.g. ``["0", "1"]``). Each job with ``uses_gpu`` takes one free
            slot of an id and runs with ``CUDA_VISIBLE_DEVICES=<id>`` in its own environment (the
            parent's ``os.environ`` is never changed). ``None`` or empty: CPU-only machine, jobs
            get no ``CUDA_VISIBLE_DEVICES`` from the executor.
        jobs_per_gpu: slots per GPU id: how many GPU jobs share one GPU at a time (default 1).
            Small networks leave most of a large GPU idle (docs/lab/benchmarks.md, "On a GPU").
            With more than one, each GPU job that does not set ``nnUNet_n_proc_DA`` itself (nor
            the parent's environment) gets ``CPUs // slots - 1`` augmentation workers (at least
            1), so that the jobs together do not start more workers than there are CPUs.
        max_parallel: at most this many jobs at a time, GPU or not (default: the number of
            GPU slots, or 1 without GPUs). Raise it to let jobs with ``uses_gpu=False`` run
            beside the GPU jobs.
        retries: how many times a failed job is run again (with its ``resume_argv`` if any).
        poll_interval: seconds between two checks of the running children.
        kill_grace_s: on an interrupt, seconds between SIGTERM and SIGKILL of the children.
        warm: run nnU-Net's console commands in warm workers (:mod:`atso_nnunet.execution.warm.pool`,
            one per parallel slot) instead of fresh interpreters; a :class:`WarmPool` to use
            that one. Other commands always run as plain subprocesses.
        threads_per_job: warm workers only: cap on each job's torch threads (``None``: nnU-Net's
            own choice, all CPUs).

    Raises:
        ValueError: an option is invalid (the message names it).
    """

    def __init__(self, gpus: Optional[Sequence[str]] = None, max_parallel: Optional[int] = None,
                 retries: int = 1, poll_interval: float = 0.05, kill_grace_s: float = 10.0,
                 warm: Union[bool, WarmPool] = False, threads_per_job: Optional[int] = None,
                 jobs_per_gpu: int = 1) -> None:
        self.gpus: List[str] = [str(g) for g in (gpus or [])]
        if len(set(self.gpus)) != len(self.gpus) or any(not g.strip() or "," in g for g in self.gpus):
            raise ValueError(f"gpus must be distinct single GPU ids (e.g. ['0', '1']), got {list(gpus or [])!r}")
        if isinstance(jobs_per_gpu, bool) or not isinstance(jobs_per_gpu, int) or jobs_per_gpu < 1:
            raise ValueError(f"jobs_per_gpu must be an integer >= 1, got {jobs_per_gpu!r}")
        self.jobs_per_gpu = jobs_per_gpu
        # slot order 0, 1, 0, 1: a batch smaller than the slots spreads over the GPUs first
        self.gpu_slots: List[str] = [g for _ in range(jobs_per_gpu) for g in self.gpus]
        if max_parallel is None:
            max_parallel = max(1, len(self.gpu_slots))
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
            raise ValueError(f"max_parallel must be an integer >= 1, got {max_parallel!r}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        if not kill_grace_s >= 0:
            raise ValueError(f"kill_grace_s must be >= 0 seconds, got {kill_grace_s!r}")
        self.max_parallel = max_parallel
        self.retries = check_retries(retries)
        self.poll_interval = float(poll_interval)
        self.kill_grace_s = float(kill_grace_s)
        if isinstance(warm, WarmPool):
            self.warm: Optional[WarmPool] = warm
        else:
            self.warm = WarmPool(max_parallel, threads=threads_per_job) if warm else None

    def __repr__(self) -> str:
        return (f"LocalExecutor(gpus={self.gpus!r}, jobs_per_gpu={self.jobs_per_gpu}, max_parallel={self.max_parallel}, "
                f"retries={self.retries}, warm={self.warm!r})")

    def close(self) -> None:
        """Stop the warm workers, if any (also done when the executor is garbage-collected)."""
        if self.warm is not None:
            self.warm.close()

    def warm_up(self, log_dir: Path) -> None:
        """Start the warm workers now, so that their imports overlap the caller's own work."""
        if self.warm is not None:
            self.warm.warm_up(log_dir)

    def run_batch(self, jobs: Sequence[Job]) -> List[JobResult]:
        """Run ``jobs`` concurrently within the GPU slots; see :meth:`Executor.run_batch`.

        Ctrl-C (``KeyboardInterrupt``) or SIGTERM while the batch runs terminates every running
        child (SIGTERM to its process group, SIGKILL after ``kill_grace_s``) and re-raises;
        SIGTERM is re-raised as ``SystemExit(143)`` so the caller's ``finally`` blocks run. A
        SIGTERM handler the caller installed itself is left in place.
        """
        check_batch(jobs)
        results: Dict[str, JobResult] = {}
        pending: Deque[Job] = deque()
        for job in jobs:
            if job.is_done():
                logger.info("job %s: skipped, %s exists", job.name, job.done_marker)
                results[job.name] = JobResult(job.name, 0, 0, job.log_path, 0.0)
            else:
                pending.append(job)
        attempts = {job.name: 0 for job in pending}
        wall = {job.name: 0.0 for job in pending}
        running: List[_Running] = []
        free_slots: List[str] = list(self.gpu_slots)
        failures: List[JobResult] = []

        with self._terminate_children_on_exit(running):
            while pending or running:
                self._start_what_fits(pending, running, free_slots, attempts)
                time.sleep(self.poll_interval)
                for r in [r for r in running if r.proc.poll() is not None]:
                    running.remove(r)
                    r.log.close()
                    if r.slot is not None:
                        free_slots.append(r.slot)
                    elapsed = time.monotonic() - r.started
                    wall[r.job.name] += elapsed
                    rc = r.proc.returncode
                    logger.info("job %s: attempt %d finished with exit code %d after %.1f s",
                                r.job.name, r.attempt, rc, elapsed)
                    if rc == 0:
                        results[r.job.name] = JobResult(r.job.name, 0, r.attempt, r.job.log_path, wall[r.job.name])
                    elif r.attempt <= self.retries:
                        logger.warning("job %s failed (exit code %d, log %s); retrying (%d of %d)",
                                       r.job.name, rc, r.job.log_path, r.attempt, self.retries)
                        pending.appendleft(r.job)
                    else:
                        result = JobResult(r.job.name, rc, r.attempt, r.job.log_path, wall[r.job.name])
                        results[r.job.name] = result
                        failures.append(result)
                        logger.error("job %s failed after %d attempt(s) (exit code %d); log: %s",
                                     r.job.name, r.attempt, rc, r.job.log_path)
        raise_failures(failures)
        return [results[job.name] for job in jobs]

    def _start_what_fits(self, pending: Deque[Job], running: List[_Running], free_slots: List[str],
                         attempts: Dict[str, int]) -> None:
        """Start pending jobs, in order, while a parallel slot (and a GPU slot if needed) is free."""
        for job in list(pending):
            if len(running) >= self.max_parallel:
                return
            slot = None
            if job.uses_gpu and self.gpus:
                if not free_slots:
                    continue  # a later job that needs no GPU may still fit
                slot = free_slots.pop(0)
            pending.remove(job)
            attempts[job.name] += 1
            running.append(self._start(job, attempts[job.name], slot))

    def _start(self, job: Job, attempt: int, slot: Optional[str]) -> _Running:
        argv = job.argv_for(attempt)
        env = job.child_env(extra=None if slot is None else self._gpu_env(job, slot))
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(job.log_path, "ab")  # noqa: SIM115 - closed when the child is reaped
        log.write(attempt_header(attempt).encode())
        log.flush()
        proc = None if self.warm is None else self.warm.start(argv, env, job.cwd, log)
        logger.info("job %s: attempt %d started%s%s: %s", job.name, attempt,
                    "" if slot is None else f" on GPU {slot}", "" if proc is None else " (warm worker)",
                    " ".join(argv))
        if proc is None:
            try:
                proc = subprocess.Popen(argv, cwd=job.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=die_with_parent)
            except OSError as e:
                # A missing executable counts as a failed attempt (exit code 127, like a shell).
                log.write(f"cannot start {argv[0]!r}: {e}\n".encode())
                log.flush()
                proc = _NotStarted()
        return _Running(job, proc, log, slot, attempt, time.monotonic())

    def _gpu_env(self, job: Job, slot: str) -> Dict[str, str]:
        """What a GPU job's environment gets: its GPU, and a share of the CPUs when it shares the GPU."""
        extra = {"CUDA_VISIBLE_DEVICES": slot}
        if self.jobs_per_gpu > 1 and "nnUNet_n_proc_DA" not in job.env and "nnUNet_n_proc_DA" not in os.environ:
            extra["nnUNet_n_proc_DA"] = str(max(1, (os.cpu_count() or 1) // len(self.gpu_slots) - 1))
        return extra

    @contextlib.contextmanager
    def _terminate_children_on_exit(self, running: List[_Running]) -> Iterator[None]:
        """On any exception (Ctrl-C, SIGTERM, a bug), terminate the running children, then re-raise."""
        previous = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            previous = signal.signal(signal.SIGTERM, _raise_system_exit)
        try:
            yield
        except BaseException:
            self._terminate(running)
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _terminate(self, running: List[_Running]) -> None:
        if not running:
            return
        logger.warning("interrupted: terminating %d running job(s): %s", len(running),
                       ", ".join(r.job.name for r in running))
        for r in running:
            _signal_group(r.proc, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_s
        for r in running:
            if not _reap(r.proc, max(0.0, deadline - time.monotonic())):
                _signal_group(r.proc, signal.SIGKILL)
                _reap(r.proc, 10.0)
            _signal_group(r.proc, signal.SIGKILL)  # stragglers of the group (workers)
            r.log.close()
        running.clear()


def _reap(proc, timeout: float) -> bool:
    """Wait up to ``timeout`` s for a child to end; True when it has.

    A Ctrl-C that lands inside ``Popen.poll()`` can leave the Popen's internal wait lock taken,
    after which ``Popen.wait()`` blocks forever; so a plain child is reaped with ``os.waitpid``
    directly, never with an unbounded wait.
    """
    if not isinstance(proc, subprocess.Popen):
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while True:
        if proc.returncode is not None:
            return True
        try:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere
            return True
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


class _NotStarted:
    """Stands in for a child that could not be started (missing executable): exit code 127."""

    pid = None
    returncode = 127

    def poll(self) -> int:
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        return self.returncode


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the child's process group (it is the group leader: ``start_new_session``)."""
    if proc.pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)

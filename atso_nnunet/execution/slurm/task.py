"""What runs on the compute node: :class:`CommandJob`, the callable submitit pickles for one job.

It runs the job's argument list in a subprocess and, on submitit's time-out or preemption
signal, stops the command and resubmits itself with the job's ``resume_argv``, unless the job's
work is already done (its command has returned, or its ``done_marker`` exists): then the signal
is ignored and the task ends as done.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional

import submitit

from atso_nnunet.execution.jobs import Job, attempt_header
from atso_nnunet.execution.slurm.env import _slurm_origin


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
    ``resume_argv`` for the requeued task; a signal that comes once the work is done
    (:meth:`work_done`) is ignored instead, so that the command finishes and the task ends as done
    rather than being requeued to find nothing to do.

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
        self.done_marker = None if job.done_marker is None else str(job.done_marker)
        self._proc: Optional[subprocess.Popen] = None
        self._returned = False

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_proc"] = None
        state["_returned"] = False
        return state

    def __call__(self) -> int:
        """Run the command; return 0, or raise :class:`CommandFailedError`."""
        log_path = Path(self.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.env)
        self._returned = False
        self._guard_stop_signal()
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
        self._returned = True
        return 0

    def work_done(self) -> bool:
        """Whether the job's work is complete: its command has returned 0 in this task, or its
        ``done_marker`` exists (e.g. a training's final checkpoint, written before nnU-Net's
        process has finished exiting)."""
        marker = getattr(self, "done_marker", None)  # None in a job pickled by an older version
        return getattr(self, "_returned", False) or (marker is not None and os.path.exists(marker))

    def _guard_stop_signal(self) -> None:
        """Put :meth:`_on_stop_signal` in front of submitit's handler of the time-out/preemption
        signal, for the rest of the task's process (a signal after ``__call__`` has returned, while
        submitit writes the result, must not requeue a finished job either). Without a handler
        (not run by submitit) or outside the main thread nothing changes."""
        if threading.current_thread() is not threading.main_thread():
            return
        sig = _stop_signal()
        handler = signal.getsignal(sig)
        if callable(handler) and getattr(handler, "func", None) != self._on_stop_signal:  # not twice
            signal.signal(sig, functools.partial(self._on_stop_signal, handler))

    def _on_stop_signal(self, submitit_handler: Any, signum: int, frame: Any) -> None:
        """The time-out/preemption signal: ignored once the work is done, else submitit's handler
        (which calls :meth:`checkpoint` and requeues the task)."""
        if not self.work_done():
            submitit_handler(signum, frame)
            return
        done = "its command has returned" if self._returned else f"{self.done_marker} exists"
        message = f"=== stop signal ({signal.Signals(signum).name}) after the work was done ({done}): not requeued ===\n"
        with contextlib.suppress(OSError), open(self.log_path, "ab") as log:
            log.write(message.encode())
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(message)
            sys.stderr.flush()

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

def _stop_signal() -> signal.Signals:
    """The time-out/preemption signal submitit handles (``SUBMITIT_PREEMPT_SIGNAL``, USR2 by default)."""
    return getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)


def _ignore_requeue_signal() -> None:
    """In the command's process: ignore the stop signal, which SLURM sends to every process of the step."""
    signal.signal(_stop_signal(), signal.SIG_IGN)

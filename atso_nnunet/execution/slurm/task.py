"""What runs on the compute node: :class:`CommandJob`, the callable submitit pickles for one job.

It runs the job's argument list in a subprocess and, on submitit's time-out or preemption
signal, stops the command and resubmits itself with the job's ``resume_argv``.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
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

def _ignore_requeue_signal() -> None:
    """In the command's process: ignore USR2, which SLURM sends to every process of the step."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)

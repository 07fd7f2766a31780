"""Warm workers: nnU-Net's console commands run in a child forked from a process that has already
imported torch and nnU-Net, instead of a fresh interpreter per command.

Every ``nnUNetv2_train`` / ``nnUNetv2_predict`` call of a run otherwise pays several seconds of
Python, torch and nnU-Net start-up and trainer lookup; on a CPU with tiny demo models that is a
large share of the run. A :class:`WarmPool` keeps one worker process per local slot
(:mod:`atso_nnunet.execution.warm.worker`); a job whose ``argv[0]`` is a console script of this
environment is run there through the script's own entry point (resolved with
:mod:`importlib.metadata`, the same function the script file calls), with the *same argument
list*, the job's environment, log file and exit code. The child leads its own session and dies with
the worker, the worker with the driver, so signals and ``PR_SET_PDEATHSIG`` behave as with
:class:`subprocess.Popen`. Anything else (another interpreter, a script of another environment, a
worker that failed to start) runs as a plain subprocess.

Set ``ATSO_WARM_WORKERS=0`` (or ``atso_nnunet_run --no-warm-workers``) to run every job as a
plain subprocess.
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import time
import weakref
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from atso_nnunet.execution.process import die_with_parent
from atso_nnunet.limits import PROCESSES_MAX
from atso_nnunet.execution.warm import worker as protocol

logger = logging.getLogger(__name__)

WARM_ENV_VAR = "ATSO_WARM_WORKERS"
# Console scripts run warm by default: nnU-Net's (what the driver runs).
WARM_DISTRIBUTIONS = ("nnunetv2",)
# Jobs at a time on a CPU with warm workers (measured in docs/lab/benchmarks.md, "CPU slots").
DEFAULT_CPU_JOBS_WARM = 2
# A fork of a worker takes well under a second; a loaded machine can stretch that a lot.
START_TIMEOUT_S = 120.0


def warm_workers_enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """False if ``ATSO_WARM_WORKERS`` is ``0``, ``false``, ``no`` or ``off``; True otherwise."""
    value = (os.environ if environ is None else environ).get(WARM_ENV_VAR, "1")
    return value.strip().lower() not in ("0", "false", "no", "off")


CPU_JOBS_ENV_VAR = "ATSO_CPU_JOBS"


def default_cpu_jobs(warm: bool, environ: Optional[Mapping[str, str]] = None) -> int:
    """nnU-Net jobs at a time on a machine without GPUs: ``ATSO_CPU_JOBS`` if set, else
    :data:`DEFAULT_CPU_JOBS_WARM` with warm workers (which cap each job's threads) and 1 without."""
    value = (os.environ if environ is None else environ).get(CPU_JOBS_ENV_VAR)
    if value:
        try:
            jobs = int(value)
        except ValueError:
            jobs = 0
        if not 1 <= jobs <= PROCESSES_MAX:
            raise ValueError(f"{CPU_JOBS_ENV_VAR} must be an integer from 1 to {PROCESSES_MAX}, got {value!r}")
        return jobs
    return min(DEFAULT_CPU_JOBS_WARM, os.cpu_count() or 1) if warm else 1


def cpu_threads_per_job(cpu_jobs: int) -> Optional[int]:
    """Torch threads per job when ``cpu_jobs`` share the CPUs (``None`` for one job: nnU-Net's choice)."""
    if isinstance(cpu_jobs, bool) or not isinstance(cpu_jobs, int) or cpu_jobs < 1:
        raise ValueError(f"cpu_jobs must be an integer >= 1, got {cpu_jobs!r}")
    return None if cpu_jobs == 1 else max(1, (os.cpu_count() or 1) // cpu_jobs)


def console_entry_points(distributions: Sequence[str] = WARM_DISTRIBUTIONS) -> Dict[str, str]:
    """Console script name -> ``module:function`` for the scripts of ``distributions``."""
    out = {}
    for ep in metadata.entry_points(group="console_scripts"):
        dist = getattr(ep, "dist", None)
        if dist is not None and dist.metadata["Name"].lower() in distributions:
            out[ep.name] = ep.value
    return out


def _scripts_dir() -> Path:
    return Path(sys.executable).parent


def entry_point_for(argv: Sequence[str], env: Mapping[str, str], scripts: Mapping[str, str],
                    scripts_dir: Optional[Path] = None) -> Optional[str]:
    """The entry point that ``argv`` would run, if it can run warm here, else ``None``.

    ``argv[0]`` must name one of ``scripts`` and be the file of that name in ``scripts_dir``
    (default: this interpreter's folder), given as a path or as a bare name that the job's ``PATH``
    resolves to it: a script of another environment would run other code than the worker imported.
    """
    if not argv or Path(argv[0]).name not in scripts:
        return None
    name = Path(argv[0]).name
    own = (scripts_dir or _scripts_dir()) / name
    if os.sep in argv[0]:
        candidate = argv[0]
    else:
        candidate = shutil.which(argv[0], path=env.get("PATH", os.defpath))
    try:
        return scripts[name] if candidate is not None and os.path.samefile(candidate, own) else None
    except OSError:
        return None


# The worker's program. A forked child returns from main() with its job and runs it here, at the top
# level, so that an uncaught exception ends it as it would end the console script.
WORKER_PROGRAM = ("from atso_nnunet.execution.warm.worker import main\n"
                  "job = main()\n"
                  "if job is not None:\n"
                  "    job.run()\n")


class WarmProcess:
    """A job running in a warm worker's child; the parts of :class:`subprocess.Popen` the local
    executor uses (``pid``, ``returncode``, ``poll``, ``wait``)."""

    def __init__(self, worker: "WarmWorker", pid: int, argv: Sequence[str]):
        self.worker = worker
        self.pid = pid
        self.args = list(argv)
        self.returncode: Optional[int] = None
        self.cpu_s: Optional[float] = None  # user + system CPU seconds of the job's process, once it exited

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self.worker.collect(timeout=0.0)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.worker.collect(timeout=left if left is not None else 1.0)
        return self.returncode


class WarmWorker:
    """Driver side of one warm worker process (see :mod:`atso_nnunet.execution.warm.worker`)."""

    def __init__(self, preload: Sequence[str], log_path: Optional[Path] = None):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # a CUDA check while importing must not initialise CUDA
        out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", WORKER_PROGRAM, str(theirs.fileno()), ",".join(preload)], pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
        finally:
            theirs.close()
            if out is not subprocess.DEVNULL:
                out.close()
        self.ready = False
        self.broken: Optional[str] = None
        self.warm_up_s: Optional[float] = None
        self.job: Optional[WarmProcess] = None
        self.started_at = time.monotonic()

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.returncode is None

    def wait_ready(self, timeout: float) -> bool:
        """Block until the worker has imported everything (False: it failed or timed out)."""
        deadline = time.monotonic() + timeout
        while not self.ready and self.broken is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self._break(f"not ready after {timeout:.0f} s")
                break
            self.collect(timeout=min(left, 1.0))
        return self.ready

    def collect(self, timeout: Optional[float]) -> None:
        """Read the worker's messages that arrive within ``timeout`` seconds (0: only waiting ones)."""
        if self.broken is not None:
            return
        readable, _, _ = select.select([self.sock], [], [], timeout)
        while readable:
            try:
                message, fds = protocol.receive(self.sock, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as e:
                self._break(f"control socket: {e}")
                return
            for fd in fds:
                os.close(fd)
            if message is None:
                self._break("the worker process exited")
                return
            self._handle(message)
            readable, _, _ = select.select([self.sock], [], [], 0)

    def _handle(self, message: dict) -> None:
        op = message.get("op")
        if op == "ready":
            self.warm_up_s = message.get("seconds")
            if message.get("cuda_touched"):
                self._break("CUDA was initialised while importing; forked children could not use it")
            else:
                self.ready = True
                logger.info("warm worker %s ready after %.1f s", self.proc.pid, time.monotonic() - self.started_at)
        elif op == "exited" and self.job is not None and message.get("pid") == self.job.pid:
            self.job.cpu_s = message.get("cpu_s")
            self.job.returncode = int(message["returncode"])
        elif op == "error":
            self._break(str(message.get("error")))
        else:
            logger.debug("warm worker %s: ignoring message %r", self.proc.pid, message)

    def _break(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
            logger.warning("warm worker %s unusable: %s", self.proc.pid, why)
        if self.job is not None and self.job.returncode is None:
            # The child dies with the worker (PR_SET_PDEATHSIG); its exit status is lost.
            self.job.returncode = -1
        self.close()

    def start(self, argv: Sequence[str], entry: str, env: Mapping[str, str], cwd: Optional[Path], log,
              threads: Optional[int]) -> Optional[WarmProcess]:
        """Fork a child running ``entry`` as ``argv``; ``None`` if the worker could not start it."""
        message = {"op": "run", "argv": list(argv), "entry": entry, "env": dict(env),
                   "cwd": None if cwd is None else str(cwd), "threads": threads}
        try:
            protocol.send(self.sock, message, [log.fileno()])
        except OSError as e:
            self._break(f"cannot send the job: {e}")
            return None
        while self.broken is None:
            readable, _, _ = select.select([self.sock], [], [], START_TIMEOUT_S)
            if not readable:
                self._break(f"no answer to a job within {START_TIMEOUT_S:.0f} s")
                return None
            try:
                reply, fds = protocol.receive(self.sock)
            except OSError as e:
                self._break(f"control socket: {e}")
                return None
            for fd in fds:
                os.close(fd)
            if reply is None:
                self._break("the worker process exited")
                return None
            if reply.get("op") == "started":
                self.job = WarmProcess(self, int(reply["pid"]), argv)
                return self.job
            self._handle(reply)
        return None

    def close(self) -> None:
        """Stop the worker (end of file on its socket) and reap it."""
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class WarmPool:
    """Up to ``size`` warm workers, each running one job at a time.

    Args:
        size: workers (the local executor's parallel slots).
        preload: modules each worker imports once
            (default :data:`~atso_nnunet.execution.warm.worker.DEFAULT_PRELOAD`).
        scripts: console script name -> entry point run warm (default: nnU-Net's console scripts).
        threads: cap on each job's torch intra-op threads (``None``: what nnU-Net sets).
        ready_timeout_s: how long a job waits for a worker that is still importing before it runs
            as a plain subprocess.
        log_dir: folder for the workers' own output (``warm_worker_<n>.log``); ``None``: the folder
            of the first job's log.
        scripts_dir: where ``scripts`` live (default: this interpreter's folder; tests use another).
    """

    def __init__(self, size: int, preload: Optional[Sequence[str]] = None,
                 scripts: Optional[Mapping[str, str]] = None, threads: Optional[int] = None,
                 ready_timeout_s: float = 300.0, log_dir: Optional[Path] = None,
                 scripts_dir: Optional[Path] = None):
        if size < 1:
            raise ValueError(f"WarmPool size must be >= 1, got {size!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
        self.size = size
        self.preload = tuple(protocol.DEFAULT_PRELOAD if preload is None else preload)
        self._scripts = None if scripts is None else dict(scripts)
        self.threads = threads
        self.ready_timeout_s = ready_timeout_s
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.scripts_dir = None if scripts_dir is None else Path(scripts_dir)
        self.workers: List[WarmWorker] = []
        self.disabled: Optional[str] = None
        self._finalizer = weakref.finalize(self, WarmPool._close_workers, self.workers)

    def __repr__(self) -> str:
        return f"WarmPool(size={self.size}, threads={self.threads})"

    @property
    def scripts(self) -> Dict[str, str]:
        if self._scripts is None:
            self._scripts = console_entry_points()
        return self._scripts

    def entry_for(self, argv: Sequence[str], env: Mapping[str, str]) -> Optional[str]:
        if self.disabled is not None:
            return None
        return entry_point_for(argv, env, self.scripts, self.scripts_dir)

    def warm_up(self, log_dir: Optional[Path] = None) -> None:
        """Start the missing workers now (they import in the background)."""
        if self.disabled is not None:
            return
        self.workers[:] = [w for w in self.workers if w.broken is None]
        while len(self.workers) < self.size:
            folder = log_dir or self.log_dir
            log_path = None
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                log_path = folder / f"warm_worker_{len(self.workers) + 1}.log"
            try:
                self.workers.append(WarmWorker(self.preload, log_path))
            except OSError as e:
                self.disabled = f"cannot start a warm worker: {e}"
                logger.warning("%s; jobs run as plain subprocesses", self.disabled)
                return

    def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: Optional[Path], log) -> Optional[WarmProcess]:
        """Run ``argv`` in an idle worker; ``None``: not warm-capable, or no worker could take it."""
        entry = self.entry_for(argv, env)
        if entry is None:
            return None
        self.warm_up(Path(log.name).parent if hasattr(log, "name") else None)
        for worker in self.workers:
            worker.collect(timeout=0.0)
        idle = [w for w in self.workers if w.broken is None and not w.busy]
        idle.sort(key=lambda w: not w.ready)
        for worker in idle:
            if not worker.ready and not worker.wait_ready(self.ready_timeout_s):
                continue
            proc = worker.start(argv, entry, env, cwd, log, self.threads)
            if proc is not None:
                return proc
        if all(w.broken is not None for w in self.workers):
            self.disabled = "; ".join(sorted({w.broken for w in self.workers if w.broken}))
            logger.warning("warm workers disabled (%s); jobs run as plain subprocesses", self.disabled)
        return None

    def close(self) -> None:
        """Stop every worker (idempotent). Running children die with their worker."""
        self._finalizer()

    @staticmethod
    def _close_workers(workers: List[WarmWorker]) -> None:
        for worker in workers:
            worker.close()
        workers.clear()

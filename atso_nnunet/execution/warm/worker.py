"""The warm worker process: imports torch and nnU-Net once, then forks one child per job.

Started by :class:`~atso_nnunet.execution.warm.pool.WarmPool` as
``python -c WORKER_PROGRAM FD MODULES`` (:data:`~atso_nnunet.execution.warm.pool.WORKER_PROGRAM`), where
FD is its end of a ``SOCK_SEQPACKET`` socket pair and MODULES the comma-separated modules to import. Protocol (one JSON object per message; the driver's side is
:class:`~atso_nnunet.execution.warm.pool.WarmWorker`):

- worker -> driver ``{"op": "ready", "seconds": ..., "cuda_touched": bool}`` once the imports are done;
- driver -> worker ``{"op": "run", "argv": [...], "entry": "module:attr", "env": {...}, "cwd": ...,
  "threads": n or null}`` with the job's log file descriptor attached (``SCM_RIGHTS``);
- worker -> driver ``{"op": "started", "pid": N}`` once the child leads its own session;
- worker -> driver ``{"op": "exited", "pid": N, "returncode": rc, "cpu_s": s}`` (``rc`` as ``Popen``
  reports it: negative = killed by that signal; ``cpu_s``: the child's user + system CPU time).

End of file on the socket stops the worker. The worker dies with the driver (``PR_SET_PDEATHSIG``,
set by the driver when it starts it) and every child dies with the worker, so a killed driver
leaves nothing running, as with plain subprocesses.

What the child does before it calls nnU-Net's console entry point, so that the job runs as
``nnUNetv2_train ...`` would in a fresh process (:func:`become_job`): own session, death signal,
default signal handlers and mask, stdin ``/dev/null``, stdout and stderr to the job's log, the
job's environment *replacing* the worker's, its working directory, ``sys.argv``, a ``__main__``
module that is the console script (what ``spawn`` pools re-import), modules that read the
environment at import time re-read it (:func:`refresh_import_time_settings`), fresh random seeds,
and the exit status of ``sys.exit(entry())``: an uncaught exception prints its traceback and exits 1,
``sys.exit("message")`` prints the message and exits 1, Ctrl-C ends it by SIGINT, exactly like the
console script. The child then exits without the interpreter's module teardown
(:func:`exit_without_finalization`: threads joined, atexit handlers run, streams flushed), which
took longer than the job's own start-up.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import time
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from atso_nnunet.execution.process import die_with_parent

MAX_MESSAGE = 1 << 20

# Modules that read os.environ when imported (nnunetv2 2.8.1): their module-level values are
# recomputed in each child from the job's environment. nnunetv2.paths is lazy since 2.8 but was a
# plain string read at import time before; reloading it is harmless either way.
IMPORT_TIME_ENV_MODULES = ("nnunetv2.paths", "nnunetv2.configuration")

# What the worker imports once: everything `nnUNetv2_train` / `nnUNetv2_predict` import, and the
# plugin's trainers (nnU-Net imports them by name in the child, from sys.modules once warm).
DEFAULT_PRELOAD = ("torch", "nnunetv2.run.run_training", "nnunetv2.inference.predict_from_raw_data",
                   "atso_nnunet.nnunet.trainers")
# A class name nobody defines: searching for it imports every trainer module of nnunetv2
# (the variants pull in timm / torchvision), which nnU-Net does on every lookup of a plugin trainer.
_NO_SUCH_TRAINER = "_AtsoWarmUpNoSuchTrainer"


def send(sock: socket.socket, message: Dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def receive(sock: socket.socket, flags: int = 0) -> Tuple[Optional[Dict[str, Any]], List[int]]:
    """One message and its file descriptors; ``(None, [])`` at end of file."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4, flags)
    if not data:
        return None, fds
    return json.loads(data.decode()), fds


def cuda_touched() -> bool:
    """Whether this process has initialised CUDA (torch's lazy init, or the driver library loaded).

    A forked child cannot use CUDA once its parent has, so the worker checks this before it serves.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return True
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any("libcuda.so" in line for line in f)
    except OSError:
        return False


def preload(modules: Sequence[str]) -> None:
    """Import ``modules``; with nnU-Net's run module among them, also every nnU-Net trainer module."""
    for name in modules:
        importlib.import_module(name)
    if "nnunetv2.run.run_training" in modules:
        import nnunetv2
        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

        folder = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer")
        recursive_find_python_class(folder, _NO_SUCH_TRAINER, "nnunetv2.training.nnUNetTrainer")


def refresh_import_time_settings(module_names: Sequence[str] = IMPORT_TIME_ENV_MODULES) -> List[str]:
    """Reload the modules that read the environment at import time, and rebind their values.

    A module that did ``from nnunetv2.paths import nnUNet_results`` holds the worker's value; every
    module-level name that still points at the old object of the same name is pointed at the new
    one. Returns the names of the modules reloaded.
    """
    reloaded = []
    for name in module_names:
        module = sys.modules.get(name)
        if module is None:
            continue
        old = dict(vars(module))
        importlib.reload(module)
        new = vars(module)
        changed = {k: (old[k], new[k]) for k in old
                   if not k.startswith("__") and k in new and old[k] is not new[k]}
        for other in list(sys.modules.values()):
            namespace = getattr(other, "__dict__", None)
            if other is module or not isinstance(namespace, dict):
                continue
            for key, (before, after) in changed.items():
                if namespace.get(key, _MISSING) is before:
                    namespace[key] = after
        reloaded.append(name)
    return reloaded


_MISSING = object()


def resolve_entry(spec: str) -> Callable[[], Any]:
    """``"package.module:function"`` (a console script's entry point) -> the function."""
    module_name, _, attr = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


class ChildJob:
    """What a forked child runs: set itself up as the job's process, then the entry point."""

    def __init__(self, message: Dict[str, Any], log_fd: int, notify_fd: int, worker_pid: int):
        self.message = message
        self.log_fd = log_fd
        self.notify_fd = notify_fd
        self.worker_pid = worker_pid

    def run(self) -> None:
        entry = become_job(self.message, self.log_fd, self.notify_fd, self.worker_pid)
        try:
            code = entry()
        except SystemExit as exc:
            code = exc.code
        except KeyboardInterrupt:
            raise  # the interpreter's own path: the process ends by SIGINT, as the console script would
        except BaseException:
            sys.excepthook(*sys.exc_info())  # the traceback an uncaught exception prints
            code = 1
        exit_without_finalization(code)


def exit_status(code: Any) -> int:
    """The exit status ``sys.exit(code)`` gives: None -> 0, an int as is, anything else printed -> 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        print(code, file=sys.stderr)
    except Exception:  # noqa: BLE001 - as the interpreter, never fail while exiting
        pass
    return 1


def exit_without_finalization(code: Any) -> None:
    """End the child as ``sys.exit(code)`` would, minus the interpreter's module teardown.

    A forked child of a worker that imported torch and nnU-Net spends 1-6 s in interpreter
    finalisation (freeing the whole module graph, measured on the 2-core machine; the job's own
    start-up is about 0.5 s), which was most of a warm call's overhead. What a normal exit does
    that matters is kept, in the interpreter's order: wait for non-daemon threads, run the atexit
    handlers (logging.shutdown, multiprocessing's clean-up of pools and children), flush stdout and
    stderr; then ``os._exit`` with the same status.
    """
    status = exit_status(code)
    try:
        import threading

        shutdown = getattr(threading, "_shutdown", None)  # CPython's wait for non-daemon threads
        if shutdown is not None:
            shutdown()
    except BaseException:  # noqa: BLE001
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - atexit already printed what failed
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(status & 0xFF)


def become_job(message: Dict[str, Any], log_fd: int, notify_fd: int, worker_pid: int) -> Callable[[], Any]:
    """In the forked child: make this process the job's process; return the entry point to call."""
    os.setsid()
    die_with_parent(worker_pid)
    os.write(notify_fd, b"1")  # the driver may signal this process group from now on
    os.close(notify_fd)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)

    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)

    os.environ.clear()
    os.environ.update(message["env"])
    if message.get("cwd"):
        os.chdir(message["cwd"])
    argv = list(message["argv"])
    sys.argv = argv
    main = types.ModuleType("__main__")  # the console script is the job's __main__ (spawn pools read it)
    main.__file__ = argv[0]
    main.__spec__ = None
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main

    refresh_import_time_settings()
    _reseed()
    if message.get("threads"):
        _cap_torch_threads(int(message["threads"]))
    return resolve_entry(message["entry"])


def _reseed() -> None:
    """Fresh random state, as a new process would have (forked children share the worker's)."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.seed()


def _cap_torch_threads(threads: int) -> None:
    """At most ``threads`` intra-op threads, whatever nnU-Net asks for later.

    nnU-Net's entry points call ``torch.set_num_threads(multiprocessing.cpu_count())`` on a CPU;
    with several jobs per CPU that oversubscribes the cores.
    """
    import torch

    original = torch.set_num_threads

    def set_num_threads(n: int) -> None:
        original(max(1, min(int(n), threads)))

    set_num_threads(threads)
    torch.set_num_threads = set_num_threads


def serve(sock: socket.socket, preload_modules: Sequence[str]) -> Optional[ChildJob]:
    """The worker's loop. Returns in the worker at end of file (``None``) and in each forked child
    (its :class:`ChildJob`), so that the child runs the job from the top of the program."""
    t0 = time.monotonic()
    preload(preload_modules)
    send(sock, {"op": "ready", "seconds": round(time.monotonic() - t0, 3), "cuda_touched": cuda_touched(),
                "pid": os.getpid()})
    worker_pid = os.getpid()
    while True:
        message, fds = receive(sock)
        if message is None:
            return None
        if message.get("op") != "run" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            send(sock, {"op": "error", "error": f"unexpected message {message!r} with {len(fds)} fd(s)"})
            continue
        if cuda_touched():
            os.close(fds[0])
            send(sock, {"op": "error", "error": "CUDA was initialised in the warm worker; cannot fork"})
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            sock.close()
            return ChildJob(message, fds[0], write_end, worker_pid)
        os.close(write_end)
        os.close(fds[0])
        os.read(read_end, 1)  # empty if the child died before its setsid
        os.close(read_end)
        send(sock, {"op": "started", "pid": pid})
        _, status, usage = os.wait4(pid, 0)
        send(sock, {"op": "exited", "pid": pid, "returncode": os.waitstatus_to_exitcode(status),
                    "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)})


def main(argv: Optional[Sequence[str]] = None) -> Optional[ChildJob]:
    args = list(sys.argv[1:] if argv is None else argv)
    sock = socket.socket(fileno=int(args[0]))
    preload_modules = [m for m in args[1].split(",") if m] if len(args) > 1 else list(DEFAULT_PRELOAD)
    return serve(sock, preload_modules)


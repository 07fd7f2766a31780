"""Run a function in a child process whose whole process group dies with the driver.

nnU-Net's fingerprinting, planning and preprocessing start ``spawn`` pools; started from the
driver's own process, a SIGKILLed driver leaves those workers alive (reparented to init, asleep,
holding their memory). :func:`run_in_process_group` runs such a function in a child that

- leads its own process group (``setpgid``), which every worker it starts inherits;
- gets SIGTERM when the driver dies, even by SIGKILL (``PR_SET_PDEATHSIG``, as the jobs of
  :mod:`atso_nnunet.execution.local`), and answers it by SIGKILLing its whole group;
- sends its log records to the driver (so they reach ``run.log``) and its result or exception back.

A Ctrl-C or SIGTERM of the driver reaches the child's group too (the driver forwards it).
"""
from __future__ import annotations

import contextlib
import logging
import logging.handlers
import multiprocessing
import os
import signal
from typing import Any, Callable

logger = logging.getLogger(__name__)


class _Forward(logging.Handler):
    """Hands a record from the child to the driver's logger of the same name (its handlers decide)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


def _kill_own_group(signum: int = signal.SIGTERM, frame: object = None) -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _child(parent_pid: int, level: int, queue, conn, fn: Callable, args: tuple, kwargs: dict) -> None:
    from atso_nnunet.execution.process import die_with_parent

    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _kill_own_group)
    die_with_parent()
    if os.getppid() != parent_pid:             # the driver died before the death signal was armed
        _kill_own_group()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(level)
    try:
        outcome = (True, fn(*args, **kwargs))
    except BaseException as e:                  # handed to the driver, which raises it
        outcome = (False, e)
    conn.send(outcome)
    conn.close()


def run_in_process_group(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a child process group that dies with this process; returns its result.

    ``fn`` and its arguments must be picklable (the child is spawned).

    Raises:
        Whatever ``fn`` raised (re-raised here); RuntimeError when the child died without an answer.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    receive, send = ctx.Pipe(duplex=False)
    level = logging.getLogger("atso_nnunet").getEffectiveLevel()
    proc = ctx.Process(target=_child, args=(os.getpid(), level, queue, send, fn, args, kwargs),
                       name=f"atso:{getattr(fn, '__name__', 'child')}")
    listener = logging.handlers.QueueListener(queue, _Forward())
    listener.start()
    try:
        proc.start()
        send.close()
        try:
            outcome = receive.recv()
        except EOFError:
            outcome = None
        proc.join()
    except BaseException:                       # Ctrl-C / SIGTERM of the driver: stop the child's group too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.join(timeout=10)
        raise
    finally:
        listener.stop()
    if outcome is None:
        raise RuntimeError(f"{proc.name} (pid {proc.pid}) ended without an answer (exit code {proc.exitcode})")
    ok, value = outcome
    if not ok:
        raise value
    return value

"""Helpers for child processes of the driver (plain subprocesses and warm workers alike)."""
from __future__ import annotations

import os
import signal
import sys
from typing import Optional


def die_with_parent(parent_pid: Optional[int] = None) -> None:
    """In the child (Linux): get SIGTERM when the parent dies, even by SIGKILL.

    Without it a killed driver would leave its trainings running, and the restarted driver would
    start a second training into the same nnU-Net folder.

    Args:
        parent_pid: the parent's pid; when given and the parent has already gone (it died before
            the death signal was armed), the child exits at once.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(128 + signal.SIGTERM)

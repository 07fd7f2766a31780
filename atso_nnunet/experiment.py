"""Deprecated: experiment plans moved to the package :mod:`atso_nnunet.plan`; import from there.

Every public name of :mod:`atso_nnunet.plan` is still reachable here, with a
``DeprecationWarning`` when it is used.
"""
from __future__ import annotations

import warnings
from typing import Any

import atso_nnunet.plan as _plan


def __getattr__(name: str) -> Any:
    if name in _plan.__all__:
        warnings.warn(f"atso_nnunet.experiment.{name} is deprecated; import it from atso_nnunet.plan",
                      DeprecationWarning, stacklevel=2)
        return getattr(_plan, name)
    raise AttributeError(f"module 'atso_nnunet.experiment' has no attribute {name!r}")

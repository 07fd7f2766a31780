"""Limits of the numbers a user gives (plan fields, command-line options) and the one message naming them.

Every number of a plan and every numeric option has a lower and an upper limit, and floats must be
finite: a typo (three zeros too many, ``Infinity``) is refused when the plan is loaded or the
command line parsed, before a schedule of 10**12 steps fills the memory or a training is given a
NaN learning rate. The limits are generous for any real experiment; the plan reference
(``docs/plan_reference.md``) lists each field's.

A dataclass field carries its limits in its metadata (:func:`limits`); :func:`limit_problem` is the
check, and :func:`limits_text` what the reference prints.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Mapping, Optional

#: nnU-Net dataset ids: three digits (``Dataset<id:03d>_<name>``; nnU-Net finds a dataset by its id).
DATASET_ID_MIN, DATASET_ID_MAX = 1, 999
#: seeds: numpy's legacy ``np.random.seed`` takes 32-bit values.
SEED_MAX = 2 ** 32 - 1
#: worker processes and jobs at a time on one machine.
PROCESSES_MAX = 1024
#: retries of a failed job.
RETRIES_MAX = 100


def limits(minimum: Optional[float] = None, maximum: Optional[float] = None, above_minimum: bool = False,
           **metadata: Any) -> Dict[str, Any]:
    """Dataclass field metadata holding a number's limits (and any other ``metadata``).

    Args:
        minimum: smallest allowed value (None: no lower limit).
        maximum: largest allowed value (None: no upper limit).
        above_minimum: the value must be strictly greater than ``minimum``.
    """
    return {**metadata, "min": minimum, "max": maximum, "above_min": above_minimum}


def _text(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def limit_problem(value: Any, minimum: Optional[float] = None, maximum: Optional[float] = None,
                  above_minimum: bool = False) -> Optional[str]:
    """What is wrong with a number against its limits (None: it is within them).

    The value's type is checked by the caller; this checks finiteness and the limits only.

    Returns:
        ``"Infinity is not a finite number"``, ``"0 is below the minimum 1"``,
        ``"1000000000000 is above the limit 100000"``, or None.

    Example:
        >>> limit_problem(10 ** 12, 1, 100000)
        '1000000000000 is above the limit 100000'
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f"{_text(value)} is not a finite number"
    if minimum is not None and (value < minimum or (above_minimum and value == minimum)):
        return f"{_text(value)} is {'not above' if above_minimum else 'below'} the minimum {minimum}"
    if maximum is not None and value > maximum:
        return f"{_text(value)} is above the limit {maximum}"
    return None


def metadata_problem(value: Any, metadata: Mapping[str, Any]) -> Optional[str]:
    """:func:`limit_problem` with the limits of a field's metadata (see :func:`limits`)."""
    return limit_problem(value, metadata.get("min"), metadata.get("max"), bool(metadata.get("above_min")))


def limits_text(metadata: Mapping[str, Any]) -> str:
    """The limits of a field as the plan reference prints them: ``1 to 100000``, ``> 0, at most 10``."""
    lo, hi, above = metadata.get("min"), metadata.get("max"), metadata.get("above_min")
    if metadata.get("limits_text"):
        return str(metadata["limits_text"])
    if lo is None and hi is None:
        return ""
    if above:
        return f"> {lo}" + (f", at most {hi}" if hi is not None else "")
    if lo is None:
        return f"at most {hi}"
    return f"{lo} to {hi}" if hi is not None else f">= {lo}"

"""The packaged plans: ``plans/<dataset>/<split>.json`` of the source tree, installed as ``atso_nnunet.plans``."""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Dict, List, Optional

from atso_nnunet.errors import InputError

PLANS_PACKAGE = "atso_nnunet.plans"


def plans_root() -> Path:
    """Folder of the packaged plans (found from any working directory)."""
    return Path(str(importlib.resources.files(PLANS_PACKAGE)))


def available_plans(root: Optional[os.PathLike] = None) -> Dict[str, List[str]]:
    """``{dataset: [split, ...]}`` of the plans under ``root`` (default: the packaged plans)."""
    root = plans_root() if root is None else Path(root)
    out: Dict[str, List[str]] = {}
    if root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            out[d.name] = sorted(f.stem for f in d.glob("*.json"))
    return out


def find_plan(dataset: str, split: str, root: Optional[os.PathLike] = None) -> Path:
    """Locate ``<root>/<dataset>/<split>.json``; works from any working directory.

    Args:
        dataset: plan folder, e.g. ``"synthetic"`` or ``"NIH"``.
        split: plan name inside it, e.g. ``"10pct"`` (a trailing ``.json`` is accepted).
        root: plans folder; default :func:`plans_root` (the installed ``atso_nnunet.plans``).

    Raises:
        InputError: no such dataset or split; the message lists the available ones.
    """
    root = plans_root() if root is None else Path(root)
    if split.endswith(".json"):
        split = split[: -len(".json")]
    path = root / dataset / f"{split}.json"
    if path.is_file():
        return path
    avail = available_plans(root)
    listing = "; ".join(f"{d}: {', '.join(s) or '(no plans)'}" for d, s in avail.items()) or "none"
    if dataset not in avail:
        raise InputError(f"no plan dataset {dataset!r} in {root}; available datasets and splits: {listing}")
    raise InputError(f"no plan {split!r} for dataset {dataset!r} ({path} not found); "
                     f"available splits of {dataset}: {', '.join(avail[dataset]) or 'none'}")

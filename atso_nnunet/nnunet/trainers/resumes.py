"""The record of a training's resumes: which epochs it was continued at (``--c``), and whether exactly.

The trainer appends one entry to ``<fold folder>/atso_resumes.json`` each time it continues from a
checkpoint (:meth:`~atso_nnunet.nnunet.trainers.base.ATSOTrainer.on_train_start`), whoever started it
(the driver's local executor, a warm worker, a requeued SLURM task, a person). The driver copies
the record into the step's completion marker and the report lists the resumed trainings.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

from atso_nnunet.io import read_json, write_json

RESUMES_FILE = "atso_resumes.json"


def record_resume(fold_folder: os.PathLike, epoch: int, seed: Optional[int]) -> Path:
    """Append one resume to the fold folder's record.

    Args:
        fold_folder: nnU-Net's output folder of the training (``.../fold_<f>``).
        epoch: the epoch the training continues at.
        seed: the training seed (``None``: unseeded, the resumed result differs from an
            uninterrupted training).
    """
    path = Path(fold_folder) / RESUMES_FILE
    entries = read_resumes(fold_folder)
    entries.append({"epoch": int(epoch), "seed": seed, "exact": seed is not None,
                    "when": time.strftime("%Y-%m-%d %H:%M:%S")})
    return write_json({"resumes": entries}, path)


def read_resumes(fold_folder: os.PathLike) -> List[dict]:
    """The resumes recorded in a fold folder (empty when the training ran through)."""
    data = read_json(Path(fold_folder) / RESUMES_FILE) or {}
    return list(data.get("resumes", []))


def resume_summary(fold_folder: os.PathLike) -> dict:
    """What a completion marker records: ``resumed``, and for a resumed training the epochs and exactness."""
    entries = read_resumes(fold_folder)
    if not entries:
        return {"resumed": False}
    return {"resumed": True, "resumed_at_epochs": [e["epoch"] for e in entries],
            "resume_exact": all(e.get("exact", False) for e in entries)}

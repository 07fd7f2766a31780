"""Per-view test DSC and predicted/true volume of every model of a finished tri-view run.

Reads the run's per-view test predictions (``predictions/<model>/<view>/``) and fused ones
(``fused/<model>/E/``) against the ground truth of the test cases and makes one row per model: the
mean DSC of each view and of the vote, and the median over test cases of predicted / true
foreground volume. It shows whether a majority vote of views keeps less foreground than each view
does (a vote of views that disagree keeps only where two of three agree). Test labels are read, so
use it only on a run that has finished (as the comparison does).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from atso_nnunet.run.rundir import RunDir
from atso_nnunet.data.layout import FILE_ENDING
from atso_nnunet.errors import InputError
from atso_nnunet.evaluation.diagnosis.rundata import generation_key
from atso_nnunet.evaluation.diagnosis.volumes import set_volumes
from atso_nnunet.views import VIEWS


def score_folder(folder: Path, labels: Path, cases: Sequence[str],
                 label_map: Optional[Dict[int, int]] = None) -> Optional[Tuple[float, float]]:
    """(mean DSC %, median predicted/true volume) over the test cases, None if a case is missing."""
    sv = set_volumes(folder.name, "E", cases, lambda c: folder / f"{c}{FILE_ENDING}",
                     lambda c: labels / f"{c}{FILE_ENDING}", label_map or {})
    if sv.cases != list(cases):
        return None
    ratios = [v / g if g else float("nan") for v, g in zip(sv.volume, sv.gt_volume)]
    return 100.0 * sv.mean_dsc, float(np.median(ratios))


def view_volume_table(run_dir: Path, labels: Path) -> List[str]:
    """The table's Markdown lines: one row per model of ``run_dir``, scored against ``labels``.

    Raises:
        InputError: the run's ``plan.json`` names no test cases, or a test case has no ground truth.
    """
    plan = json.loads((run_dir / "plan.json").read_text())
    cases = plan.get("test") or plan.get("split", {}).get("test") or []
    if not cases:
        raise InputError(f"{run_dir}: plan.json names no test cases")
    missing = [c for c in cases if not (labels / f"{c}{FILE_ENDING}").is_file()]
    if missing:
        raise InputError(f"{labels}: no ground truth for {', '.join(missing)}")
    label_map = {int(k): int(v) for k, v in (plan.get("eval_label_map") or {}).items()}
    run = RunDir(run_dir)
    models = sorted({d.name for root in (run.predictions_root, run.fused_root) if root.is_dir()
                     for d in root.iterdir() if d.is_dir()}, key=generation_key)
    lines = ["| model | " + " | ".join(f"{v} DSC | {v} vol" for v in VIEWS) + " | vote DSC | vote vol |",
             "|---|" + "---:|" * (2 * len(VIEWS) + 2)]
    for m in models:
        cells = []
        for folder in [run.predictions(m, v) for v in VIEWS] + [run.fused(m, "E")]:
            s = score_folder(folder, labels, cases, label_map) if folder.is_dir() else None
            cells += ["–", "–"] if s is None else [f"{s[0]:.1f}", f"{s[1]:.2f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines

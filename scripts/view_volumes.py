"""Per-view test DSC and predicted/true volume of every model of a finished tri-view run.

Reads the run's per-view test predictions (``predictions/<model>/<view>/``) and fused ones
(``fused/<model>/E/``) against the ground truth in ``--labels`` and prints one row per model: the
mean DSC of each view and of the vote, and the median over test cases of predicted / true
foreground volume. It shows whether a majority vote of views keeps less foreground than each view
does (a vote of views that disagree keeps only where two of three agree)::

    .venv/bin/python scripts/view_volumes.py /work/bench/10pct_triview/seed0/atso \
        --labels /work/bench/nnunet/nnUNet_raw/Dataset985_SynthBenchA/labelsTr

Test labels are read, so run it only on a run that has finished (as the comparison does).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from atso_nnunet.data.layout import FILE_ENDING
from atso_nnunet.evaluation.diagnosis import _generation_key, set_volumes

logger = logging.getLogger("view_volumes")
VIEWS = ("axial", "coronal", "sagittal")


def score_folder(folder: Path, labels: Path, cases: Sequence[str],
                 label_map: Optional[Dict[int, int]] = None) -> Optional[Tuple[float, float]]:
    """(mean DSC %, median predicted/true volume) over the test cases, None if a case is missing."""
    sv = set_volumes(folder.name, "E", cases, lambda c: folder / f"{c}{FILE_ENDING}",
                     lambda c: labels / f"{c}{FILE_ENDING}", label_map or {})
    if sv.cases != list(cases):
        return None
    ratios = [v / g if g else float("nan") for v, g in zip(sv.volume, sv.gt_volume)]
    return 100.0 * sv.mean_dsc, float(np.median(ratios))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a finished atso_nnunet run folder")
    p.add_argument("--labels", type=Path, required=True, help="folder with the test cases' ground truth")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    plan = json.loads((args.run_dir / "plan.json").read_text())
    cases = plan.get("test") or plan.get("split", {}).get("test") or []
    if not cases:
        logger.error("%s: plan.json names no test cases", args.run_dir)
        return 2
    missing = [c for c in cases if not (args.labels / f"{c}{FILE_ENDING}").is_file()]
    if missing:
        logger.error("%s: no ground truth for %s", args.labels, ", ".join(missing))
        return 2
    label_map = {int(k): int(v) for k, v in (plan.get("eval_label_map") or {}).items()}
    models = sorted({d.name for sub in ("predictions", "fused") if (args.run_dir / sub).is_dir()
                     for d in (args.run_dir / sub).iterdir() if d.is_dir()}, key=_generation_key)
    print("| model | " + " | ".join(f"{v} DSC | {v} vol" for v in VIEWS) + " | vote DSC | vote vol |")
    print("|---|" + "---:|" * (2 * len(VIEWS) + 2))
    for m in models:
        cells = []
        for folder in [args.run_dir / "predictions" / m / v for v in VIEWS] + [args.run_dir / "fused" / m / "E"]:
            s = score_folder(folder, args.labels, cases, label_map) if folder.is_dir() else None
            cells += ["–", "–"] if s is None else [f"{s[0]:.1f}", f"{s[1]:.2f}"]
        print(f"| {m} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

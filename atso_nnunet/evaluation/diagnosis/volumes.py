"""(a) Foreground volumes of every pseudo-label set and fused test prediction, next to the ground truth."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from atso_nnunet.io import read_array
from atso_nnunet.evaluation.metrics import dice_from_counts
from atso_nnunet.evaluation.diagnosis.rundata import RunData, foreground, voxel_ml

logger = logging.getLogger(__name__)


@dataclass
class SetVolumes:
    """Per-case volumes (mL) and overlap of one label set against the ground truth."""

    name: str
    part: str  # "R" or "E"
    cases: List[str]
    volume: List[float]
    gt_volume: List[float]
    tp: List[float]
    fp: List[float]
    fn: List[float]

    @property
    def empty(self) -> int:
        return sum(v == 0 for v in self.volume)

    @property
    def global_dsc(self) -> float:
        return dice_from_counts(sum(self.tp), sum(self.fp), sum(self.fn))

    @property
    def mean_dsc(self) -> float:
        d = [dice_from_counts(t, p, n) for t, p, n in zip(self.tp, self.fp, self.fn)]
        return float(np.mean(d)) if d else float("nan")


def set_volumes(name: str, part: str, cases: Sequence[str], label_file: Callable[[str], Path],
                gt_file: Callable[[str], Optional[Path]], label_map: Dict[int, int]) -> SetVolumes:
    """One label set's volumes and overlap against ground truth, per case (cases missing either are skipped)."""
    sv = SetVolumes(name, part, [], [], [], [], [], [])
    for case in cases:
        f, g = label_file(case), gt_file(case)
        if not f.is_file() or g is None:
            continue
        ml = voxel_ml(g)
        pred = read_array(f)[0] > 0
        gt = foreground(read_array(g)[0], label_map)
        sv.cases.append(case)
        sv.volume.append(pred.sum() * ml)
        sv.gt_volume.append(gt.sum() * ml)
        sv.tp.append((pred & gt).sum() * ml)
        sv.fp.append((pred & ~gt).sum() * ml)
        sv.fn.append((~pred & gt).sum() * ml)
    return sv


def label_set_volumes(run: RunData) -> List[SetVolumes]:
    """Volumes of every pseudo-label set (on R) and fused test prediction (on E) against ground truth."""
    sets = (set_volumes(name, part, cases, lambda c, n=name: run.label_set_file(n, c), run.gt_file, run.label_map)
            for names, part, cases in ((run.pseudo_label_sets, "R", run.plan["reference"]),
                                       (run.test_sets, "E", run.plan["test"]))
            for name in names)
    return [sv for sv in sets if sv.cases]


def plot_volumes(sets: List[SetVolumes], path: Path) -> Optional[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in ("R", "E") if any(s.part == p for s in sets)]
    if not parts:
        return None
    fig, axes = plt.subplots(len(parts), 2, figsize=(13, 3.6 * len(parts)), squeeze=False,
                             gridspec_kw={"width_ratios": [4, 1]})
    for row, part in zip(axes, parts):
        group = [s for s in sets if s.part == part]
        cases = group[0].cases
        width = 0.8 / (len(group) + 1)
        x = np.arange(len(cases))
        row[0].bar(x, group[0].gt_volume, width, color="black", label="ground truth")
        cmap = matplotlib.colormaps["viridis"]
        for i, s in enumerate(group, 1):
            vol = [s.volume[s.cases.index(c)] if c in s.cases else np.nan for c in cases]
            row[0].bar(x + i * width, vol, width, color=cmap(i / (len(group) + 1)),
                       label=f"{s.name} ({s.empty} empty)")
        row[0].set_xticks(x + 0.4 - width / 2)
        row[0].set_xticklabels(cases, rotation=45, ha="right", fontsize=7)
        row[0].set_ylabel("foreground volume (mL)")
        row[0].set_title(("pseudo-labels on R" if part == "R" else "fused predictions on E") + " vs ground truth")
        row[0].legend(fontsize=7, ncol=2)
        names = ["GT"] + [s.name for s in group]
        tp = [sum(group[0].gt_volume)] + [sum(s.tp) for s in group]
        fp = [0.0] + [sum(s.fp) for s in group]
        row[1].bar(range(len(names)), tp, color="tab:green", label="TP (GT: its volume)")
        row[1].bar(range(len(names)), fp, bottom=tp, color="tab:red", label="FP")
        row[1].set_xticks(range(len(names)))
        row[1].set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        row[1].set_title("total (mL)")
        row[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

"""(c) Training curves of every model and view, from nnU-Net's training logs."""
from __future__ import annotations

import logging
import re
from atso_nnunet.run.rundir import RunDir
from atso_nnunet.evaluation.diagnosis.rundata import RunData, generation_key
from atso_nnunet.nnunet.training_log import training_log_epochs
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional


logger = logging.getLogger(__name__)


@dataclass


class TrainingCurve:
    """One model's per-epoch values from nnU-Net's training log."""

    model: str
    view: str
    train_loss: List[float] = field(default_factory=list)
    val_loss: List[float] = field(default_factory=list)
    pseudo_dice: List[float] = field(default_factory=list)
    note: str = ""


def training_curves(run: RunData) -> List[TrainingCurve]:
    """Curves of every model folder ``models/<model>/nnUNet_results/*/<trainer>__<plans>__<c>/fold_*``."""
    curves = []
    for fold in sorted(RunDir(run.root).models_root.glob("*/nnUNet_results/*/*__*__*/fold_*"),
                       key=lambda p: (generation_key(p.parents[3].name), str(p))):
        model = fold.parents[3].name
        plans = fold.parent.name.split("__")[1]
        view = plans.rsplit("_", 1)[-1]
        logs = sorted(fold.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
        c = TrainingCurve(model, view)
        texts = [log.read_text(errors="replace") for log in logs]
        for k, v in training_log_epochs(texts).items():
            getattr(c, k).extend(v)
        for text in texts:
            m = re.search(r"ATSO semi-supervised training set: ([^;]+)", text)
            if m:
                c.note = m.group(1)
        if c.train_loss:
            curves.append(c)
    return curves


def plot_training(curves: List[TrainingCurve], path: Path) -> Optional[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    cmap = matplotlib.colormaps["tab10"]
    for i, c in enumerate(curves):
        style = dict(color=cmap(i % 10), label=f"{c.model} {c.view}", marker=".")
        for ax, values in zip(axes, (c.train_loss, c.val_loss, c.pseudo_dice)):
            ax.plot(range(len(values)), values, **style)
    for ax, title in zip(axes, ("training loss (nnU-Net: -soft Dice + CE)", "validation loss (labeled cases)",
                                "pseudo Dice (validation patches of S)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

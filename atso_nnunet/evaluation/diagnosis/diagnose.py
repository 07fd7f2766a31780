"""The diagnosis of a run folder: every figure, and ``diagnosis.md`` with the figures and the numbers."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from atso_nnunet.io import read_json, write_text
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.evaluation.diagnosis.ingested import IngestedCase, ingested_cases, plot_ingested
from atso_nnunet.evaluation.diagnosis.intensities import RoleIntensities, intensities, plot_intensities, preprocessed_check
from atso_nnunet.evaluation.diagnosis.overlays import plot_overlays
from atso_nnunet.evaluation.diagnosis.rundata import RunData, load_run
from atso_nnunet.evaluation.diagnosis.training import TrainingCurve, plot_training, training_curves
from atso_nnunet.evaluation.diagnosis.volumes import SetVolumes, label_set_volumes, plot_volumes

logger = logging.getLogger(__name__)


def _report_lines(run: RunData) -> List[str]:
    rep = read_json(run.root / "report.json")
    if not rep:
        return ["(no report.json yet)"]
    lines = ["| generation | @R | @E |", "|---|---:|---:|"]
    for g in rep.get("generations", []):
        r, e = g.get("reference_dsc"), g.get("test_dsc")
        lines.append(f"| G{g.get('generation')} | {'' if r is None else f'{100 * r:.1f}'} | "
                     f"{'' if e is None else f'{100 * e:.1f}'} |")
    final = rep.get("final") or {}
    for k, v in final.items():
        if isinstance(v, (int, float)) and "dsc" in k:
            lines.append(f"| final ({k}) | | {100 * v:.1f} |")
    return lines


def _write_summary(run: RunData, out: Path, figures: Dict[str, Optional[Path]], volumes: List[SetVolumes],
                   curves: List[TrainingCurve], roles: List[RoleIntensities], info: dict, pre: List[dict],
                   ingested: List[IngestedCase]) -> Path:
    L = [f"# Diagnosis of {run.root}", "",
         f"method `{run.plan.get('method')}`, views {', '.join(run.plan.get('views', []))}, "
         f"{run.plan.get('generations')} generation(s), metric {run.plan.get('metric')}, label map "
         f"{run.plan.get('eval_label_map') or '{}'}; dataset {run.dataset_name}", "",
         "## Scores (the run's report)", ""] + _report_lines(run)
    L += ["", "## (a) Label volumes vs ground truth", ""]
    if figures.get("volumes"):
        L += [f"![volumes]({figures['volumes'].name})", ""]
    L += ["| set | part | cases | empty | volume mL | GT mL | TP mL | FP mL | FN mL | global DSC % | mean DSC % |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in volumes:
        L.append(f"| {s.name} | {s.part} | {len(s.cases)} | {s.empty} | {sum(s.volume):.1f} | {sum(s.gt_volume):.1f} | "
                 f"{sum(s.tp):.1f} | {sum(s.fp):.1f} | {sum(s.fn):.1f} | {100 * s.global_dsc:.1f} | "
                 f"{100 * s.mean_dsc:.1f} |")
    L += ["", "## (b) Overlays in the three array views", ""]
    for key in ("overlays_R", "overlays_E", "ingested"):
        if figures.get(key):
            L += [f"![{key}]({figures[key].name})", ""]
    if ingested:
        L += ["Ingested pseudo-labels (what the students train on) against the ground truth brought into the "
              "same preprocessed space; equal DSC in both spaces means the ingestion is registered:", "",
              "| set | view | case | DSC original % | DSC preprocessed % | volume original mL | volume ingested mL | "
              "centroid shift mm |", "|---|---|---|---:|---:|---:|---:|---:|"]
        L += [f"| {i.label_set} | {i.view} | {i.case} | {100 * i.dsc_original:.1f} | {100 * i.dsc_preprocessed:.1f} | "
              f"{i.volume_original_ml:.2f} | {i.volume_preprocessed_ml:.2f} | {i.centroid_shift_mm:.1f} |"
              for i in ingested]
    L += ["", "## (c) Training curves", ""]
    if figures.get("training"):
        L += [f"![training]({figures['training'].name})", ""]
    L += ["| model | view | epochs | first train loss | last train loss | last val loss | last pseudo Dice | "
          "training set |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for c in curves:
        pdice = c.pseudo_dice[-1] if c.pseudo_dice else float("nan")
        vl = c.val_loss[-1] if c.val_loss else float("nan")
        L.append(f"| {c.model} | {c.view} | {len(c.train_loss)} | {c.train_loss[0]:.3f} | {c.train_loss[-1]:.3f} | "
                 f"{vl:.3f} | {pdice:.3f} | {c.note or 'labeled only'} |")
    L += ["", "## (d) Intensities after nnU-Net's normalisation", ""]
    if figures.get("intensities"):
        L += [f"![intensities]({figures['intensities'].name})", ""]
    if info:
        L += [f"Normalisation {info.get('scheme')} with the plans' statistics (from the labeled set only): "
              f"mean {info.get('mean', float('nan')):.1f}, sd {info.get('std', float('nan')):.1f}, clip "
              f"[{info.get('percentile_00_5', float('nan')):.1f}, "
              f"{info.get('percentile_99_5', float('nan')):.1f}] HU.", ""]
    if roles:
        bounds = (info.get("percentile_00_5", -np.inf), info.get("percentile_99_5", np.inf))
        L += ["| role | cases | organ HU median | organ normalised median (IQR) | shell normalised median (IQR) | "
              "organ clipped high % | shell clipped high % |",
              "|---|---:|---:|---:|---:|---:|---:|"]
        for r in roles:
            qo, qs = np.percentile(r.organ, [25, 50, 75]), np.percentile(r.shell, [25, 50, 75])
            c = r.clipped(bounds)
            L.append(f"| {r.role} | {r.n_cases} | {np.median(r.organ_hu):.0f} | "
                     f"{qo[1]:.2f} ({qo[0]:.2f}..{qo[2]:.2f}) | {qs[1]:.2f} ({qs[0]:.2f}..{qs[2]:.2f}) | "
                     f"{100 * c['organ_high']:.0f} | {100 * c['shell_high']:.0f} |")
    if pre:
        worst = max(p["max_abs_diff"] for p in pre)
        L += ["", f"Preprocessed files vs raw images normalised by the plans (quantiles 1/25/50/75/99 over the "
              f"whole volume, {len(pre)} case-views): largest difference {worst:.3f} (resampling only when small).", "",
              "| view | role | case | preprocessed | raw normalised |", "|---|---|---|---|---|"]
        L += [f"| {p['view']} | {p['role']} | {p['case']} | {p['preprocessed_q']} | {p['raw_normalised_q']} |"
              for p in pre]
    return write_text("\n".join(L) + "\n", out / "diagnosis.md")


def diagnose_run(run_dir: os.PathLike, out: Optional[os.PathLike] = None, paths: Optional[NnUNetPaths] = None,
                 n_cases: int = 2) -> Path:
    """Write the diagnosis figures and ``diagnosis.md`` of a run folder into ``out``.

    Args:
        run_dir: an atso_nnunet run folder.
        out: output folder (default ``<run_dir>/diagnosis``).
        paths: nnU-Net folders (default: the environment, else found through the run's input links).
        n_cases: cases per overlay figure.

    Returns:
        The path of ``diagnosis.md``.
    """
    run = load_run(run_dir, paths)
    out = Path(out) if out is not None else run.root / "diagnosis"
    out.mkdir(parents=True, exist_ok=True)
    figures: Dict[str, Optional[Path]] = {}
    volumes = label_set_volumes(run)
    figures["volumes"] = plot_volumes(volumes, out / "volumes.png")
    figures["overlays_R"] = plot_overlays(run, "R", out / "overlays_R.png", n_cases)
    figures["overlays_E"] = plot_overlays(run, "E", out / "overlays_E.png", n_cases)
    ingested = ingested_cases(run, n_cases) if run.preprocessed_dir.is_dir() else []
    figures["ingested"] = plot_ingested(ingested, out / "ingested.png")
    curves = training_curves(run)
    figures["training"] = plot_training(curves, out / "training.png")
    roles, info = intensities(run) if run.preprocessed_dir.is_dir() else ([], {})
    figures["intensities"] = plot_intensities(roles, info, out / "intensities.png")
    pre = preprocessed_check(run) if run.preprocessed_dir.is_dir() else []
    summary = _write_summary(run, out, figures, volumes, curves, roles, info, pre, ingested)
    logger.info("diagnosis of %s written to %s", run.root, out)
    return summary

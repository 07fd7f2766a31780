"""(d) Intensities after nnU-Net's normalisation, per role, inside the organ and in a shell around it."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage

from atso_nnunet.io import read_array
from atso_nnunet.views import plans_identifier
from atso_nnunet.evaluation.diagnosis.rundata import ROLE_COLOURS, RunData, foreground

logger = logging.getLogger(__name__)


@dataclass
class RoleIntensities:
    """Normalised intensities of one role (labeled / reference / test) inside and around the organ."""

    role: str
    organ: np.ndarray = field(repr=False)
    shell: np.ndarray = field(repr=False)
    organ_hu: np.ndarray = field(repr=False)
    shell_hu: np.ndarray = field(repr=False)
    n_cases: int = 0

    def clipped(self, bounds: Tuple[float, float]) -> Dict[str, float]:
        """Fractions of organ / shell voxels at or beyond the normalisation's clip bounds (HU)."""
        lo, hi = bounds
        return {"organ_low": float(np.mean(self.organ_hu <= lo)), "organ_high": float(np.mean(self.organ_hu >= hi)),
                "shell_low": float(np.mean(self.shell_hu <= lo)), "shell_high": float(np.mean(self.shell_hu >= hi))}


class _Normaliser:
    """nnU-Net's own normalisation of a configuration (``DefaultPreprocessor._normalize``, nnunetv2 2.8.1)."""

    def __init__(self, plans: dict, configuration: str):
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        self.cm = PlansManager(plans).get_configuration(configuration)
        self.props = plans["foreground_intensity_properties_per_channel"]
        self.scheme = self.cm.normalization_schemes[0]
        self._pre = self.cm.preprocessor_class(verbose=False)

    def run(self, image: np.ndarray) -> np.ndarray:
        """Normalise one single-channel (z, y, x) image as nnU-Net preprocessing does."""
        data = image[None].astype(np.float32)
        return self._pre._normalize(data, np.zeros_like(data, dtype=np.int8), self.cm, self.props)[0]


def intensities(run: RunData, max_cases: int = 8, shell_mm: float = 10.0) -> Tuple[List[RoleIntensities], dict]:
    """Per role, normalised intensities inside the organ and in a ``shell_mm`` shell around it."""
    view = run.plan.get("views", ["axial"])[0]
    plans_file = run.preprocessed_dir / f"{plans_identifier(view)}.json"
    if not plans_file.is_file():
        return [], {}
    plans = json.loads(plans_file.read_text())
    norm = _Normaliser(plans, run.plan.get("configuration", "2d"))
    props = norm.props["0"]
    out = []
    for role in ("labeled", "reference", "test"):
        organ, shell, organ_hu, shell_hu, n = [], [], [], [], 0
        for case in run.plan[role][:max_cases]:
            img_f, gt_f = run.image_file(case), run.gt_file(case)
            if img_f is None or gt_f is None:
                continue
            image, geom = read_array(img_f)
            gt = foreground(read_array(gt_f)[0], run.label_map)
            iters = max(1, int(round(shell_mm / min(geom.spacing))))
            struct = ndimage.generate_binary_structure(3, 1)
            ring = ndimage.binary_dilation(gt, struct, iterations=iters) & ~gt
            z = norm.run(image)
            organ.append(z[gt])
            shell.append(z[ring])
            organ_hu.append(image[gt])
            shell_hu.append(image[ring])
            n += 1
        if n:
            out.append(RoleIntensities(role, np.concatenate(organ), np.concatenate(shell),
                                       np.concatenate(organ_hu), np.concatenate(shell_hu), n))
    return out, {"view": view, "scheme": norm.scheme, **props}


def preprocessed_check(run: RunData, max_cases: int = 3) -> List[dict]:
    """Quantiles of nnU-Net's preprocessed images vs the raw images normalised by the plans.

    Labeled cases are read from nnU-Net's own data folder, reference cases from
    ``atso_unlabeled``; a mismatch means a case was normalised with other statistics.
    """
    import blosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    rows = []
    configuration = run.plan.get("configuration", "2d")
    for view in run.plan.get("views", []):
        plans_file = run.preprocessed_dir / f"{plans_identifier(view)}.json"
        if not plans_file.is_file():
            continue
        plans = json.loads(plans_file.read_text())
        ident = PlansManager(plans).get_configuration(configuration).data_identifier
        norm = _Normaliser(plans, configuration)
        for role, folder in (("labeled", run.preprocessed_dir / ident),
                             ("reference", run.preprocessed_dir / "atso_unlabeled" / ident)):
            for case in run.plan[role][:max_cases]:
                f = folder / f"{case}.b2nd"
                if not f.is_file():
                    continue
                pre = np.asarray(blosc2.open(str(f), mode="r")[:])[0]
                raw = norm.run(read_array(run.image_file(case))[0])
                q = [1, 25, 50, 75, 99]
                qp, qr = np.percentile(pre, q), np.percentile(raw, q)
                rows.append({"view": view, "role": role, "case": case,
                             "preprocessed_q": [round(float(v), 3) for v in qp],
                             "raw_normalised_q": [round(float(v), 3) for v in qr],
                             "max_abs_diff": round(float(np.max(np.abs(qp - qr))), 3)})
    return rows


def plot_intensities(roles: List[RoleIntensities], info: dict, path: Path) -> Optional[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not roles:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    lo = min(np.percentile(r.shell, 0.5) for r in roles)
    hi = max(np.percentile(r.organ, 99.5) for r in roles)
    bins = np.linspace(min(lo, -3), max(hi, 3), 80)
    for r in roles:
        style = dict(histtype="step", density=True, color=ROLE_COLOURS[r.role], linewidth=1.4)
        axes[0].hist(r.organ, bins=bins, label=f"{r.role} ({r.n_cases} cases)", **style)
        axes[1].hist(r.shell, bins=bins, label=r.role, **style)
        axes[2].hist(r.organ, bins=bins, label=f"{r.role} organ", **style)
        axes[2].hist(r.shell, bins=bins, linestyle=":", label=f"{r.role} surroundings", **style)
    if "percentile_00_5" in info:
        for bound in ("percentile_00_5", "percentile_99_5"):
            z = (info[bound] - info["mean"]) / max(info["std"], 1e-8)
            for ax in axes:
                ax.axvline(z, color="grey", linestyle="--", linewidth=0.8)
    axes[0].set_title("inside the ground-truth organ (dashed: clip bounds)", fontsize=9)
    axes[1].set_title("10 mm shell around the organ", fontsize=9)
    axes[2].set_title("organ (solid) vs surroundings (dotted)", fontsize=9)
    for ax in axes:
        ax.set_xlabel(f"normalised intensity ({info.get('scheme', '')}, plans of the {info.get('view', '')} view)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

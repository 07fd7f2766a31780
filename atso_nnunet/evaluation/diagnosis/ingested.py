"""(b') What the students trained on: ingested pseudo-labels in each view's preprocessed space."""
from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from scipy import ndimage

from atso_nnunet.pseudolabels.ingest import CACHE_DIR, MARKER
from atso_nnunet.run.rundir import RunDir
from atso_nnunet.io import read_array, read_json
from atso_nnunet.views import plans_identifier
from atso_nnunet.evaluation.metrics import dice_from_counts
from atso_nnunet.evaluation.diagnosis.overlays import draw, informative_cases, organ_centre
from atso_nnunet.evaluation.diagnosis.rundata import RunData, foreground

logger = logging.getLogger(__name__)


@dataclass
class IngestedCase:
    label_set: str
    view: str
    case: str
    dsc_original: float
    dsc_preprocessed: float
    volume_original_ml: float
    volume_preprocessed_ml: float
    centroid_shift_mm: float  # pseudo-label centroid, ingested vs original, in mm (nan if empty)
    image: np.ndarray = field(repr=False)
    gt: np.ndarray = field(repr=False)
    pseudo: np.ndarray = field(repr=False)


def _ingested_cache(run: RunData, data_identifier: str, label_set: str) -> Optional[Path]:
    src = RunDir(run.root).pseudo_labels(label_set).resolve()
    for marker in sorted((run.preprocessed_dir / CACHE_DIR / data_identifier).glob("*/" + MARKER)):
        m = read_json(marker)
        if m and Path(m.get("pseudo_label_dir", "")).resolve() == src:
            return marker.parent
    return None


def ingested_cases(run: RunData, n_cases: int = 2) -> List[IngestedCase]:
    """The ingested pseudo-labels of the first and last ingested set, per view, against the ground truth."""
    import blosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from atso_nnunet.pseudolabels.ingest_case import seg_to_preprocessed

    configuration = run.plan.get("configuration", "2d")
    dataset_json_file = run.preprocessed_dir / "dataset.json"
    if not dataset_json_file.is_file():
        return []
    dataset_json = json.loads(dataset_json_file.read_text())
    out = []
    for view in run.plan.get("views", []):
        plans_file = run.preprocessed_dir / f"{plans_identifier(view)}.json"
        if not plans_file.is_file():
            continue
        pm = PlansManager(str(plans_file))
        cm = pm.get_configuration(configuration)
        ingested = [s for s in run.pseudo_label_sets if _ingested_cache(run, cm.data_identifier, s)]
        for label_set in ([ingested[0], ingested[-1]] if len(ingested) > 1 else ingested):
            cache = _ingested_cache(run, cm.data_identifier, label_set)
            image_dir = run.preprocessed_dir / "atso_unlabeled" / cm.data_identifier
            cases = informative_cases(run, [c for c in run.plan["reference"] if (cache / f"{c}_seg.b2nd").is_file()
                                             and run.gt_file(c) is not None], [label_set], n_cases)
            for case in cases:
                with open(image_dir / f"{case}.pkl", "rb") as f:
                    props = pickle.load(f)
                rw = pm.image_reader_writer_class()
                data, _ = rw.read_images([str(run.image_file(case))])
                gt_raw, _ = rw.read_seg(str(run.gt_file(case)))
                gt_raw = foreground(gt_raw, run.label_map).astype(np.int16)
                gt_pre, _ = seg_to_preprocessed(gt_raw, data, props, pm, cm, dataset_json)
                pseudo = np.asarray(blosc2.open(str(cache / f"{case}_seg.b2nd"), mode="r")[:])[0] > 0
                image = np.asarray(blosc2.open(str(image_dir / f"{case}.b2nd"), mode="r")[:])[0]
                gt_pre = gt_pre[0] > 0
                pl_orig = read_array(run.label_set_file(label_set, case))[0] > 0
                gt_orig = gt_raw[0] > 0
                vol_o, vol_p, shift = _registration(pl_orig, pseudo, props, pm, cm)
                out.append(IngestedCase(label_set, view, case, _dsc(pl_orig, gt_orig), _dsc(pseudo, gt_pre),
                                        vol_o, vol_p, shift, image, gt_pre, pseudo))
    return out


def _registration(original: np.ndarray, ingested: np.ndarray, props: dict, plans_manager,
                  configuration_manager) -> Tuple[float, float, float]:
    """Volumes (mL) of a mask before and after ingestion, and the shift of its centroid in mm.

    The ingested mask lives in the view's transposed, cropped, resampled space: its centroid is
    brought back to millimetres in the transposed original frame with the crop box and the two
    spacings (to within half a voxel of resampling). A flip or transpose moves it by centimetres.
    """
    tf = list(plans_manager.transpose_forward)
    sp_orig = np.array([props["spacing"][i] for i in tf], float)
    sp_target = np.array(configuration_manager.spacing, float)
    if len(sp_target) < 3:
        sp_target = np.concatenate([sp_orig[:1], sp_target])
    vol_o = float(original.sum() * np.prod(sp_orig) / 1000)
    vol_p = float(ingested.sum() * np.prod(sp_target) / 1000)
    if not original.any() or not ingested.any():
        return vol_o, vol_p, float("nan")
    c_orig = np.array(ndimage.center_of_mass(original.transpose(tf))) * sp_orig
    start = np.array([b[0] for b in props["bbox_used_for_cropping"]], float)
    c_ing = start * sp_orig + (np.array(ndimage.center_of_mass(ingested)) + 0.5) * sp_target - 0.5 * sp_orig
    return vol_o, vol_p, float(np.linalg.norm(c_ing - c_orig))


def _dsc(a: np.ndarray, b: np.ndarray) -> float:
    return float(dice_from_counts((a & b).sum(), (a & ~b).sum(), (~a & b).sum()))


def plot_ingested(items: List[IngestedCase], path: Path) -> Optional[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not items:
        return None
    n = len(items)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(max(3 * cols, 8), 3 * rows), squeeze=False)
    for ax, it in zip(axes.ravel(), items):
        i = organ_centre(it.gt)[0]  # nnU-Net 2D slices axis 0 of the transposed volume
        draw(ax, it.image[i], it.gt[i], it.pseudo[i], 1.0,
              f"{it.case} {it.label_set} ({it.view} space)\nslice {i}; DSC orig {100 * it.dsc_original:.0f}% / "
              f"preproc {100 * it.dsc_preprocessed:.0f}%", window=(-2.5, 2.5))
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle("what the students train on: ingested pseudo-label (red) vs ground truth (green) "
                 "on nnU-Net's preprocessed image", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path

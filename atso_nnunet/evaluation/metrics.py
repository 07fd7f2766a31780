"""Segmentation metrics on folders of label maps, computed with MONAI.

Protocols:

* **mean DSC** (NIH pancreas protocol): the Dice similarity coefficient of every case, averaged
  over cases (:attr:`EvaluationResult.mean_dsc`).
* **global DSC** (MSD transfer protocol): all cases counted as one volume,
  ``2 * sum(TP) / (2 * sum(TP) + sum(FP) + sum(FN))`` (:attr:`EvaluationResult.global_dsc`).
* **HD95** (optional): the symmetric 95th-percentile Hausdorff distance in mm, using the voxel
  spacing of the ground truth.

The numbers come from MONAI: per-case TP/FP/FN from ``monai.metrics.get_confusion_matrix``, DSC
(per case and global, from the summed matrices) from
``monai.metrics.compute_confusion_matrix_metric("f1 score", ...)`` (F1 = DSC), and HD95 from
``monai.metrics.compute_hausdorff_distance(percentile=95, spacing=...)``.

Conventions:

* Label maps are 3D integer arrays (z, y, x) as read by SimpleITK; each class in ``foreground``
  is scored on its own as a binary mask ``label == class``. Other labels count as background.
* ``label_map`` (e.g. ``{2: 1}``: MSD tumour counts as pancreas) is applied to ground truth and
  prediction alike before scoring.
* **Empty ground truth**: a case whose ground truth has no voxel of a class scores DSC 1.0 for
  that class if the prediction has none either, else 0.0. This equals MONAI's
  ``compute_dice(..., ignore_empty=False)``; such cases are kept in the mean (a false alarm on
  a case without the organ is penalised). In the global DSC an empty case only adds its FP.
* **HD95 with an empty mask**: 0.0 if both masks are empty; NaN (undefined, reported as
  ``null`` in JSON and an empty CSV cell) if exactly one is empty. Means over cases skip NaN.
* The confusion matrix is computed on the bounding box of the union of the prediction and the
  ground truth (all foreground classes): TP, FP and FN do not depend on voxels that are
  background in both, and the crop keeps MONAI's float32 counts exact on large volumes. TN is
  therefore not reported.
"""
from __future__ import annotations

import csv
import io as _io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from monai.metrics import compute_confusion_matrix_metric, compute_hausdorff_distance, get_confusion_matrix
from tqdm import tqdm

from atso_nnunet.data.layout import FILE_ENDING, label_ids_in
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, read_array, write_json, write_text

logger = logging.getLogger(__name__)

DSC_BOTH_EMPTY = 1.0


@dataclass
class CaseScore:
    """Scores of one case.

    Attributes:
        case: case id.
        dsc: DSC per foreground class.
        hd95: HD95 in mm per class (NaN where undefined); empty when HD95 was not requested.
        voxels_pred: predicted voxels per class.
        voxels_gt: ground-truth voxels per class.
        tp, fp, fn: confusion counts per class (for the global DSC).
    """

    case: str
    dsc: Dict[int, float]
    hd95: Dict[int, float]
    voxels_pred: Dict[int, int]
    voxels_gt: Dict[int, int]
    tp: Dict[int, int]
    fp: Dict[int, int]
    fn: Dict[int, int]


def _nan_to_none(x: float) -> Optional[float]:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _nanmean(values: Sequence[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


@dataclass
class EvaluationResult:
    """Scores of a folder of predictions.

    Attributes:
        cases: one :class:`CaseScore` per case, in evaluation order.
        foreground: the scored classes (after ``label_map``).
        label_map: the label mapping applied before scoring.
        mean_dsc: per class, mean of the per-case DSC (NIH protocol).
        global_dsc: per class, DSC of all cases as one volume (MSD transfer protocol).
        mean_hd95: per class, mean HD95 in mm over cases where it is defined (empty without HD95).
    """

    cases: List[CaseScore]
    foreground: Tuple[int, ...]
    label_map: Dict[int, int] = field(default_factory=dict)
    mean_dsc: Dict[int, float] = field(default_factory=dict)
    global_dsc: Dict[int, float] = field(default_factory=dict)
    mean_hd95: Dict[int, float] = field(default_factory=dict)

    def score(self, protocol: str = "mean", label: Optional[int] = None) -> float:
        """One number: ``protocol`` ``"mean"`` or ``"global"`` DSC of ``label`` (default: mean over classes)."""
        table = {"mean": self.mean_dsc, "global": self.global_dsc}.get(protocol)
        if table is None:
            raise ValueError(f"unknown protocol {protocol!r}; choose 'mean' or 'global'")
        if label is not None:
            return table[label]
        return float(np.mean([table[c] for c in self.foreground]))

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN as ``None``, class ids as strings)."""
        def per_class(d: Mapping[int, float]) -> dict:
            return {str(k): _nan_to_none(v) for k, v in d.items()}

        return {
            "foreground": list(self.foreground),
            "label_map": {str(k): v for k, v in self.label_map.items()},
            "n_cases": len(self.cases),
            "mean_dsc": per_class(self.mean_dsc),
            "global_dsc": per_class(self.global_dsc),
            "mean_hd95": per_class(self.mean_hd95),
            "cases": [{"case": c.case, "dsc": per_class(c.dsc), "hd95": per_class(c.hd95),
                       "voxels_pred": per_class(c.voxels_pred), "voxels_gt": per_class(c.voxels_gt),
                       "tp": per_class(c.tp), "fp": per_class(c.fp), "fn": per_class(c.fn)}
                      for c in self.cases],
        }

    def to_json(self, path: Path) -> Path:
        """Write :meth:`to_dict` atomically as JSON."""
        return write_json(self.to_dict(), path)

    def to_csv(self, path: Path) -> Path:
        """Write one row per case atomically: ``case``, then per class ``dsc_<c>``, ``hd95_<c>``
        (if computed), ``voxels_pred_<c>``, ``voxels_gt_<c>``, ``tp_<c>``, ``fp_<c>``, ``fn_<c>``."""
        with_hd = bool(self.mean_hd95)
        header = ["case"]
        for c in self.foreground:
            header += [f"dsc_{c}"] + ([f"hd95_{c}"] if with_hd else []) + \
                      [f"voxels_pred_{c}", f"voxels_gt_{c}", f"tp_{c}", f"fp_{c}", f"fn_{c}"]
        buf = _io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for row in self.cases:
            values: list = [row.case]
            for c in self.foreground:
                values.append(f"{row.dsc[c]:.6f}")
                if with_hd:
                    hd = row.hd95[c]
                    values.append("" if math.isnan(hd) else f"{hd:.4f}")
                values += [row.voxels_pred[c], row.voxels_gt[c], row.tp[c], row.fp[c], row.fn[c]]
            writer.writerow(values)
        return write_text(buf.getvalue(), path)


@dataclass
class Agreement:
    """DSC between two prediction folders.

    Attributes:
        mean: mean over cases of the per-case agreement.
        per_case: per case, DSC averaged over the foreground classes.
    """

    mean: float
    per_case: Dict[str, float]


def dice_from_counts(tp: float, fp: float, fn: float) -> float:
    """``2 TP / (2 TP + FP + FN)`` for reporting; 1.0 when all three are 0 (both masks empty)."""
    denominator = 2 * tp + fp + fn
    return DSC_BOTH_EMPTY if denominator == 0 else 2 * tp / denominator


def _apply_label_map(array: np.ndarray, label_map: Mapping[int, int]) -> np.ndarray:
    if not label_map:
        return array
    out = array.copy()
    for src, dst in label_map.items():
        out[array == src] = dst  # masks of the original array: no chained remapping
    return out


def _union_bbox(masks: Sequence[np.ndarray]) -> Optional[Tuple[slice, ...]]:
    union = np.logical_or.reduce(masks)
    if not union.any():
        return None
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        idx = np.flatnonzero(union.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def _grow(box: Tuple[slice, ...], shape: Sequence[int], margin: int) -> Tuple[slice, ...]:
    return tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n)) for b, n in zip(box, shape))


def _f1(confusion: torch.Tensor) -> torch.Tensor:
    """MONAI F1 (= DSC) of (..., 4) confusion matrices, with 1.0 where TP + FP + FN = 0."""
    dsc = compute_confusion_matrix_metric("f1 score", confusion)
    return torch.nan_to_num(dsc, nan=DSC_BOTH_EMPTY)


def _score_pair(case: str, pred: np.ndarray, gt: np.ndarray, foreground: Sequence[int],
                spacing_zyx: Optional[Tuple[float, ...]], hd95: bool) -> Tuple[CaseScore, torch.Tensor]:
    """Score one case; returns the row and its (K, 4) float64 confusion matrix [TP, FP, TN*, FN]."""
    pred_masks = [pred == c for c in foreground]
    gt_masks = [gt == c for c in foreground]
    box = _union_bbox(pred_masks + gt_masks)
    k = len(foreground)
    if box is None:
        confusion = torch.zeros((k, 4), dtype=torch.float64)
    else:
        # one-hot (B=1, K, *box), foreground classes only, so include_background=True
        y_pred = torch.from_numpy(np.stack([m[box] for m in pred_masks])[None].astype(np.uint8))
        y = torch.from_numpy(np.stack([m[box] for m in gt_masks])[None].astype(np.uint8))
        confusion = get_confusion_matrix(y_pred, y, include_background=True)[0].double()
    dsc = _f1(confusion)
    hd: Dict[int, float] = {}
    if hd95:
        for i, c in enumerate(foreground):
            n_pred, n_gt = int(pred_masks[i].sum()), int(gt_masks[i].sum())
            if n_pred == 0 and n_gt == 0:
                hd[c] = 0.0
            elif n_pred == 0 or n_gt == 0:
                hd[c] = float("nan")
            else:
                # Surface distances are unchanged by a crop that keeps a 1-voxel margin around both masks.
                crop = _grow(_union_bbox([pred_masks[i], gt_masks[i]]), pred.shape, 1)
                value = compute_hausdorff_distance(
                    torch.from_numpy(pred_masks[i][crop][None, None]), torch.from_numpy(gt_masks[i][crop][None, None]),
                    include_background=True, percentile=95, spacing=list(spacing_zyx))
                hd[c] = float(value[0, 0])
    row = CaseScore(
        case=case,
        dsc={c: float(dsc[i]) for i, c in enumerate(foreground)},
        hd95=hd,
        voxels_pred={c: int(m.sum()) for c, m in zip(foreground, pred_masks)},
        voxels_gt={c: int(m.sum()) for c, m in zip(foreground, gt_masks)},
        tp={c: int(confusion[i, 0]) for i, c in enumerate(foreground)},
        fp={c: int(confusion[i, 1]) for i, c in enumerate(foreground)},
        fn={c: int(confusion[i, 3]) for i, c in enumerate(foreground)},
    )
    return row, confusion


def _normalise_foreground(foreground: Sequence[int]) -> Tuple[int, ...]:
    if isinstance(foreground, int):
        foreground = (foreground,)
    foreground = tuple(int(c) for c in foreground)
    if not foreground:
        raise ValueError("foreground: at least one class to score is needed")
    if any(c <= 0 for c in foreground) or len(set(foreground)) != len(foreground):
        raise ValueError(f"foreground: distinct class ids > 0 expected, got {foreground}")
    return foreground


def _check_cases(pred_dir: Path, gt_dir: Path, cases: Optional[Sequence[str]],
                 names: Tuple[str, str] = ("prediction", "ground truth")) -> List[str]:
    for d, what in ((pred_dir, names[0]), (gt_dir, names[1])):
        if not d.is_dir():
            raise InputError(f"{what} folder not found: {d}")
    if cases is None:
        cases = label_ids_in(gt_dir)
        if not cases:
            raise InputError(f"no <case>{FILE_ENDING} {names[1]} files in {gt_dir}")
    cases = list(cases)
    for d, what in ((gt_dir, names[1]), (pred_dir, names[0])):
        missing = [c for c in cases if not (d / f"{c}{FILE_ENDING}").is_file()]
        if missing:
            raise InputError(f"{what} missing in {d} for {len(missing)} case(s): {', '.join(missing)}")
    return cases


def _read_pair(case: str, pred_file: Path, gt_file: Path) -> Tuple[np.ndarray, np.ndarray, Geometry]:
    pred, pred_geometry = read_array(pred_file)
    gt, gt_geometry = read_array(gt_file)
    if not gt_geometry.matches(pred_geometry):
        raise InputError(f"case {case}: prediction {pred_file} and ground truth {gt_file} differ in geometry "
                         f"({gt_geometry.describe_difference(pred_geometry)})")
    return pred, gt, gt_geometry


def evaluate_folder(pred_dir: Path, gt_dir: Path, cases: Optional[Sequence[str]] = None,
                    foreground: Sequence[int] = (1,), label_map: Optional[Mapping[int, int]] = None,
                    hd95: bool = False, progress: bool = True) -> EvaluationResult:
    """Score ``pred_dir/<case>.nii.gz`` against ``gt_dir/<case>.nii.gz``, one case at a time.

    Args:
        pred_dir: folder of predicted label maps.
        gt_dir: folder of ground-truth label maps.
        cases: case ids; default every ground-truth case in ``gt_dir``.
        foreground: class ids (after ``label_map``) scored, each as its own binary mask.
        label_map: ``{from: to}`` applied to ground truth and prediction before scoring,
            e.g. ``{2: 1}`` (MSD: tumour counts as pancreas).
        hd95: also compute HD95 in mm (slower).
        progress: show a tqdm progress bar.

    Returns:
        An :class:`EvaluationResult` (conventions for empty masks: module docstring).

    Raises:
        InputError: a missing folder, ground truth or prediction (all missing cases listed), or
            a case whose prediction and ground truth differ in geometry.
        ValueError: an invalid ``foreground``.

    Example:
        >>> result = evaluate_folder(Path("pred"), Path("labelsTs"), label_map={2: 1})  # doctest: +SKIP
        >>> result.mean_dsc[1], result.global_dsc[1]  # doctest: +SKIP
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    foreground = _normalise_foreground(foreground)
    label_map = {int(k): int(v) for k, v in (label_map or {}).items()}
    cases = _check_cases(pred_dir, gt_dir, cases)
    rows: List[CaseScore] = []
    total = torch.zeros((len(foreground), 4), dtype=torch.float64)
    for case in tqdm(cases, desc="evaluate", unit="case", disable=not progress):
        pred, gt, geometry = _read_pair(case, pred_dir / f"{case}{FILE_ENDING}", gt_dir / f"{case}{FILE_ENDING}")
        pred, gt = _apply_label_map(pred, label_map), _apply_label_map(gt, label_map)
        row, confusion = _score_pair(case, pred, gt, foreground, tuple(reversed(geometry.spacing)), hd95)
        rows.append(row)
        total += confusion
        del pred, gt
    global_dsc = _f1(total)
    result = EvaluationResult(
        cases=rows, foreground=foreground, label_map=label_map,
        mean_dsc={c: float(np.mean([r.dsc[c] for r in rows])) for c in foreground},
        global_dsc={c: float(global_dsc[i]) for i, c in enumerate(foreground)},
        mean_hd95={c: _nanmean([r.hd95[c] for r in rows]) for c in foreground} if hd95 else {},
    )
    logger.info("evaluated %d case(s) of %s: mean DSC %s, global DSC %s", len(rows), pred_dir,
                {c: round(v, 4) for c, v in result.mean_dsc.items()},
                {c: round(v, 4) for c, v in result.global_dsc.items()})
    return result


def agreement(dir_a: Path, dir_b: Path, cases: Optional[Sequence[str]] = None,
              foreground: Sequence[int] = (1,), progress: bool = False) -> Agreement:
    """DSC between two folders of predictions (a label-free monitor).

    Used for the agreement of two half-models, or the change of the pseudo-labels since the
    previous generation. DSC is symmetric, so the order of the folders does not matter; two
    empty masks agree fully (1.0).

    Args:
        dir_a: first folder of ``<case>.nii.gz`` label maps.
        dir_b: second folder.
        cases: case ids; default every case in ``dir_a`` (each must also be in ``dir_b``).
        foreground: class ids compared; the per-case value is the mean over these classes.
        progress: show a tqdm progress bar.

    Returns:
        :class:`Agreement` with the mean over cases and the per-case values.

    Raises:
        InputError: a missing folder or file (missing cases listed), or a case whose two label
            maps differ in geometry.
    """
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    foreground = _normalise_foreground(foreground)
    if cases is None and dir_a.is_dir():
        cases = label_ids_in(dir_a)
        if not cases:
            raise InputError(f"no <case>{FILE_ENDING} label maps in {dir_a}")
    cases = _check_cases(dir_a, dir_b, cases, names=("first folder", "second folder"))
    per_case: Dict[str, float] = {}
    for case in tqdm(cases, desc="agreement", unit="case", disable=not progress):
        a, b, _ = _read_pair(case, dir_a / f"{case}{FILE_ENDING}", dir_b / f"{case}{FILE_ENDING}")
        row, _ = _score_pair(case, a, b, foreground, None, hd95=False)
        per_case[case] = float(np.mean([row.dsc[c] for c in foreground]))
    mean = float(np.mean(list(per_case.values()))) if per_case else float("nan")
    logger.info("agreement of %s and %s over %d case(s): %.4f", dir_a, dir_b, len(per_case), mean)
    return Agreement(mean=mean, per_case=per_case)

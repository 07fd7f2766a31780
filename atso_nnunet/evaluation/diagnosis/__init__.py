"""Diagnosis of a finished (or partial) run folder: figures that say *why* a run scored as it did.

:func:`diagnose_run` reads an ordinary run folder (see :mod:`atso_nnunet.run.rundir`), the experiment
dataset in ``nnUNet_raw`` and nnU-Net's preprocessed data, and writes into ``out``:

- ``volumes.png``: foreground volume (mL) of every pseudo-label set ``R_g{t}`` per reference case
  and of every fused test prediction per test case, next to the ground-truth volume; empty counts
  and per-set totals, DSC, false-positive and false-negative volumes go to the summary.
- ``overlays_R.png`` / ``overlays_E.png``: image slices in the three array views (axial,
  coronal, sagittal) through the ground-truth organ's centre, ground-truth contour (green) and
  the label set's contour (red), for the first and the last label set (M0 and the last
  generation). A flip, transpose or shift shows as a red contour away from the green one.
- ``ingested.png``: what the students actually trained on: the ingested pseudo-labels in each
  view's preprocessed space over nnU-Net's preprocessed image, against the ground truth brought
  into that space by the same function (:func:`atso_nnunet.pseudolabels.ingest.seg_to_preprocessed`).
  The summary compares the DSC in the preprocessed space with the DSC in the original space
  (equal up to resampling when ingestion is right).
- ``training.png``: training loss, validation loss and nnU-Net's pseudo Dice per epoch of every
  model and view, parsed from nnU-Net's ``training_log_*.txt``.
- ``intensities.png``: histograms after nnU-Net's normalisation (the view's plans, applied with
  nnU-Net's own normalisation class to the raw images) of labeled (domain of S), reference and
  test images, inside the ground-truth organ and in a shell around it. The summary checks the
  preprocessed files against the raw images normalised by the plans.
- ``diagnosis.md``: the figures and tables of numbers.

Everything reads files only; nothing in the run folder is changed.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.io import read_array, read_json, write_text
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.views import plans_identifier

logger = logging.getLogger(__name__)

#: array axis sliced for each view of a (z, y, x) volume, and that view's (rows, columns) axes
_SLICE_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
_ROLE_COLOURS = {"labeled": "tab:blue", "reference": "tab:orange", "test": "tab:red"}
_HU_WINDOW = (-160.0, 240.0)


# --------------------------------------------------------------------------------------------
# The run folder
# --------------------------------------------------------------------------------------------
@dataclass
class RunData:
    """What :func:`diagnose_run` reads of a run folder and its nnU-Net folders.

    Attributes:
        root: the run folder.
        plan: the resolved plan (``plan.json``).
        raw_dir: the experiment dataset in ``nnUNet_raw``.
        preprocessed_dir: ``nnUNet_preprocessed/<Dataset>`` (may be missing).
        label_map: ``eval_label_map`` as ints (e.g. ``{2: 1}``), applied to ground truth.
        pseudo_label_sets: ``R_g{t}`` names in generation order.
        test_sets: names of the fused test predictions (``fused/<name>/E``) in generation order.
    """

    root: Path
    plan: dict
    raw_dir: Path
    preprocessed_dir: Path
    label_map: Dict[int, int]
    pseudo_label_sets: List[str] = field(default_factory=list)
    test_sets: List[str] = field(default_factory=list)

    @property
    def dataset_name(self) -> str:
        return self.raw_dir.name

    def gt_file(self, case: str) -> Optional[Path]:
        for folder in (layout.LABELS_TR, layout.LABELS_REF, layout.LABELS_TS):
            f = layout.label_path(self.raw_dir, folder, case)
            if f.is_file():
                return f
        return None

    def image_file(self, case: str) -> Optional[Path]:
        for folder in (layout.IMAGES_TR, layout.IMAGES_REF, layout.IMAGES_TS):
            f = layout.image_path(self.raw_dir, folder, case)
            if f.is_file():
                return f
        return None

    def label_set_file(self, name: str, case: str) -> Path:
        if name.startswith("R_g"):
            return self.root / "pseudolabels" / name / f"{case}{layout.FILE_ENDING}"
        return self.root / "fused" / name / "E" / f"{case}{layout.FILE_ENDING}"


def _generation_key(name: str) -> Tuple[int, str]:
    """Order of label-set names: M0, g1_*, g2_*, ..., final."""
    if name == "M0":
        return 0, name
    if name == "final":
        return 10 ** 6, name
    m = re.match(r"(?:R_)?g(\d+)", name)
    return (int(m.group(1)) if m else 10 ** 5), name


def _find_raw_dir(root: Path, plan: dict, paths: Optional[NnUNetPaths]) -> Path:
    name = f"Dataset{int(plan['dataset_id']):03d}_{plan['dataset_name']}"
    candidates = []
    if paths is not None:
        candidates.append(Path(paths.raw) / name)
    if os.environ.get("nnUNet_raw"):
        candidates.append(Path(os.environ["nnUNet_raw"]) / name)
    # the run's prediction inputs are links to the experiment dataset's images
    for link in sorted((root / "inputs").glob("*/*" + layout.FILE_ENDING)):
        if link.is_symlink():
            target = Path(os.readlink(link))
            target = target if target.is_absolute() else (link.parent / target)
            candidates.append(target.parent.parent)
            break
    for c in candidates:
        if (c / "dataset.json").is_file() and c.name == name:
            return c
    raise InputError(f"{root}: experiment dataset {name} not found (looked in {[str(c) for c in candidates]}); "
                     "pass --nnunet-dir or export nnUNet_raw / nnUNet_preprocessed")


def load_run(run_dir: os.PathLike, paths: Optional[NnUNetPaths] = None) -> RunData:
    """Read a run folder's plan and find its datasets and label sets.

    Raises:
        InputError: no ``plan.json``, or the experiment dataset cannot be found.
    """
    root = Path(run_dir).resolve()
    plan = read_json(root / "plan.json")
    if plan is None:
        raise InputError(f"{root}: no plan.json; is this a run folder (atso_nnunet_run --run-dir)?")
    raw_dir = _find_raw_dir(root, plan, paths)
    if paths is not None:
        pre = Path(paths.preprocessed) / raw_dir.name
    elif os.environ.get("nnUNet_preprocessed"):
        pre = Path(os.environ["nnUNet_preprocessed"]) / raw_dir.name
    else:
        pre = raw_dir.parent.parent / "nnUNet_preprocessed" / raw_dir.name
    label_map = {int(k): int(v) for k, v in (plan.get("eval_label_map") or {}).items()}
    pl = sorted((p.name for p in (root / "pseudolabels").glob("R_g*") if p.is_dir()), key=_generation_key)
    ts = sorted((p.parent.name for p in (root / "fused").glob("*/E") if p.is_dir()), key=_generation_key)
    return RunData(root, plan, raw_dir, pre, label_map, pl, ts)


def _foreground(label: np.ndarray, label_map: Dict[int, int]) -> np.ndarray:
    """Binary organ mask: every foreground label after ``label_map`` (tumour counts as organ)."""
    out = label.copy()
    for src, dst in label_map.items():
        out[label == src] = dst
    return out > 0


def _voxel_ml(path: Path) -> float:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return float(np.prod(reader.GetSpacing())) / 1000.0


# --------------------------------------------------------------------------------------------
# (a) volumes
# --------------------------------------------------------------------------------------------
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
        tp, fp, fn = sum(self.tp), sum(self.fp), sum(self.fn)
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0

    @property
    def mean_dsc(self) -> float:
        d = [2 * t / (2 * t + p + n) if t + p + n else 1.0 for t, p, n in zip(self.tp, self.fp, self.fn)]
        return float(np.mean(d)) if d else float("nan")


def set_volumes(name: str, part: str, cases: Sequence[str], label_file: Callable[[str], Path],
                gt_file: Callable[[str], Optional[Path]], label_map: Dict[int, int]) -> SetVolumes:
    """One label set's volumes and overlap against ground truth, per case (cases missing either are skipped)."""
    sv = SetVolumes(name, part, [], [], [], [], [], [])
    for case in cases:
        f, g = label_file(case), gt_file(case)
        if not f.is_file() or g is None:
            continue
        ml = _voxel_ml(g)
        pred = read_array(f)[0] > 0
        gt = _foreground(read_array(g)[0], label_map)
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


# --------------------------------------------------------------------------------------------
# (b) overlays in the three views
# --------------------------------------------------------------------------------------------
def _view_slice(arr: np.ndarray, view: str, index: int) -> np.ndarray:
    return np.take(arr, index, axis=_SLICE_AXIS[view])


def _aspect(spacing_xyz: Sequence[float], view: str) -> float:
    """imshow aspect (row spacing / column spacing) of a (z, y, x) slice in ``view``."""
    sx, sy, sz = spacing_xyz
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[view]


def _centre(mask: np.ndarray) -> Tuple[int, int, int]:
    if not mask.any():
        return tuple(s // 2 for s in mask.shape)
    return tuple(int(round(c)) for c in ndimage.center_of_mass(mask))


def _draw(ax, image, gt, pred, aspect, title, window=_HU_WINDOW):
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, origin="lower",
              interpolation="nearest")
    for mask, colour in ((gt, "lime"), (pred, "red")):
        if mask is not None and mask.any() and not mask.all():
            ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=0.8)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def _informative_cases(run: RunData, cases: Sequence[str], names: Sequence[str], n: int) -> List[str]:
    """The ``n`` cases whose label sets overlap the ground truth most, then the largest label sets.

    An empty label map shows nothing about registration; one that overlaps (or at least exists)
    does. Ties keep the plan's order.
    """
    def score(case: str):
        gt = _foreground(read_array(run.gt_file(case))[0], run.label_map)
        labels = [read_array(run.label_set_file(name, case))[0] > 0 for name in names]
        return -sum(int((lab & gt).sum()) for lab in labels), -sum(int(lab.sum()) for lab in labels)

    return sorted(cases, key=lambda c: (score(c), list(cases).index(c)))[:n]


def plot_overlays(run: RunData, part: str, path: Path, n_cases: int = 2,
                  views: Sequence[str] = ("axial", "coronal", "sagittal")) -> Optional[Path]:
    """Ground truth (green) and label-set (red) contours, first and last set, ``n_cases`` cases."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = run.pseudo_label_sets if part == "R" else run.test_sets
    names = [names[0], names[-1]] if len(names) > 1 else list(names)
    cases = _informative_cases(run, [c for c in run.plan["reference" if part == "R" else "test"]
                                     if run.gt_file(c) and all(run.label_set_file(n, c).is_file() for n in names)],
                               names, n_cases)
    if not names or not cases:
        return None
    rows = [(c, n) for c in cases for n in names]
    fig, axes = plt.subplots(len(rows), len(views), figsize=(2.6 * len(views), 2.5 * len(rows)), squeeze=False)
    for r, (case, name) in enumerate(rows):
        image, geom = read_array(run.image_file(case))
        gt = _foreground(read_array(run.gt_file(case))[0], run.label_map)
        pred = read_array(run.label_set_file(name, case))[0] > 0
        centre = _centre(gt)
        for col, view in enumerate(views):
            i = centre[_SLICE_AXIS[view]]
            g, p = _view_slice(gt, view, i), _view_slice(pred, view, i)
            inter = (g & p).sum()
            dsc = 2 * inter / (g.sum() + p.sum()) if g.sum() + p.sum() else 1.0
            _draw(axes[r, col], _view_slice(image, view, i), g, p, _aspect(geom.spacing, view),
                  f"{case} {name}\n{view} slice {i} (slice DSC {100 * dsc:.0f}%)")
    fig.suptitle(f"{'pseudo-labels on R' if part == 'R' else 'predictions on E'}: ground truth green, "
                 f"labels red (array views of the original image)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# (b') what the students trained on: ingested pseudo-labels in the preprocessed spaces
# --------------------------------------------------------------------------------------------
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
    src = (run.root / "pseudolabels" / label_set).resolve()
    for marker in sorted((run.preprocessed_dir / "atso_pseudolabels" / data_identifier).glob("*/complete.json")):
        m = read_json(marker)
        if m and Path(m.get("pseudo_label_dir", "")).resolve() == src:
            return marker.parent
    return None


def ingested_cases(run: RunData, n_cases: int = 2) -> List[IngestedCase]:
    """The ingested pseudo-labels of the first and last ingested set, per view, against the ground truth."""
    import blosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from atso_nnunet.pseudolabels.ingest import seg_to_preprocessed

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
            cases = _informative_cases(run, [c for c in run.plan["reference"] if (cache / f"{c}_seg.b2nd").is_file()
                                             and run.gt_file(c) is not None], [label_set], n_cases)
            for case in cases:
                with open(image_dir / f"{case}.pkl", "rb") as f:
                    props = pickle.load(f)
                rw = pm.image_reader_writer_class()
                data, _ = rw.read_images([str(run.image_file(case))])
                gt_raw, _ = rw.read_seg(str(run.gt_file(case)))
                gt_raw = _foreground(gt_raw, run.label_map).astype(np.int16)
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
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


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
        i = _centre(it.gt)[0]  # nnU-Net 2D slices axis 0 of the transposed volume
        _draw(ax, it.image[i], it.gt[i], it.pseudo[i], 1.0,
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


# --------------------------------------------------------------------------------------------
# (c) training curves from nnU-Net's logs
# --------------------------------------------------------------------------------------------
_FLOAT = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"


@dataclass
class TrainingCurve:
    """One model's per-epoch values from nnU-Net's training log."""

    model: str
    view: str
    train_loss: List[float] = field(default_factory=list)
    val_loss: List[float] = field(default_factory=list)
    pseudo_dice: List[float] = field(default_factory=list)
    note: str = ""


def parse_training_log(text: str) -> Dict[str, List[float]]:
    """``train_loss``, ``val_loss`` and mean ``pseudo_dice`` per epoch from nnU-Net's log text."""
    out = {"train_loss": [], "val_loss": [], "pseudo_dice": []}
    for line in text.splitlines():
        body = line.split(": ", 1)[1] if re.match(r"^\d{4}-\d\d-\d\d", line) and ": " in line else line
        if body.startswith("train_loss "):
            out["train_loss"].append(float(re.findall(_FLOAT, body[len("train_loss"):])[0]))
        elif body.startswith("val_loss "):
            out["val_loss"].append(float(re.findall(_FLOAT, body[len("val_loss"):])[0]))
        elif body.startswith("Pseudo dice"):
            # "[0.51, 0.2]" or "[np.float32(0.51)]": the numbers inside the brackets, not the 32
            values = [float(v) for v in re.findall(r"(?<![\w.])" + _FLOAT + r"(?=\)|,|\])", body)]
            out["pseudo_dice"].append(float(np.mean(values)) if values else float("nan"))
    return out


def training_curves(run: RunData) -> List[TrainingCurve]:
    """Curves of every model folder ``models/<model>/nnUNet_results/*/<trainer>__<plans>__<c>/fold_*``."""
    curves = []
    for fold in sorted((run.root / "models").glob("*/nnUNet_results/*/*__*__*/fold_*"),
                       key=lambda p: (_generation_key(p.parents[3].name), str(p))):
        model = fold.parents[3].name
        plans = fold.parent.name.split("__")[1]
        view = plans.rsplit("_", 1)[-1]
        logs = sorted(fold.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
        c = TrainingCurve(model, view)
        for log in logs:
            for k, v in parse_training_log(log.read_text(errors="replace")).items():
                getattr(c, k).extend(v)
            text = log.read_text(errors="replace")
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


# --------------------------------------------------------------------------------------------
# (d) intensities after nnU-Net's normalisation
# --------------------------------------------------------------------------------------------
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
            gt = _foreground(read_array(gt_f)[0], run.label_map)
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
        style = dict(histtype="step", density=True, color=_ROLE_COLOURS[r.role], linewidth=1.4)
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


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------
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

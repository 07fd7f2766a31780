"""What the diagnosis reads of a run folder and its nnU-Net folders (:class:`RunData`)."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from atso_nnunet.run.rundir import RunDir
from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.io import read_json
from atso_nnunet.paths import NnUNetPaths

logger = logging.getLogger(__name__)

#: array axis sliced for each view of a (z, y, x) volume, and that view's (rows, columns) axes
SLICE_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
ROLE_COLOURS = {"labeled": "tab:blue", "reference": "tab:orange", "test": "tab:red"}
HU_WINDOW = (-160.0, 240.0)


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
        run = RunDir(self.root)
        folder = run.pseudo_labels(name) if name.startswith("R_g") else run.fused(name, "E")
        return folder / f"{case}{layout.FILE_ENDING}"


def generation_key(name: str) -> Tuple[int, str]:
    """Order of label-set names: M0, g1_*, g2_*, ..., final."""
    if name == "M0":
        return 0, name
    if name == "final":
        return 10 ** 6, name
    m = re.match(r"(?:R_)?g(\d+)", name)
    return (int(m.group(1)) if m else 10 ** 5), name


def _find_raw_dir(root: Path, plan: dict, paths: Optional[NnUNetPaths]) -> Path:
    name = layout.dataset_folder_name(plan["dataset_id"], plan["dataset_name"])
    candidates = []
    if paths is not None:
        candidates.append(Path(paths.raw) / name)
    if os.environ.get("nnUNet_raw"):
        candidates.append(Path(os.environ["nnUNet_raw"]) / name)
    # the run's prediction inputs are links to the experiment dataset's images
    for link in sorted(RunDir(root).inputs_root.glob("*/*" + layout.FILE_ENDING)):
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
    run = RunDir(root)
    pl = sorted((p.name for p in run.pseudo_labels_root.glob("R_g*") if p.is_dir()), key=generation_key)
    ts = sorted((p.parent.name for p in run.fused_root.glob("*/E") if p.is_dir()), key=generation_key)
    return RunData(root, plan, raw_dir, pre, label_map, pl, ts)


def foreground(label: np.ndarray, label_map: Dict[int, int]) -> np.ndarray:
    """Binary organ mask: every foreground label after ``label_map`` (tumour counts as organ)."""
    out = label.copy()
    for src, dst in label_map.items():
        out[label == src] = dst
    return out > 0


def voxel_ml(path: Path) -> float:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return float(np.prod(reader.GetSpacing())) / 1000.0

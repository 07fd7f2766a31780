"""MSD Task07 Pancreas -> nnU-Net raw source dataset ``Dataset802_MSDPancreas``.

The conversion itself is nnU-Net's own MSD converter
(:func:`nnunetv2.dataset_conversion.convert_MSD_dataset.convert_msd_dataset`): it copies the 3D
images with the ``_0000`` channel suffix, copies the labels and rewrites ``dataset.json``. This
module adds what a shared pipeline needs around it:

* input checks that name the problem (nnU-Net's converter only asserts);
* the dataset name ``MSDPancreas`` (nnU-Net would take ``Pancreas`` from the folder name): the
  converter is pointed at a link named ``Task<id>_MSDPancreas`` in a staging folder;
* atomicity: conversion happens in a staging ``nnUNet_raw`` next to ``raw_root`` and the
  finished dataset folder is renamed into place, so a half-converted dataset never carries the
  final name; a finished one is not converted again.

Labels: MSD Task07 labels are 0 background, 1 pancreas, 2 tumour ("cancer"). They are kept as
they are in the source dataset. ATSO's transfer experiment trains a one-class (pancreas) model
on NIH and scores the MSD cases with :data:`MSD_EVAL_LABEL_MAP` (``{2: 1}``): the tumour lies
inside the pancreas, so pancreas and tumour together count as pancreas (paper section 5.1, "we
only evaluate the pancreas segmentation accuracy on the MSD data").

MSD ``imagesTs`` (139 cases) has no labels; the paper's MSD reference and test sets are both
taken from the 281 labeled ``imagesTr`` cases (see ``plans/transfer/nih_to_msd.json``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.paths import NnUNetPaths, nnunet_environment

logger = logging.getLogger(__name__)

MSD_DATASET_ID = 802
MSD_DATASET_NAME = "MSDPancreas"
#: Ground-truth value -> value before scoring: tumour (2) counts as pancreas (1).
MSD_EVAL_LABEL_MAP = {2: 1}
_REQUIRED_JSON_KEYS = ("labels", "modality", "training", "test")


def _nifti_names(folder: Path) -> list:
    # MSD archives unpacked on macOS carry "._pancreas_001.nii.gz" resource files; nnU-Net skips them too
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith(".nii.gz") and not p.name.startswith((".", "_")))


def check_msd_task_folder(task_folder: Path) -> dict:
    """Check an unpacked MSD task folder before handing it to nnU-Net's converter.

    Returns:
        The task's ``dataset.json`` content.

    Raises:
        InputError: missing folders or files, a malformed ``dataset.json``, images without
            labels or labels without images.
    """
    task_folder = Path(task_folder)
    if not task_folder.is_dir():
        raise InputError(f"{task_folder}: MSD task folder not found (expected the unpacked Task07_Pancreas)")
    missing = [n for n in ("imagesTr", "labelsTr", "dataset.json") if not (task_folder / n).exists()]
    if missing:
        raise InputError(f"{task_folder}: not an MSD task folder, missing {', '.join(missing)}")
    try:
        dj = json.loads((task_folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{task_folder / 'dataset.json'}: cannot read it as JSON ({e})") from e
    absent = [k for k in _REQUIRED_JSON_KEYS if k not in dj]
    if absent:
        raise InputError(f"{task_folder / 'dataset.json'}: not in MSD format, missing key(s) {absent}")
    if len(dj["modality"]) != 1:
        raise InputError(f"{task_folder / 'dataset.json'}: expected one modality (CT), got {dj['modality']}")
    images = {n[: -len(".nii.gz")] for n in _nifti_names(task_folder / "imagesTr")}
    labels = {n[: -len(".nii.gz")] for n in _nifti_names(task_folder / "labelsTr")}
    if not images:
        raise InputError(f"{task_folder / 'imagesTr'}: no .nii.gz images")
    if images != labels:
        raise InputError(
            f"{task_folder}: imagesTr and labelsTr do not hold the same cases; images without label: "
            f"{sorted(images - labels)[:10]}, labels without image: {sorted(labels - images)[:10]}")
    return dj


def convert_msd(task_folder: Path, raw_root: Path, dataset_id: int = MSD_DATASET_ID,
                num_processes: int = 2) -> Path:
    """Convert MSD Task07 Pancreas into ``<raw_root>/Dataset<id>_MSDPancreas`` with nnU-Net's converter.

    Args:
        task_folder: the unpacked MSD ``Task07_Pancreas`` (``imagesTr``, ``labelsTr``,
            ``imagesTs``, ``dataset.json``).
        raw_root: ``nnUNet_raw``.
        dataset_id: target dataset id.
        num_processes: worker processes of nnU-Net's converter.

    Returns:
        The dataset folder. If it already holds a ``dataset.json`` it is returned unchanged.

    Raises:
        InputError: bad task folder, or ``dataset_id`` already used by another dataset name.
    """
    task_folder, raw_root = Path(task_folder).resolve(), Path(raw_root)
    name = layout.dataset_folder_name(dataset_id, MSD_DATASET_NAME)
    target = raw_root / name
    if (target / "dataset.json").is_file():
        logger.info("%s already converted, nothing to do", target)
        return target
    taken = sorted(p.name for p in raw_root.glob(layout.dataset_prefix(dataset_id) + "*") if p.name != name) \
        if raw_root.is_dir() else []
    if taken:
        raise InputError(f"dataset id {dataset_id} is already used by {taken} in {raw_root}; "
                         f"pass another --dataset-id")
    source_json = check_msd_task_folder(task_folder)

    raw_root.mkdir(parents=True, exist_ok=True)
    staging = raw_root / f".staging_{name}"
    if staging.exists():
        shutil.rmtree(staging)
    # the converter takes the dataset name from the folder name (Task<id>_<Name>) and refuses
    # a folder without imagesTs: give it a staged folder of links
    task_link = staging / "source" / f"Task{dataset_id:03d}_{MSD_DATASET_NAME}"
    task_link.mkdir(parents=True)
    for entry in ("imagesTr", "labelsTr", "dataset.json"):
        os.symlink(task_folder / entry, task_link / entry)
    if (task_folder / "imagesTs").is_dir():
        os.symlink(task_folder / "imagesTs", task_link / "imagesTs")
    else:
        (task_link / "imagesTs").mkdir()
    paths = NnUNetPaths(staging / "nnUNet_raw", staging / "nnUNet_preprocessed", staging / "nnUNet_results")
    paths.makedirs()

    # imported here: importing nnU-Net costs seconds, and only this function needs it
    from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset

    logger.info("converting %s with nnU-Net's MSD converter (%d cases)", task_folder, len(source_json["training"]))
    with nnunet_environment(paths):
        convert_msd_dataset(str(task_link), overwrite_target_id=dataset_id, num_processes=num_processes)

    staged = paths.raw / name
    n_images = len(_nifti_names(staged / layout.IMAGES_TR))
    n_labels = len(_nifti_names(staged / layout.LABELS_TR))
    if n_images != n_labels or n_labels != len(_nifti_names(task_folder / "labelsTr")):
        raise InputError(f"{staged}: nnU-Net's converter wrote {n_images} images and {n_labels} labels "
                         f"from {task_folder}; check the task folder")
    os.replace(staged, target)
    shutil.rmtree(staging)
    logger.info("wrote %s (%d labeled cases; labels 0 background, 1 pancreas, 2 tumour)", target, n_labels)
    return target

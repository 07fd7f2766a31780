"""The raw-dataset layout atso_nnunet uses on top of nnU-Net's.

An *experiment dataset* is an ordinary nnU-Net raw dataset (``nnUNet_raw/DatasetXXX_Name``) whose
``imagesTr``/``labelsTr`` hold only the labeled set S, so nnU-Net's fingerprint, planning and
integrity check see labeled cases only. The other sets sit in folders nnU-Net ignores::

    DatasetXXX_Name/
      dataset.json        numTraining = |S|; "atso": {"reference": [...], "test": [...]}
      imagesTr/  <case>_0000.nii.gz      labeled set S
      labelsTr/  <case>.nii.gz
      imagesRef/ <case>_0000.nii.gz      unlabeled reference set R
      imagesTs/  <case>_0000.nii.gz      test set E (never trained on, never pseudo-labelled)
      labelsRef/ <case>.nii.gz           ground truth of R, research runs only (optional)
      labelsTs/  <case>.nii.gz           ground truth of E, for evaluation only (optional)

A *source dataset* (what a converter or the generator writes) is any nnU-Net raw dataset; its
cases may sit in any of these folders.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from atso_nnunet.errors import InputError
from atso_nnunet.limits import DATASET_ID_MAX, DATASET_ID_MIN

IMAGES_TR = "imagesTr"
LABELS_TR = "labelsTr"
IMAGES_REF = "imagesRef"
LABELS_REF = "labelsRef"
IMAGES_TS = "imagesTs"
LABELS_TS = "labelsTs"

FILE_ENDING = ".nii.gz"
# File endings of the image formats nnU-Net reads (its readers' supported_file_endings), longest first.
IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd", ".tiff", ".tif", ".png", ".bmp")


def foreground_labels(labels: Mapping[str, Any]) -> Dict[str, int]:
    """The foreground entries of a dataset.json ``labels`` (name -> value, by value): neither the
    background (0) nor nnU-Net's ``ignore`` label."""
    return dict(sorted(((k, int(v)) for k, v in labels.items() if k != "ignore" and int(v) > 0), key=lambda kv: kv[1]))


def dataset_prefix(dataset_id: int) -> str:
    """``Dataset<id:03d>_``: how every raw dataset folder of this id starts (nnU-Net's convention).

    Raises:
        InputError: the id is outside nnU-Net's 1-999 (the range plans allow too).
    """
    if isinstance(dataset_id, bool) or not DATASET_ID_MIN <= int(dataset_id) <= DATASET_ID_MAX:
        raise InputError(f"dataset id {dataset_id!r}: nnU-Net dataset ids are {DATASET_ID_MIN} to {DATASET_ID_MAX} "
                         "(three digits; plans allow the same range): give another --dataset-id")
    return f"Dataset{int(dataset_id):03d}_"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset<id:03d>_<name>``, nnU-Net's raw dataset folder name."""
    return dataset_prefix(dataset_id) + name
CHANNEL = "_0000"

# image folder -> ground-truth folder
IMAGE_TO_LABEL_DIR = {IMAGES_TR: LABELS_TR, IMAGES_REF: LABELS_REF, IMAGES_TS: LABELS_TS}
# role in an experiment -> image folder
ROLE_DIRS = {"labeled": IMAGES_TR, "reference": IMAGES_REF, "test": IMAGES_TS}


def image_path(dataset_dir: Path, folder: str, case: str, channel: int = 0, ending: str = FILE_ENDING) -> Path:
    """``<dataset>/<folder>/<case>_000<channel><ending>``."""
    return Path(dataset_dir) / folder / f"{case}_{channel:04d}{ending}"


def label_path(dataset_dir: Path, folder: str, case: str, ending: str = FILE_ENDING) -> Path:
    """``<dataset>/<folder>/<case><ending>`` (``folder`` is a labels folder)."""
    return Path(dataset_dir) / folder / f"{case}{ending}"


def case_ids_in(folder: Path, ending: str = FILE_ENDING, channel_suffix: str = CHANNEL) -> list:
    """Sorted case ids of the channel-0 images in an images folder (empty if it is missing)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    tail = channel_suffix + ending
    return sorted(p.name[: -len(tail)] for p in folder.iterdir() if p.name.endswith(tail))


def label_ids_in(folder: Path, ending: str = FILE_ENDING) -> list:
    """Sorted case ids of the label files in a labels folder (empty if it is missing)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(ending)] for p in folder.iterdir()
                  if p.name.endswith(ending) and not p.name.startswith("."))


def ending_mismatch(folder: Path, ending: str) -> Optional[str]:
    """When ``folder`` holds image files, none ending in ``ending`` but some in another image ending:
    a message naming dataset.json's ``file_ending`` and the value to set (None otherwise).

    A dataset.json whose ``file_ending`` does not match its files makes every case invisible; the
    counts that follow (``numTraining``, case ids) would blame the wrong thing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    names = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    if any(n.endswith(ending) for n in names):
        return None
    found = {}
    for n in names:
        other = next((e for e in IMAGE_ENDINGS if n.endswith(e)), None)
        if other is not None:
            found.setdefault(other, []).append(n)
    if not found:
        return None
    other, files = max(found.items(), key=lambda kv: len(kv[1]))
    return (f"dataset.json file_ending is {ending!r} but {folder} holds {len(files)} image file(s) ending in "
            f"{other!r} (e.g. {sorted(files)[0]}) and none ending in {ending!r}: set \"file_ending\": \"{other}\" "
            f"in {folder.parent / 'dataset.json'}")

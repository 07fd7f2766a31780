"""Which command builds which source dataset (for error messages about unconverted sources)."""
from __future__ import annotations

import re
from typing import Optional

from atso_nnunet.data.msd import MSD_DATASET_NAME
from atso_nnunet.data.nih import NIH_DATASET_NAME

_SOURCE_RE = re.compile(r"^Dataset(\d{3})_(\w+)$")


def conversion_command(source_dataset_name: str) -> Optional[str]:
    """The command line that creates a converted source dataset under ``$nnUNet_raw``.

    (``atso_nnunet_convert`` writes into ``$nnUNet_raw``; add ``--nnunet-dir DIR`` for ``DIR/nnUNet_raw``.)

    Args:
        source_dataset_name: ``Dataset801_NIHPancreas``, ``Dataset802_MSDPancreas`` (any id).

    Returns:
        The command (with placeholders for the downloaded data), or None for a dataset that no
        atso_nnunet converter writes.

    Example:
        >>> conversion_command("Dataset802_MSDPancreas")
        'atso_nnunet_convert msd --task-folder /path/to/Task07_Pancreas --dataset-id 802'
    """
    m = _SOURCE_RE.match(source_dataset_name)
    if m is None:
        return None
    dataset_id, name = int(m.group(1)), m.group(2)
    if name == NIH_DATASET_NAME:
        return ("atso_nnunet_convert nih --dicom-root /path/to/TCIA/Pancreas-CT "
                f"--labels-root /path/to/TCIA_pancreas_labels-02-05-2017 --dataset-id {dataset_id}")
    if name == MSD_DATASET_NAME:
        return f"atso_nnunet_convert msd --task-folder /path/to/Task07_Pancreas --dataset-id {dataset_id}"
    return None

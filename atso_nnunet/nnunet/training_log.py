"""The one parser of nnU-Net's ``training_log_*.txt``: per-epoch losses, pseudo Dice and epoch times.

Used by the dry run (seconds per iteration), the diagnosis (training curves) and the plateau screen
(``benchmarks/screen_plateau.py``). The log's lines look like (nnunetv2 2.8.1)::

    2026-11-29 21:03:01.100000: Epoch 0
    2026-11-29 21:03:08.094864: train_loss -0.512
    2026-11-29 21:03:08.094864: val_loss -0.61
    2026-11-29 21:03:08.094864: Pseudo dice [np.float32(0.4514), np.float32(0.2)]
    2026-11-29 21:03:08.094864: Epoch time: 6.99 s
"""
from __future__ import annotations

import datetime
import re
from typing import Dict, List

import numpy as np

_FLOAT = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
_EPOCH_TIME = re.compile(r"Epoch time: ([0-9.]+) s")
_EPOCH_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+): Epoch (\d+)\s*$", re.M)


def parse_training_log(text: str) -> Dict[str, List[float]]:
    """``train_loss``, ``val_loss`` and mean ``pseudo_dice`` per epoch from nnU-Net's log text."""
    out: Dict[str, List[float]] = {"train_loss": [], "val_loss": [], "pseudo_dice": []}
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


def training_log_epochs(texts: List[str]) -> Dict[str, List[float]]:
    """:func:`parse_training_log` over the logs of one training, oldest first, by epoch number.

    A training continued with ``nnUNetv2_train --c`` writes a new log that starts again at the epoch
    of its checkpoint, so epochs after that checkpoint appear twice; the later log's values replace
    the earlier ones, and the result has one value per epoch, in epoch order. Values with no
    ``Epoch N`` line between them count as consecutive epochs.
    """
    by_epoch: Dict[int, Dict[str, float]] = {}
    for text in texts:
        epoch = max(by_epoch) if by_epoch else -1
        for line in text.splitlines():
            start = _EPOCH_START.match(line)
            if start:
                epoch = int(start.group(2))
                by_epoch[epoch] = {}
                continue
            for key, values in parse_training_log(line).items():
                if values:
                    if key in by_epoch.get(epoch, {}):  # no Epoch line between two values: the next epoch
                        epoch += 1
                    by_epoch.setdefault(epoch, {})[key] = values[0]
    out: Dict[str, List[float]] = {"train_loss": [], "val_loss": [], "pseudo_dice": []}
    for epoch in sorted(by_epoch):
        for key, value in by_epoch[epoch].items():
            out[key].append(value)
    return out


def epoch_seconds(text: str) -> List[float]:
    """Wall-clock seconds of each epoch in an nnU-Net ``training_log_*.txt``.

    An epoch lasts from its ``Epoch N`` line to the next epoch's line: that includes what nnU-Net
    does after its ``Epoch time: X s`` line (checkpoint on a new best, the progress plot), which for
    small networks on a GPU is most of the epoch (0.5 s logged vs 1.3 s wall on an H200,
    docs/lab/benchmarks.md "On a GPU"). The last epoch of a log has no next line and is left out; a
    log with a single epoch falls back on its logged ``Epoch time``. A gap between epochs that are
    not consecutive (a restart, ``--c``) is not an epoch.
    """
    starts = [(int(m.group(2)), datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f"))
              for m in _EPOCH_START.finditer(text)]
    logged = [float(m.group(1)) for m in _EPOCH_TIME.finditer(text)]
    walls = [(t1 - t0).total_seconds() for (e0, t0), (e1, t1) in zip(starts, starts[1:])
             if e1 == e0 + 1 and t1 >= t0]
    return walls if walls else logged

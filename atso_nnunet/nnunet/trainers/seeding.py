"""Per-epoch seeding: what makes a training resumed with ``--c`` end with the same weights.

nnU-Net continues a training from ``checkpoint_latest.pth`` (network, optimizer, logger, epoch),
but not from the random state the data loader and the augmentation were in: seeded once at the
start, a resumed training would draw other patches and other augmentations from then on. With a
training seed, :class:`~atso_nnunet.nnunet.trainers.base.ATSOTrainer` therefore reseeds python's
``random``, numpy's global generator and torch at the start of every epoch from
``(seed, epoch)`` alone (:func:`seed_epoch`): an epoch draws the same whether the process has
trained every epoch before it or has just loaded a checkpoint. No random state needs to travel
with the checkpoint.

What this covers: the single-process loader (``nnUNet_n_proc_DA=0``, which the driver sets on a
CPU): nnU-Net's ``nnUNetDataLoader`` samples cases and patches from numpy's global generator and
keeps no position between batches; the augmentation (batchgeneratorsv2) draws from numpy and
torch, and two of its transforms (cascade only) shuffle a list they own in place, which
:func:`reset_channel_orders` puts back at every epoch. With augmentation worker processes
(``nnUNet_n_proc_DA`` > 0) the batches come from the workers' own generators and in the order
they finish (``NonDetMultiThreadedAugmenter``): such a training is not reproducible, resumed or
not. On a GPU, cuDNN's non-deterministic kernels add their own differences.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: a 32-bit value that depends only on ``seed`` and ``epoch``."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def seed_all(value: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (every device) with ``value``."""
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def seed_epoch(seed: int, epoch: int) -> int:
    """Seed every generator for ``epoch`` of a training seeded with ``seed``; returns the epoch's seed."""
    value = epoch_seed(seed, epoch)
    seed_all(value)
    return value


def reset_channel_orders(loader) -> int:
    """Put back the channel lists the cascade augmentations shuffle in place; returns how many.

    ``ApplyRandomBinaryOperatorTransform`` and ``RemoveRandomConnectedComponentFromOneHotEncodingTransform``
    (batchgeneratorsv2) shuffle their own ``channel_idx`` list at every sample, so its order after
    an epoch depends on every epoch before. nnU-Net builds both lists in ascending order
    (``list(range(-n, 0))``): sorting restores what a fresh process starts with.

    Args:
        loader: nnU-Net's training loader (a ``SingleThreadedAugmenter``, or anything with a
            ``data_loader.transforms``); loaders whose transforms live in worker processes are
            left alone.
    """
    transforms = getattr(getattr(loader, "data_loader", None), "transforms", None)
    count = 0
    stack = [transforms] if transforms is not None else []
    while stack:
        t = stack.pop()
        stack.extend(getattr(t, "transforms", None) or [])
        inner = getattr(t, "transform", None)
        if inner is not None:
            stack.append(inner)
        channels = getattr(t, "channel_idx", None)
        if isinstance(channels, list):
            channels.sort()
            count += 1
    return count

"""Benchmark: samples per second of the semi-supervised loader vs nnU-Net's stock loader.

Same synthetic experiment as ``bench_ingest.py`` (axial view, nnU-Net's planned 2D patch and
batch size). Each loader serves the same number of cases of the same size:

- ``stock``: nnU-Net's ``nnUNetDataLoader`` over ``nnUNetDatasetBlosc2`` with N labeled cases;
- ``semi``: the same loader over :class:`~atso_nnunet.nnunet.trainers.semi.SemiSupervisedDataset`,
  N/2 labeled + N/2 pseudo-labelled cases (uniform sampling, the trainer's default);
- ``semi-fraction``: :class:`~atso_nnunet.nnunet.trainers.semi.FixedFractionDataLoader`, labeled
  fraction 0.5, same cases.

Measured without augmentation (loading + cropping: where the loaders differ) and with nnU-Net's
training augmentation, single-threaded. The loaders' batches are interleaved one by one and the
median over rounds is reported (rates, and each loader's rate relative to ``stock`` per round),
which damps the noise of a shared machine.

Usage::

    .venv/bin/python benchmarks/bench_loader.py --cases 10 --shape 96 96 64 --rounds 5 --batches 20
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from atso_nnunet.paths import nnunet_environment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import EXPERIMENT_ID, EXPERIMENT_NAME, prepare  # noqa: E402

logger = logging.getLogger("bench_loader")
NAME = f"Dataset{EXPERIMENT_ID}_{EXPERIMENT_NAME}"


def build(paths, roles, pseudo: Path, augment: bool):
    """The three loaders (stock, semi, semi-fraction) and the batch size."""
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from atso_nnunet.pseudolabels.ingest import ingest_pseudolabels
    from atso_nnunet.nnunet.trainers.semi import FixedFractionDataLoader, SemiSupervisedDataset

    plans = json.loads((paths.preprocessed / NAME / "ATSOPlans_axial.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((paths.preprocessed / NAME / "dataset.json").read_text())
    with nnunet_environment(paths):
        trainer = nnUNetTrainer(plans, "2d", "all", dataset_json, torch.device("cpu"))
        patch = trainer.configuration_manager.patch_size
        initial_patch, transforms = patch, None
        if augment:
            rotation, dummy_2d, initial_patch, mirror_axes = \
                trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
            transforms = trainer.get_training_transforms(
                patch, rotation, trainer._get_deep_supervision_scales(), mirror_axes, dummy_2d,
                use_mask_for_norm=trainer.configuration_manager.use_mask_for_norm, is_cascaded=False,
                foreground_labels=trainer.label_manager.foreground_labels, regions=None, ignore_label=None)
        half = len(roles["labeled"]) // 2
        result = ingest_pseudolabels(paths, EXPERIMENT_ID, "ATSOPlans_axial", "2d", pseudo,
                                     cases=roles["reference"][:half])
    folder = str(paths.preprocessed / NAME / trainer.configuration_manager.data_identifier)
    stock_ds = nnUNetDatasetBlosc2(folder, list(roles["labeled"]))
    semi_ds = SemiSupervisedDataset(nnUNetDatasetBlosc2(folder, list(roles["labeled"][:half])), result.image_dir,
                                    result.cache_dir, result.cases)
    kw = dict(oversample_foreground_percent=trainer.oversample_foreground_percent, transforms=transforms)
    b = trainer.configuration_manager.batch_size
    loaders = {
        "stock": nnUNetDataLoader(stock_ds, b, initial_patch, patch, trainer.label_manager, **kw),
        "semi": nnUNetDataLoader(semi_ds, b, initial_patch, patch, trainer.label_manager, **kw),
        "semi-fraction": FixedFractionDataLoader(semi_ds, b, initial_patch, patch, trainer.label_manager,
                                                 labeled_fraction=0.5, **kw),
    }
    return loaders, b, len(stock_ds.identifiers), len(semi_ds.identifiers)


def measure(loaders, batch_size: int, rounds: int, batches: int) -> dict:
    """Median over rounds of samples/s per loader, and of each loader's rate relative to ``stock``.

    Batches of the loaders are interleaved one by one (in rotating order), so a load change on a
    shared machine hits all loaders alike.
    """
    torch.set_num_threads(1)
    for dl in loaders.values():  # warm-up: open files, fill the page cache
        next(dl)
    names = list(loaders)
    rates = {k: [] for k in loaders}
    for r in range(rounds):
        np.random.seed(r)
        spent = dict.fromkeys(names, 0.0)
        for i in range(batches):
            k = (r * batches + i) % len(names)
            for name in names[k:] + names[:k]:
                t0 = time.perf_counter()
                next(loaders[name])
                spent[name] += time.perf_counter() - t0
        for name in names:
            rates[name].append(batches * batch_size / spent[name])
    out = {k: statistics.median(v) for k, v in rates.items()}
    out["ratio"] = {k: statistics.median(a / b for a, b in zip(v, rates["stock"])) for k, v in rates.items()}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10, help="cases per loader (and labeled / reference cases made)")
    p.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64), metavar=("X", "Y", "Z"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", type=int, default=20, help="batches per loader and round")
    p.add_argument("--processes", type=int, default=2, help="for the (untimed) planning")
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one, deleted)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    rows = []
    try:
        paths, roles, pseudo = prepare(work, args.cases, args.shape, args.processes)
        for augment in (False, True):
            loaders, b, n_stock, n_semi = build(paths, roles, pseudo, augment)
            rates = measure(loaders, b, args.rounds, args.batches)
            rows.append((augment, b, rates))
            print(f"augmentation {'nnU-Net training' if augment else 'none'}: batch {b}, {n_stock} vs {n_semi} cases")
            for k in loaders:
                print(f"  {k:14s} {rates[k]:8.1f} samples/s  ({rates['ratio'][k]:.3f}x stock, median of rounds)")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.markdown:
        print("\n| augmentation | batch | stock (samples/s) | semi | semi / stock | semi-fraction | fraction / stock |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for augment, b, r in rows:
            print(f"| {'nnU-Net training' if augment else 'none'} | {b} | {r['stock']:.1f} | {r['semi']:.1f} | "
                  f"{r['ratio']['semi']:.3f}x | {r['semi-fraction']:.1f} | {r['ratio']['semi-fraction']:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

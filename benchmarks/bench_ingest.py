"""Benchmark: one generation's pseudo-labels into all three views, ATSO ingestion vs nnU-Net's recipe.

Both sides start from the same synthetic experiment dataset (labeled set S in ``imagesTr``,
reference set R in ``imagesRef``) already planned and preprocessed for the three views, as the
ATSO driver leaves it, and from the same folder of pseudo-labels for R (here: R's ground truth).

- ATSO: :func:`atso_nnunet.pseudolabels.ingest.ingest_pseudolabels` for each view (label maps only; the
  images were preprocessed once per experiment, without labels).
- nnU-Net's manual recipe: a new raw dataset with R's images and the pseudo-labels as
  ``imagesTr`` / ``labelsTr`` (symlinks, so its raw copy costs no disk), then fingerprint + plan +
  preprocess for the three views (the same view planners). The recipe is given only the
  pseudo-labelled cases; a real recipe also re-preprocesses S, so this favours the recipe.

Prints wall times and disk use; ``--markdown`` prints a table for docs/lab/benchmarks.md.

Usage::

    .venv/bin/python benchmarks/bench_ingest.py --cases 10 --shape 96 96 64 --processes 2
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from atso_nnunet.data import layout
from atso_nnunet.io import write_array
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.views import VIEWS, plans_identifier

logger = logging.getLogger("bench_ingest")

EXPERIMENT_ID, EXPERIMENT_NAME = 995, "BenchSemi"
RECIPE_ID, RECIPE_NAME = 996, "BenchRecipe"


def disk_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed, not counted)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = Path(root) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def make_experiment(paths: NnUNetPaths, n_labeled: int, n_reference: int, shape_xyz) -> Dict[str, List[str]]:
    """Write Dataset995_BenchSemi (S in imagesTr, R in imagesRef + labelsRef) of synthetic CT cases."""
    from atso_nnunet.data.synthetic import SyntheticConfig, generate_case

    ds = Path(paths.raw) / f"Dataset{EXPERIMENT_ID}_{EXPERIMENT_NAME}"
    cfg = SyntheticConfig(domain="A", shape=tuple(shape_xyz), seed=0)
    if (ds / "dataset.json").is_file():  # --work reused: keep the cases already written
        dj = json.loads((ds / "dataset.json").read_text())
        return {"labeled": layout.case_ids_in(ds / layout.IMAGES_TR), "reference": dj["atso"]["reference"]}
    roles = {"labeled": [], "reference": []}
    for i in range(n_labeled + n_reference):
        case = f"bench_{i:04d}"
        role = "labeled" if i < n_labeled else "reference"
        image, label, geometry = generate_case(cfg, i)
        img_dir = layout.ROLE_DIRS[role]
        write_array(image, geometry, layout.image_path(ds, img_dir, case))
        write_array(label, geometry, layout.label_path(ds, layout.IMAGE_TO_LABEL_DIR[img_dir], case))
        roles[role].append(case)
    dj = {"name": EXPERIMENT_NAME, "channel_names": {"0": "CT"}, "labels": cfg.labels, "numTraining": n_labeled,
          "file_ending": layout.FILE_ENDING, "atso": {"reference": roles["reference"], "test": []}}
    (ds / "dataset.json").write_text(json.dumps(dj, indent=2))
    return roles


def prepare(work: Path, n_cases: int, shape_xyz, processes: int):
    """The experiment dataset, planned and preprocessed for three views (untimed set-up)."""
    from atso_nnunet.nnunet.planning import plan_and_preprocess

    paths = NnUNetPaths.under(work)
    paths.makedirs()
    t0 = time.monotonic()
    roles = make_experiment(paths, n_cases, n_cases, shape_xyz)
    t_gen = time.monotonic() - t0
    t0 = time.monotonic()
    plan_and_preprocess(paths, EXPERIMENT_ID, VIEWS, "2d", num_processes=processes, verify=False)
    t_plan = time.monotonic() - t0
    pseudo = work / "pseudo_labels_gen1"
    pseudo.mkdir(exist_ok=True)
    raw = Path(paths.raw) / f"Dataset{EXPERIMENT_ID}_{EXPERIMENT_NAME}"
    for c in roles["reference"]:
        shutil.copy2(raw / layout.LABELS_REF / f"{c}.nii.gz", pseudo / f"{c}.nii.gz")
    logger.info("set-up: %d+%d cases generated in %.1f s, planned + preprocessed (3 views, with the "
                "unlabeled images) in %.1f s", n_cases, n_cases, t_gen, t_plan)
    return paths, roles, pseudo


def run_atso(paths: NnUNetPaths, pseudo: Path, processes: int) -> dict:
    """Ingest into the three views in one pass (the driver's call), then again (cache hit)."""
    from atso_nnunet.pseudolabels.ingest import ingest_pseudolabels_views

    plans = [plans_identifier(v) for v in VIEWS]
    t0 = time.monotonic()
    results = ingest_pseudolabels_views(paths, EXPERIMENT_ID, plans, "2d", pseudo, num_processes=processes)
    wall = time.monotonic() - t0
    t0 = time.monotonic()
    again = ingest_pseudolabels_views(paths, EXPERIMENT_ID, plans, "2d", pseudo, num_processes=processes)
    wall_again = time.monotonic() - t0
    if not all(r.reused for r in again.values()):
        raise RuntimeError("second ingestion was not served from the cache")
    disk = sum(disk_bytes(r.cache_dir) for r in results.values())
    for r in results.values():  # the next measurement starts from an empty cache
        shutil.rmtree(r.cache_dir)
    return {"wall_s": wall, "wall_cached_s": wall_again, "disk": disk}


def run_recipe(paths: NnUNetPaths, roles, pseudo: Path, processes: int) -> dict:
    from atso_nnunet.nnunet.planning import plan_and_preprocess

    src = Path(paths.raw) / f"Dataset{EXPERIMENT_ID}_{EXPERIMENT_NAME}"
    ds = Path(paths.raw) / f"Dataset{RECIPE_ID}_{RECIPE_NAME}"
    t0 = time.monotonic()
    for c in roles["reference"]:
        for target, link in ((layout.image_path(src, layout.IMAGES_REF, c), layout.image_path(ds, layout.IMAGES_TR, c)),
                             (pseudo / f"{c}.nii.gz", layout.label_path(ds, layout.LABELS_TR, c))):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target.resolve())
    dj = json.loads((src / "dataset.json").read_text())
    dj.update(name=RECIPE_NAME, numTraining=len(roles["reference"]))
    dj.pop("atso", None)
    (ds / "dataset.json").write_text(json.dumps(dj, indent=2))
    plan_and_preprocess(paths, RECIPE_ID, VIEWS, "2d", num_processes=processes, verify=False, unlabeled_folders=())
    wall = time.monotonic() - t0
    return {"wall_s": wall, "disk": disk_bytes(Path(paths.preprocessed) / ds.name) + disk_bytes(ds)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10, help="labeled cases and reference (pseudo-labelled) cases each")
    p.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64), metavar=("X", "Y", "Z"))
    p.add_argument("--processes", type=int, default=2, help="worker processes on both sides")
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one, deleted)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        paths, roles, pseudo = prepare(work, args.cases, args.shape, args.processes)
        atso = run_atso(paths, pseudo, 1)
        atso_pool = run_atso(paths, pseudo, args.processes)
        recipe = run_recipe(paths, roles, pseudo, args.processes)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    speedup = recipe["wall_s"] / atso["wall_s"]
    disk = atso["disk"] / recipe["disk"]
    print(f"cases: {args.cases} pseudo-labelled (+{args.cases} labeled, untouched), shape (x, y, z) "
          f"{tuple(args.shape)}, 3 views")
    print(f"ATSO ingestion, in-process:         {atso['wall_s']:.2f} s, {atso['disk'] / 2**20:.2f} MiB "
          f"(again, from the cache: {atso['wall_cached_s']:.3f} s)")
    print(f"ATSO ingestion, {args.processes} spawned workers:   {atso_pool['wall_s']:.2f} s")
    print(f"nnU-Net recipe, {args.processes} processes:        {recipe['wall_s']:.2f} s, "
          f"{recipe['disk'] / 2**20:.2f} MiB")
    print(f"speed-up {speedup:.1f}x (target >= 10x), disk {100 * disk:.1f}% of the recipe's (target <= 15%)")
    if args.markdown:
        print("\n| | wall (s) | disk (MiB) |\n|---|---:|---:|")
        print(f"| ATSO ingestion, 3 views, in-process | {atso['wall_s']:.2f} | {atso['disk'] / 2**20:.2f} |")
        print(f"| ATSO ingestion, 3 views, {args.processes} spawned workers | {atso_pool['wall_s']:.2f} | "
              f"{atso_pool['disk'] / 2**20:.2f} |")
        print(f"| ATSO ingestion again (cache hit) | {atso['wall_cached_s']:.3f} | 0 |")
        print(f"| nnU-Net recipe: fingerprint + plan + preprocess, 3 views, {args.processes} processes | "
              f"{recipe['wall_s']:.2f} | {recipe['disk'] / 2**20:.2f} |")
        print(f"| ATSO / recipe | {speedup:.1f}x faster | {100 * disk:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

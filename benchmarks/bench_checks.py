"""Benchmark: the dataset check with and without its voxel pass.

Times :func:`atso_nnunet.data.checks.check_raw_dataset` twice per dataset, headers only
(``check_voxels=False``) and with the voxel pass (the default, what the driver's pre-flight runs:
every file's gzip stream read to its end, NaN/Inf of float images, label values):

1. the synthetic demo source (plan ``synthetic/10pct``: 18 domain-A cases of 64 x 64 x 24);
2. one full-size CT-like case of 512 x 512 x 300 voxels (int16 image + uint8 label), written by
   the synthetic generator (domain A) as an nnU-Net raw dataset.

Each figure is the best of ``--repeat`` runs (the machine is shared). Prints a markdown table.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_checks.py --work /tmp/bench_checks
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, List

from atso_nnunet.data.checks import check_raw_dataset
from atso_nnunet.data.synthetic import SyntheticConfig, write_source_dataset

PLAN = Path(__file__).resolve().parents[1] / "plans" / "synthetic" / "10pct.json"


def best_of(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def dataset_size_mib(ds: Path) -> float:
    return sum(p.stat().st_size for p in ds.rglob("*.nii.gz")) / 2 ** 20


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (datasets are kept for reruns)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--full-shape", type=int, nargs=3, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    raw = args.work / "nnUNet_raw"

    spec = dict(json.loads(PLAN.read_text())["synthetic"]["Dataset980_SyntheticA"])
    n_cases = spec.pop("n_cases")
    synth = raw / "Dataset980_SyntheticA"
    if not synth.is_dir():
        write_source_dataset(raw, 980, "SyntheticA", n_cases, SyntheticConfig(**spec))
    full = raw / "Dataset989_FullCT"
    if not full.is_dir():
        t0 = time.perf_counter()
        write_source_dataset(raw, 989, "FullCT", 1, SyntheticConfig(domain="A", shape=tuple(args.full_shape), seed=0))
        print(f"# wrote the {'x'.join(map(str, args.full_shape))} case in {time.perf_counter() - t0:.0f} s")

    rows = []
    for label, ds, n in ((f"synthetic demo source ({n_cases} cases, {'x'.join(map(str, spec['shape']))})", synth,
                          n_cases),
                         (f"one CT case {'x'.join(map(str, args.full_shape))} (int16 + uint8 label)", full, 1)):
        headers = best_of(args.repeat, lambda: check_raw_dataset(ds, check_voxels=False))
        voxels = best_of(args.repeat, lambda: check_raw_dataset(ds))
        rows.append((label, dataset_size_mib(ds), headers, voxels, n))
    print(f"# {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}; best of {args.repeat}")
    print("| dataset | files on disk (MiB) | headers + label values (s) | with voxel pass (s) "
          "| voxel pass per case (s) |")
    print("|---|---:|---:|---:|---:|")
    for label, mib, headers, voxels, n in rows:
        print(f"| {label} | {mib:.1f} | {headers:.2f} | {voxels:.2f} | {(voxels - headers) / n:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

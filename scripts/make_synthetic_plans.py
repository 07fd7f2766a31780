"""Write plans/synthetic/*.json: the paper's protocols mirrored on the synthetic generator.

    python scripts/make_synthetic_plans.py [--out plans/synthetic]

NIH-like (domain A) 10% / 20% labeled: the first fold of the sorted ids is the test set (as RSTN
splits NIH), the rest is training; the labeled cases are drawn with a recorded seed. Transfer:
labeled domain A cases, unlabeled reference and test cases from domain B (MSD-like: other phase,
thicker slices, calibration offset, lesions labelled 2), scored with the global DSC and the MSD
label mapping {2: 1}. Sizes and the network / training overrides are chosen so that
``make demo`` (10pct, 2 generations, 3 views) fits in 15 minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SHAPE_A = [64, 64, 24]      # x, y, z voxels
SPACING_A = [2.0, 2.0, 3.0]  # mm
SHAPE_B = [64, 64, 15]
SPACING_B = [2.0, 2.0, 5.0]
N_A, N_B = 18, 16
NETWORK = {"batch_size": 8, "max_features": 16, "n_stages": 4}
# 350 iterations at a raised learning rate, two thirds of the patches forced onto foreground:
# measured on the 2-core CPU, about the shortest schedule after which a model trained on 2 labeled
# cases starts to segment the small organ (with nnU-Net's 0.33 the sagittal view often did not).
SCHEDULE = {"num_epochs": 7, "num_iterations_per_epoch": 50, "num_val_iterations_per_epoch": 2,
            "initial_lr": 0.03, "oversample_foreground": 0.66, "final_validation": False,
            "test_time_augmentation": False}
SOURCE_A, SOURCE_B = "Dataset980_SyntheticA", "Dataset983_SyntheticB"
SYNTH = {
    SOURCE_A: {"domain": "A", "n_cases": N_A, "seed": 0, "shape": SHAPE_A, "spacing": SPACING_A},
    SOURCE_B: {"domain": "B", "n_cases": N_B, "seed": 0, "shape": SHAPE_B, "spacing": SPACING_B},
}


def method_settings(seed: int) -> dict:
    """What every synthetic plan shares: ATSO with K = 2, 2 generations, 3 views."""
    return {"seed": seed, "subsets": 2, "generations": 2, "views": ["axial", "coronal", "sagittal"],
            "configuration": "2d", "fold": "all", "method": "atso"}


def ids(prefix: str, n: int) -> list:
    return [f"{prefix}_{i:04d}" for i in range(n)]


def semi_plan(pct: int, n_labeled: int, dataset_id: int, seed: int = 0) -> dict:
    cases = ids("synA", N_A)
    test, train = cases[:4], cases[4:]
    labeled = sorted(np.random.default_rng(seed).choice(train, n_labeled, replace=False).tolist())
    return {
        "name": f"synthetic {pct}% labeled (NIH protocol on domain A)",
        "note": f"Mirror of plans/NIH/{pct}pct.json on the synthetic generator (domain A, NIH-like). The first "
                f"4 of {N_A} sorted cases are the test set; of the other {len(train)} training cases "
                f"{n_labeled} are labeled, drawn with sorted(np.random.default_rng({seed}).choice(train, "
                f"{n_labeled}, replace=False)); the rest is the reference set. Small network and short "
                "schedule so it runs on a CPU; written by scripts/make_synthetic_plans.py.",
        "sources": [SOURCE_A],
        "dataset_id": dataset_id,
        "dataset_name": f"Synth{pct}pct",
        "convert_hint": "generated automatically on first use (atso_nnunet_synth)",
        "labeled": labeled,
        "reference": [c for c in train if c not in labeled],
        "test": test,
        **method_settings(seed),
        "metric": "mean",
        "eval_label_map": {},
        "network": NETWORK,
        "training": SCHEDULE,
        "synthetic": {SOURCE_A: SYNTH[SOURCE_A]},
    }


def transfer_plan() -> dict:
    a, b = ids("synA", N_A), ids("synB", N_B)
    return {
        "name": "synthetic transfer A -> B (NIH -> MSD protocol)",
        "note": "Mirror of plans/transfer/nih_to_msd.json: labeled cases from domain A (NIH-like), unlabeled "
                "reference and test cases from domain B (MSD-like: arterial phase, thicker slices, +30 HU "
                "calibration offset, hypodense lesions labelled 2). The first 4 B cases are the test set. Only "
                "domain A is in imagesTr, so nnU-Net's CT normalisation uses domain-A statistics. Scored with "
                "the global DSC (all test cases as one volume), lesion counted as pancreas {2: 1}. Written by "
                "scripts/make_synthetic_plans.py.",
        "sources": [SOURCE_A, SOURCE_B],
        "dataset_id": 984,
        "dataset_name": "SynthTransfer",
        "convert_hint": "generated automatically on first use (atso_nnunet_synth)",
        "labeled": a[4:],
        "reference": b[4:],
        "test": b[:4],
        **method_settings(0),
        "metric": "global",
        "eval_label_map": {"2": 1},
        "network": NETWORK,
        "training": SCHEDULE,
        "synthetic": SYNTH,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "plans" / "synthetic")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    plans = {"10pct": semi_plan(10, 2, 981), "20pct": semi_plan(20, 3, 982), "transfer": transfer_plan()}
    for name, plan in plans.items():
        (args.out / f"{name}.json").write_text(json.dumps(plan, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

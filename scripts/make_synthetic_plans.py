"""Write plans/synthetic/*.json: the paper's protocols mirrored on the synthetic generator.

    python scripts/make_synthetic_plans.py [--out plans/synthetic]

NIH-like (domain A) 10% / 20% labeled: the first fold of the sorted ids is the test set (as RSTN
splits NIH), the rest is training; the labeled cases are drawn with a recorded seed. Transfer:
labeled domain A cases, unlabeled reference and test cases from domain B (MSD-like: other phase,
thicker slices, calibration offset, lesions labelled 2), scored with the global DSC and the MSD
label mapping {2: 1}. Sizes and the network / training overrides are chosen so that
``make demo`` (10pct, 2 generations, 3 views) fits in 15 minutes on a 2-core CPU.

Benchmark plans (bench_10pct, bench_transfer): the regime calibrated in docs/calibration.md with
labeled-only and oracle runs only (benchmarks/calibrate_regime.py builds its plans with
:func:`bench_plan`): more cases, a larger test set and a schedule long enough for the oracle to
converge. The demo plans above are left as they are.
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
# 350 iterations at a raised learning rate (0.05), every patch forced onto foreground: about the
# shortest schedule that fits the 8-minute CPU demo. At 350 iterations a training leaves the
# all-background plateau at a random epoch, sometimes never; with lr 0.03 and two thirds of the
# patches on foreground that made 2 of 10 demo runs collapse to background. The setting was chosen
# with benchmarks/screen_plateau.py (training logs only, no test case read; docs/lab/benchmarks.md).
# The progress plot and the best-checkpoint check every 25 epochs and at the last (for the demo: at
# the last only): nnU-Net's plot costs 0.7 s of a 5 s CPU epoch with this network (issue 26,
# benchmarks/bench_epoch_cost.py); what the trainings learn is unchanged.
CADENCE = {"plot_every": 25, "best_checkpoint_every": 25}
SCHEDULE = {"num_epochs": 7, "num_iterations_per_epoch": 50, "num_val_iterations_per_epoch": 2,
            "initial_lr": 0.05, "oversample_foreground": 1.0, "final_validation": False,
            "test_time_augmentation": False, **CADENCE}
SOURCE_A, SOURCE_B = "Dataset980_SyntheticA", "Dataset983_SyntheticB"
SYNTH = {
    SOURCE_A: {"domain": "A", "n_cases": N_A, "seed": 0, "shape": SHAPE_A, "spacing": SPACING_A},
    SOURCE_B: {"domain": "B", "n_cases": N_B, "seed": 0, "shape": SHAPE_B, "spacing": SPACING_B},
}


# The notes name this generator and the calibration by the paths they had when the plans were first
# written (the calibration is now benchmarks/calibrate_regime.py; bench_r1 was written while this
# generator sat in tools/): a plan's note is part of the plan a run folder records, so rewording it
# would make every run of these plans refuse to resume as "a different plan".


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


# ---------------------------------------------------------------------------------------------
# Benchmark regime (docs/calibration.md). Calibrated with labeled-only and oracle runs only.

BENCH_N_CASES = 28           # per domain: 8 test + 20 training cases
BENCH_N_TEST = 8
BENCH_SHAPE_A, BENCH_SPACING_A = SHAPE_A, SPACING_A
BENCH_SHAPE_B, BENCH_SPACING_B = SHAPE_B, SPACING_B
BENCH_SOURCE_A, BENCH_SOURCE_B = "Dataset985_SynthBenchA", "Dataset986_SynthBenchB"
# 200 epochs x 50 iterations = 10,000 iterations per training (2N of the calibration), lr 0.03 and
# two thirds of the patches on foreground: the regime fixed by the calibration (docs/calibration.md;
# oracle 54.9 -> 60.7 test DSC from 5,000 to 10,000, 59.1 at 20,000). Written out, not derived from
# the demo's SCHEDULE, so that a change to the demo never changes the benchmark regime.
BENCH_SCHEDULE = {"num_epochs": 200, "num_iterations_per_epoch": 50, "num_val_iterations_per_epoch": 2,
                  "initial_lr": 0.03, "oversample_foreground": 0.66, "final_validation": False,
                  "test_time_augmentation": False, **CADENCE}


def bench_generator(domain: str = "A", n_cases: int = BENCH_N_CASES, seed: int = 0, shape=None, spacing=None,
                    noise_sigma=None) -> dict:
    """Generator options of a benchmark source (``plan["synthetic"][source]``)."""
    spec = {"domain": domain, "n_cases": n_cases, "seed": seed,
            "shape": list(shape or (BENCH_SHAPE_A if domain == "A" else BENCH_SHAPE_B)),
            "spacing": list(spacing or (BENCH_SPACING_A if domain == "A" else BENCH_SPACING_B))}
    if noise_sigma is not None:
        spec["noise_sigma"] = float(noise_sigma)
    return spec


def bench_split(n_cases: int = BENCH_N_CASES, n_test: int = BENCH_N_TEST, prefix: str = "synA"):
    """(test, train): the first ``n_test`` sorted ids are the test set E, the rest training."""
    test, _, train = bench_sets(n_cases, n_test, 0, prefix)
    return test, train


def bench_sets(n_cases: int, n_test: int, n_val: int, prefix: str = "synA"):
    """(test, validation, train): the first ``n_test`` sorted ids are E, the next ``n_val`` the
    validation set V (what a calibration scores), the rest training (S + R)."""
    cases = ids(prefix, n_cases)
    return cases[:n_test], cases[n_test:n_test + n_val], cases[n_test + n_val:]


def bench_labeled(train, n_labeled: int, seed: int = 0) -> list:
    """The first ``n_labeled`` of a seeded permutation of ``train``, sorted: 2 inside 4 inside 8."""
    order = np.random.default_rng(seed).permutation(sorted(train)).tolist()
    return sorted(order[:n_labeled])


def bench_plan(n_labeled, dataset_id: int, dataset_name: str, seed: int = 0, generator=None, schedule=None,
               source: str = BENCH_SOURCE_A, n_test: int = BENCH_N_TEST, note: str = "", n_val: int = 0,
               score_validation: bool = False, network=None) -> dict:
    """A domain-A benchmark plan: ``n_labeled`` labeled cases (``"all"``: the oracle's S + R).

    The oracle has every training case labeled with its true label and an empty reference set;
    it is run with method ``supervised``, as labeled-only is. With ``n_val`` cases the plan lists
    the validation set V; ``score_validation`` (a calibration's plan) makes V the set the run scores
    and leaves E out of the plan altogether.
    """
    generator = dict(generator or bench_generator())
    test, val, train = bench_sets(generator["n_cases"], n_test, n_val, f"syn{generator['domain']}")
    if score_validation:
        if not val:
            raise ValueError("score_validation needs n_val > 0")
        test, val = val, []
    labeled = sorted(train) if n_labeled == "all" else bench_labeled(train, n_labeled, seed)
    return {
        "name": f"synthetic benchmark, {len(labeled)} of {len(train)} training cases labeled (domain A)",
        "note": note,
        "sources": [source],
        "dataset_id": dataset_id,
        "dataset_name": dataset_name,
        "convert_hint": "generated automatically on first use (atso_nnunet_synth)",
        "labeled": labeled,
        "reference": [c for c in train if c not in labeled],
        "test": test,
        **({"validation": val} if val else {}),
        **method_settings(seed),
        "generations": 3,
        "metric": "mean",
        "eval_label_map": {},
        "network": dict(network or NETWORK),
        "training": dict(schedule or BENCH_SCHEDULE),
        "synthetic": {source: generator},
        # The oracle has no unlabeled cases, so only method supervised is valid for it.
        **({"method": "supervised", "generations": 0} if n_labeled == "all" else {}),
    }


BENCH_NOTE = ("Earlier benchmark regime (r0), calibrated with labeled-only and oracle runs only (docs/calibration.md, "
              "scripts/calibrate_regime.py; no semi-supervised method was looked at), scored on the test cases. "
              "ATSO as it ran for the published r0 tables: M_t on E is the vote of the subset models and the final "
              "model learns from one label round more than STSO's and self-learning's (method_options below; "
              "the defaults are the paper's M_t and like-for-like rounds).")
# What the published r0 comparisons ran (the defaults before issue 25): kept so that they reproduce.
R0_ATSO = {"atso": {"test_model": "ensemble", "final_labels": "last"}}


def bench_10pct_plan() -> dict:
    """Domain A, 2 of 20 training cases labeled (10%), 8 test cases, the calibrated schedule."""
    test, train = bench_split()
    plan = bench_plan(2, 987, "SynthBench10pct", note=(
        f"{BENCH_NOTE} {BENCH_N_CASES} domain-A cases: the first {BENCH_N_TEST} sorted are the test set E, "
        f"of the other {len(train)} training cases 2 are labeled (10%), the first 2 of "
        "np.random.default_rng(0).permutation(train), sorted; the rest is the reference set. Views and method "
        "are defaults: the calibration ran axial only (--views axial). Written by scripts/make_synthetic_plans.py."))
    plan["name"] = "synthetic benchmark 10% labeled (domain A)"
    plan["method_options"] = R0_ATSO
    return plan


def bench_transfer_plan() -> dict:
    """Labeled: the 20 domain-A training cases; unlabeled R and test E from domain B."""
    gen_a, gen_b = bench_generator("A"), bench_generator("B")
    test_b, ref_b = bench_split(prefix="synB")
    _, train_a = bench_split()
    return {
        "name": "synthetic benchmark transfer A -> B",
        "note": f"{BENCH_NOTE} Same generator sizes and schedule as bench_10pct.json. Labeled: the "
                f"{len(train_a)} domain-A training cases of bench_10pct (its S + R, with labels); unlabeled reference "
                f"and test cases from domain B (MSD-like: arterial phase, thicker slices, +30 HU calibration offset, "
                f"hypodense lesions labelled 2): the first {BENCH_N_TEST} sorted B cases are the test set. Scored with "
                "the global DSC, lesion counted as organ {2: 1}. Written by scripts/make_synthetic_plans.py.",
        "sources": [BENCH_SOURCE_A, BENCH_SOURCE_B],
        # atso_nnunet_compare uses dataset_id + seed: 970.. stays clear of bench_10pct's 987.. (was 988,
        # which is bench_10pct's seed 1: nnU-Net finds datasets by id, so the two could not share a folder)
        "dataset_id": 970,
        "dataset_name": "SynthBenchTransfer",
        "convert_hint": "generated automatically on first use (atso_nnunet_synth)",
        "labeled": train_a,
        "reference": ref_b,
        "test": test_b,
        **method_settings(0),
        "generations": 3,
        "metric": "global",
        "eval_label_map": {"2": 1},
        "network": NETWORK,
        "method_options": R0_ATSO,
        "training": dict(BENCH_SCHEDULE),
        "synthetic": {BENCH_SOURCE_A: gen_a, BENCH_SOURCE_B: gen_b},
    }


# ---------------------------------------------------------------------------------------------
# Regime r1 (issue 25; docs/calibration.md, "Regime r1" and its addendum): tri-view, a validation set V,
# the like-for-like method defaults, fusion by the rule. Calibrated with labeled-only and oracle runs only,
# scored on V; the test set E was in no calibration plan.

R1_N_CASES, R1_N_TEST, R1_N_VAL = 46, 8, 8
R1_SOURCE = "Dataset949_SynthR1A"
R1_DATASET_ID = 950           # atso_nnunet_compare: seed s at 950 + s
#: the regime the rule chose (docs/calibration.md, "r1, the choice"): candidate r1n2 (noise 2 HU, 16 features)
#: at 240 x 50 iterations (addendum 2); 3 labeled (lo3: the only fraction with a gap >= 9 to the oracle,
#: lo6's gap was 6.6); fusion 'mean' (lo3's M0 vote kept 0.81 of its views' mean volume on R, < 0.85)
R1_CHOSEN = {"noise_sigma": 2, "max_features": 16, "n_labeled": 3, "num_epochs": 240, "fusion": "mean"}


def bench_r1_plan(noise_sigma: float, max_features: int, n_labeled: int, num_epochs: int, fusion: str) -> dict:
    """The r1 comparison plan: the calibration's generator, network and schedule, E and V listed,
    ``n_labeled`` of the 30 training cases labeled, the views fused by ``fusion``."""
    generator = bench_generator("A", n_cases=R1_N_CASES, noise_sigma=noise_sigma)
    schedule = {**BENCH_SCHEDULE, "num_epochs": num_epochs, "num_iterations_per_epoch": 50}
    plan = bench_plan(n_labeled, R1_DATASET_ID, "SynthR1", generator=generator, schedule=schedule,
                      source=R1_SOURCE, n_test=R1_N_TEST, n_val=R1_N_VAL,
                      network={**NETWORK, "max_features": max_features}, note=(
        f"Regime r1 (issue 25): calibrated with labeled-only and oracle runs only, scored on the validation set V "
        f"(docs/calibration.md, 'Regime r1' and its addendum; no semi-supervised method was run or read). "
        f"{R1_N_CASES} domain-A cases at noise {noise_sigma:g} HU: the first {R1_N_TEST} sorted are the test set E "
        f"(in no calibration plan), the next {R1_N_VAL} the validation set V (listed, never read by a run), "
        f"{n_labeled} of the other {R1_N_CASES - R1_N_TEST - R1_N_VAL} labeled (atso_nnunet_compare draws each "
        f"seed's own). {max_features} network features, {num_epochs} x 50 iterations per training, tri-view; "
        f"fusion '{fusion}' by the rule fixed with the regime (M0's vote against its views' mean volume on R). "
        "Method options are the like-for-like defaults (ATSO's M_t is the combined model, its final model M_T). "
        "Written by tools/make_synthetic_plans.py."))
    plan["name"] = f"synthetic benchmark r1, {n_labeled} of {R1_N_CASES - R1_N_TEST - R1_N_VAL} labeled (domain A)"
    if fusion != "vote":
        plan["fusion"] = fusion
    return plan


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "plans" / "synthetic")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    plans = {"10pct": semi_plan(10, 2, 981), "20pct": semi_plan(20, 3, 982), "transfer": transfer_plan(),
             "bench_10pct": bench_10pct_plan(), "bench_transfer": bench_transfer_plan(),
             "bench_r1": bench_r1_plan(**R1_CHOSEN)}
    for name, plan in plans.items():
        (args.out / f"{name}.json").write_text(json.dumps(plan, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

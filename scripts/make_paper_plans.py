"""Write the experiment plans of the ATSO paper's protocol, deterministically.

    python scripts/make_paper_plans.py                       # plans/NIH/{10,20}pct.json + transfer template
    python scripts/make_paper_plans.py --msd-dataset "$nnUNet_raw/Dataset802_MSDPancreas"
    python scripts/make_paper_plans.py --msd-ids Task07_Pancreas/dataset.json --out /tmp/plans

Re-running with the same inputs writes byte-identical files, so the shipped plans can be
re-made and diffed (tests/scripts/test_paper_plans.py does this).

Protocol (paper sections 4.1 and 5.1, following RSTN):
* NIH: the 82 cases NIH_0001..NIH_0082 sorted by id, split into 4 contiguous folds of 20, 20,
  21, 21 cases (the larger folds last, as RSTN does); fold 0 is the test set E, folds 1-3 (62
  cases) are training. 20% labeled = 12 training cases drawn with
  ``np.random.default_rng(SELECTION_SEED).choice(pool, 12, replace=False)`` where pool is the
  training cases minus NIH_0025 and NIH_0070 (absent from some releases); 10% labeled = the
  first 6 of that draw (so the 10% set is inside the 20% set). Both are stored sorted; the other
  training cases are the reference set R.
* NIH -> MSD: S = the 62 NIH training cases; the labeled MSD Task07 training cases (281 in the
  release) sorted by id and split the same way into 4 contiguous folds: fold 0 = test E, folds
  1-3 = reference R. The MSD ids have gaps (pancreas_001, pancreas_004, ...), so they are read
  from the data (``--msd-dataset`` or ``--msd-ids``); without them the transfer plan is written
  as a template with empty ``reference`` / ``test`` and instructions in its note.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from atso_nnunet.data.converters import conversion_command
from atso_nnunet.plan import contiguous_folds

logger = logging.getLogger("make_paper_plans")

REPO = Path(__file__).resolve().parents[1]
SELECTION_SEED = 0
N_NIH = 82
NIH_SOURCE = "Dataset801_NIHPancreas"
MSD_SOURCE = "Dataset802_MSDPancreas"
MAYBE_MISSING = ("NIH_0025", "NIH_0070")
VIEWS = ["axial", "coronal", "sagittal"]
NIH_HINT = conversion_command(NIH_SOURCE)
MSD_HINT = conversion_command(MSD_SOURCE)
# The notes keep the generator's first path (scripts/): a note is part of the plan a run folder
# records, and a reworded note would make the plan's runs refuse to resume.
FILL_COMMAND = 'python scripts/make_paper_plans.py --msd-dataset "$nnUNet_raw/Dataset802_MSDPancreas"'
_MSD_ID = re.compile(r"(pancreas_\d{3})")

NIH_CAVEAT = (
    "The paper uses 82 NIH cases; the public TCIA archive numbers PANCREAS_0001..0082 but some "
    "releases lack PANCREAS_0025 and PANCREAS_0070 (80 cases). The ids are kept as NIH_0001..NIH_0082; "
    "validating the plan against the converted dataset reports any id that is missing.")
INTENSITY_NOTE = (
    "Intensities: both datasets are CT; nnU-Net's CT normalisation (clip to the 0.5/99.5 "
    "percentiles of the foreground, then z-score) takes its statistics from the fingerprint of "
    "imagesTr of the experiment dataset, i.e. of the labeled set S only (NIH), so the MSD "
    "reference and test images are normalised with NIH statistics. That is the transfer setting: "
    "nothing about the target domain is used before ATSO sees its unlabeled images. Spacing is "
    "resampled by nnU-Net (the paper normalises the inter-slice distance likewise); predictions are "
    "exported at the original geometry.")


def folds(ids: Sequence[str], n_folds: int = 4) -> List[List[str]]:
    """Contiguous folds of the sorted ids, the larger folds last (82 -> 20, 20, 21, 21)."""
    return contiguous_folds(ids, n_folds)


def nih_ids() -> List[str]:
    return [f"NIH_{n:04d}" for n in range(1, N_NIH + 1)]


def labeled_draw(train: Sequence[str], n: int, seed: int = SELECTION_SEED) -> List[str]:
    """The first ``n`` cases of the seeded draw of 12 (unsorted: callers sort).

    Cases absent from some releases (:data:`MAYBE_MISSING`) are not drawn: a labeled case must exist.
    """
    pool = np.array(sorted(c for c in train if c not in MAYBE_MISSING))
    draw = np.random.default_rng(seed).choice(pool, size=12, replace=False)
    return [str(c) for c in draw[:n]]


# Training settings stated on purpose (issue: a GPU budget a team can plan with). nnU-Net's 2D
# default is 1000 epochs x 250 iterations for every one of a run's trainings; the paper retrains
# far less (RSTN's students are fine-tuned for a few epochs). 250 epochs keep one training at a
# quarter of nnU-Net's default; self-learning students continue from their teacher (a tenth of
# the learning rate, half the epochs: the plan states both). Not validated against 1000 epochs
# here (no GPU was available): `atso_nnunet_run ... --dry-run --sec-per-iter S` prints the budget.
TRAINING = {"num_epochs": 250, "num_iterations_per_epoch": 250,
            "roles": {"self": {"initial_lr": 0.001, "num_epochs": 125}}}
TRAINING_NOTE = (
    "Training: every model (M0, the subset models, the combined model per generation, the final model) "
    "trains 250 epochs x 250 iterations, a quarter of nnU-Net's 2D default, because a 5-generation ATSO run "
    "trains 42 models (3 views: M0, 4 generations of 2 subset models, M_1..M_4 and the final model M_5); self-learning students continue from their teacher at lr 1e-3 for 125 epochs. "
    "Estimate the GPU time with --dry-run --sec-per-iter S (or --timing-from an earlier run).")
# The paper's M_t per generation and Algorithm 1's final labels: after T generations the final model
# learned from the same label round as STSO's and self-learning's (like-for-like; issue 25).
ATSO_OPTIONS = {"atso": {"test_model": "combined", "final_labels": "previous"}}
ABSENT_NOTE = (
    "Today's TCIA release has 80 cases (NIH_0025 and NIH_0070 were removed as duplicates); they are listed in "
    "may_be_absent, so a run on the 80-case release leaves them out of the reference set with a warning "
    "(R: {with_} cases with both, {without} without) and the paper's 82-case folds stay as they were.")


def _plan(**fields) -> Dict:
    base = {"seed": 0, "subsets": 2, "views": VIEWS, "configuration": "2d", "fold": "all", "method": "atso",
            "method_options": ATSO_OPTIONS, "training": TRAINING}
    base.update(fields)
    order = ["name", "note", "sources", "dataset_id", "dataset_name", "convert_hint", "labeled", "reference",
             "test", "case_rule", "seed", "subsets", "generations", "views", "configuration", "fold", "method", "metric",
             "eval_label_map", "method_options", "may_be_absent", "training"]
    return {k: base[k] for k in order if k in base}


def nih_plan(fraction: int) -> Dict:
    """``plans/NIH/<fraction>pct.json`` (fraction 10 or 20)."""
    test, *train_folds = folds(nih_ids())
    train = [c for f in train_folds for c in f]
    n_labeled = {10: 6, 20: 12}[fraction]
    labeled = sorted(labeled_draw(train, n_labeled))
    reference = [c for c in train if c not in labeled]
    note = (
        f"ATSO paper section 4.1 (NIH, {fraction}% labeled, Table {1 if fraction == 10 else 2}). "
        "82 cases NIH_0001..NIH_0082 sorted by id, 4 contiguous folds of 20/20/21/21 (RSTN); fold 0 "
        "(NIH_0001..NIH_0020) = test, folds 1-3 (62 cases) = training. Labeled: "
        f"sorted(np.random.default_rng({SELECTION_SEED}).choice(pool, 12, replace=False)"
        f"{'[:6]' if n_labeled == 6 else ''}) with pool = sorted(train) minus NIH_0025 "
        "and NIH_0070 (absent from some releases, see below; a labeled case must exist); the 10% set is the "
        "first 6 of the 20% draw. The rest of "
        "the training cases are the reference set. Generated by scripts/make_paper_plans.py. "
        + ABSENT_NOTE.format(with_=len(reference), without=len([c for c in reference if c not in MAYBE_MISSING]))
        + " " + TRAINING_NOTE + " M_t on E is the paper's per-generation model (method_options.atso.test_model "
        "'combined'); nnU-Net's planned network (real data).")
    return _plan(name=f"NIH Pancreas-CT, {fraction}% labeled ({n_labeled} of 62 training cases)", note=note,
                 sources=[NIH_SOURCE], dataset_id={10: 811, 20: 812}[fraction],
                 dataset_name=f"NIH{fraction}pct", convert_hint=NIH_HINT, labeled=labeled,
                 reference=reference, test=test, generations=5, metric="mean", eval_label_map={},
                 may_be_absent=[c for c in MAYBE_MISSING if c in reference or c in test])


def transfer_plan(msd_ids: Optional[Sequence[str]]) -> Dict:
    """``plans/transfer/nih_to_msd.json``; a template (empty reference/test) without MSD ids."""
    _, *train_folds = folds(nih_ids())
    # S must exist in every release: the 62 NIH training cases minus the two today's release lacks
    labeled = [c for f in train_folds for c in f if c not in MAYBE_MISSING]
    if msd_ids:
        test, *ref_folds = folds(msd_ids)
        reference = [c for f in ref_folds for c in f]
        split = (f"The {len(msd_ids)} labeled MSD Task07 cases (imagesTr) sorted by id, 4 contiguous folds "
                 f"({', '.join(str(len(f)) for f in folds(msd_ids))}); fold 0 = test, folds 1-3 = reference.")
    else:
        test, reference = [], []
        split = ("Reference and test are read from the converted MSD dataset when the run starts "
                 "(case_rule: the labeled MSD Task07 cases (281) sorted by id, 4 contiguous folds; fold 0 = "
                 "test, folds 1-3 = reference), because the MSD case ids have gaps. To ship explicit lists "
                 f"instead: `{FILL_COMMAND}` (or --msd-ids Task07_Pancreas/dataset.json).")
    note = (
        "ATSO paper section 5.1 / Table 6 (NIH -> MSD transfer, 4 generations, global DSC). S = the NIH "
        f"training cases (folds 1-3 of plans/NIH) that today's 80-case release has: {len(labeled)} (the paper's 62 "
        f"minus {', '.join(MAYBE_MISSING)}). " + split + " MSD labels: 1 pancreas, 2 tumour; "
        "eval_label_map {\"2\": 1} scores pancreas + tumour as pancreas. MSD imagesTs has no labels and is "
        "not used. " + INTENSITY_NOTE + " " + TRAINING_NOTE + " Generated by scripts/make_paper_plans.py. "
        + NIH_CAVEAT)
    return _plan(name=f"Transfer NIH -> MSD Task07 pancreas (S = {len(labeled)} NIH, R/E = MSD)", note=note,
                 sources=[NIH_SOURCE, MSD_SOURCE], dataset_id=821, dataset_name="NIHtoMSD",
                 convert_hint=f"{NIH_HINT} && {MSD_HINT}", labeled=labeled, reference=reference, test=test,
                 **({} if reference else {"case_rule": {"source": MSD_SOURCE, "folds": 4, "test_folds": [0]}}),
                 generations=4, metric="global", eval_label_map={"2": 1})


def read_msd_ids(dataset: Optional[Path], ids_file: Optional[Path]) -> Optional[List[str]]:
    """Labeled MSD case ids from a converted dataset's labelsTr, an MSD dataset.json, or an id list."""
    if dataset is not None:
        labels = Path(dataset) / "labelsTr"
        if not labels.is_dir():
            raise SystemExit(f"{labels}: not found; convert MSD first ({MSD_HINT})")
        return sorted(p.name[:-len(".nii.gz")] for p in labels.glob("pancreas_*.nii.gz"))
    if ids_file is not None:
        text = Path(ids_file).read_text(encoding="utf-8")
        if ids_file.suffix == ".json":
            return sorted({_MSD_ID.search(e["label"]).group(1) for e in json.loads(text)["training"]})
        return sorted({m.group(1) for m in _MSD_ID.finditer(text)})
    return None


def dump(plan: Dict) -> str:
    return json.dumps(plan, indent=2) + "\n"


def write_plans(out: Path, msd_ids: Optional[Sequence[str]] = None) -> List[Path]:
    files = {out / "NIH" / "10pct.json": nih_plan(10), out / "NIH" / "20pct.json": nih_plan(20),
             out / "transfer" / "nih_to_msd.json": transfer_plan(msd_ids)}
    for path, plan in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(plan), encoding="utf-8")
        logger.info("wrote %s", path)
    return list(files)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "plans", help="plans folder (default: the repo's)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--msd-dataset", type=Path, help="converted Dataset802_MSDPancreas folder")
    src.add_argument("--msd-ids", type=Path, help="MSD Task07 dataset.json or a text file of pancreas_XXX ids")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_plans(args.out, read_msd_ids(args.msd_dataset, args.msd_ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())

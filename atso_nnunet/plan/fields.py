"""The vocabulary of a plan file: its keys in order, the old names still read, and the values a
field may take (sets, metrics, fusions, configurations). Imported by the schema and every check."""
from __future__ import annotations

import re
from typing import Dict, Tuple

from atso_nnunet.limits import DATASET_ID_MAX, DATASET_ID_MIN, SEED_MAX
from atso_nnunet.plan.sections import PATCH_DIMS

METRICS: Tuple[str, ...] = ("mean", "global")
# What the tri-view planner (atso_nnunet.nnunet.planning) makes.
CONFIGURATIONS: Tuple[str, ...] = tuple(PATCH_DIMS)
# nnU-Net configurations the planner cannot make, and why (named in the error at load).
UNSUPPORTED_CONFIGURATIONS: Dict[str, str] = {
    "3d_lowres": "nnU-Net plans 3d_lowres only for images much larger than the 3d_fullres patch, as the "
                 "first stage of its 3d cascade, which atso_nnunet does not run",
    "3d_cascade_fullres": "the cascade's second stage needs 3d_lowres predictions as input, which atso_nnunet "
                          "does not make",
}
# validation: cases held out for choosing settings (a benchmark's calibration scores them instead of E);
# a run never trains on, pseudo-labels or scores them.
SETS: Tuple[str, ...] = ("labeled", "reference", "test", "validation")
# nnU-Net splits the labeled cases of a dataset into 5 folds (do_split) for an integer fold.
NNUNET_FOLDS = 5

CASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# Key order of the JSON files (that of docs/design.md), used when writing plans.
KEY_ORDER: Tuple[str, ...] = (
    "name", "note", "sources", "dataset_id", "dataset_name", "convert_hint", "labeled", "reference",
    "test", "validation", "case_rule", "seed", "subsets", "generations", "views", "configuration", "fold", "method", "metric",
    "eval_label_map", "fusion", "method_options", "may_be_absent", "network", "training", "synthetic", "slurm",
    "stability_filter", "pseudo_label_volume", "ship_generation", "reference_split",
)
FUSIONS: Tuple[str, ...] = ("vote", "mean")
# how large a pseudo-label set's foreground is: as the teacher predicts it (argmax), or matched to the
# labeled cases' mean volume (atso_nnunet.pseudolabels.volume_prior; needs fusion "mean", binary tasks)
PSEUDO_LABEL_VOLUMES: Tuple[str, ...] = ("predicted", "labeled_mean")
# Old key -> current key. Read with a deprecation warning; giving both is an error.
ALIASES: Dict[str, str] = {"schedule": "training"}
# Limits of the plan's top-level numbers (field -> (minimum, maximum)): the paper runs 2-5 generations
# of 2-3 subsets; far more is a typo, and a schedule of 10**12 generations fills the memory.
MAX_GENERATIONS = 100
MAX_SUBSETS = 100
# label values of eval_label_map (nnU-Net's labels fit in 16 bits)
MAX_LABEL_VALUE = 65535
NUMBER_LIMITS: Dict[str, Tuple[int, int]] = {
    "dataset_id": (DATASET_ID_MIN, DATASET_ID_MAX), "seed": (0, SEED_MAX), "subsets": (1, MAX_SUBSETS),
    "generations": (0, MAX_GENERATIONS),
}

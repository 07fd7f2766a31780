"""``atso_nnunet_make_plan``: an experiment plan for your own nnU-Net dataset plus unlabeled images.

    atso_nnunet_make_plan --raw-dataset $nnUNet_raw/Dataset500_Liver --unlabeled /data/unlabeled \\
        --test-list test_ids.txt --dataset-id 501 --out plans/mine/atso.json

The labeled set is the raw dataset's ``imagesTr``, the reference set the ``<case>_0000.nii.gz``
images of ``--unlabeled`` (minus test cases), the test set the ids listed in ``--test-list`` (one
per line) or, with ``--test-fraction 0.2``, a seeded share of the labeled cases. Labeled cases in
the test set are held out of training: their labels are used only to score the test set. Without
a test set the run cannot tell whether the model improved (the report says so and points to the
label-free monitors). Both folders are recorded in the plan's ``sources`` as absolute paths;
nobody writes case lists by hand. The written plan is what ``atso_nnunet_run`` executes.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

from atso_nnunet.cli.common import add_alias, add_verbose_option, add_views_option, number, plain, run_cli
from atso_nnunet.limits import DATASET_ID_MAX, DATASET_ID_MIN, SEED_MAX
from atso_nnunet.plan.fields import MAX_GENERATIONS, MAX_SUBSETS
from atso_nnunet.errors import InputError
from atso_nnunet.methods import get_method, method_names
from atso_nnunet.plan import CONFIGURATIONS, METRICS, write_plan_from_dataset
from atso_nnunet.views import VIEWS

logger = logging.getLogger("atso_nnunet.make_plan")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="atso_nnunet_make_plan",
        description="Write an experiment plan (JSON) from an nnU-Net raw dataset (labeled cases), "
                    "a folder of unlabeled images and an optional list of test cases.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=plain(__doc__))
    parser.add_argument("--raw-dataset", type=Path, required=True,
                        help="nnU-Net raw dataset folder DatasetXXX_Name; its imagesTr/labelsTr are the labeled set")
    parser.add_argument("--unlabeled", type=Path, required=True,
                        help="folder of unlabeled images <case>_0000.nii.gz (the reference set)")
    test = parser.add_mutually_exclusive_group()
    test.add_argument("--test-list", type=Path, default=None,
                      help="text file, one test case id per line: labeled cases of imagesTr (held out of training; "
                           "their labels only score the test set), cases of --unlabeled (taken out of the "
                           "reference set; not scored) or of the raw dataset's imagesTs")
    test.add_argument("--test-fraction", type=float, default=None, metavar="F",
                      help="hold out this share of the labeled cases as the test set (e.g. 0.2), drawn with --seed; "
                           "their labels only score the test set")
    parser.add_argument("--out", type=Path, required=True, help="plan JSON to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_alias(parser, "--force", "--overwrite", "overwrite", flag=True)
    parser.add_argument("--dataset-id", type=number(DATASET_ID_MIN, DATASET_ID_MAX), required=True,
                        help="nnU-Net id of the experiment dataset the run builds (not the raw dataset's)")
    parser.add_argument("--dataset-name", default=None,
                        help="nnU-Net name of the experiment dataset (default: raw dataset name + method)")
    add_alias(parser, "--name", "--dataset-name", "dataset_name")
    parser.add_argument("--title", default=None, help="human-readable title (the plan's 'name' field)")
    parser.add_argument("--note", default=None, help="free text recorded in the plan")
    parser.add_argument("--method", choices=method_names(), default="atso",
                        help="the method to run (default %(default)s)")
    parser.add_argument("--generations", type=number(0, MAX_GENERATIONS), default=None,
                        help="teacher-student generations (default 2; 0 for supervised)")
    parser.add_argument("--subsets", type=number(1, MAX_SUBSETS), default=2, help="reference subsets for ATSO, default %(default)s")
    parser.add_argument("--seed", type=number(0, SEED_MAX), default=0,
                        help="seed of the reference split and of --test-fraction, default %(default)s")
    add_views_option(parser, default=VIEWS, help="views to train (default: all)")
    parser.add_argument("--configuration", choices=CONFIGURATIONS, default="2d",
                        help="nnU-Net configuration: 2d (tri-view) or 3d_fullres (default %(default)s)")
    parser.add_argument("--metric", choices=METRICS, default="mean",
                        help="mean: mean of per-case DSC; global: DSC of all test cases pooled (default %(default)s)")
    parser.add_argument("--eval-label-map", default=None, metavar="JSON",
                        help='ground-truth values mapped before scoring, e.g. \'{"2": 1}\'')
    add_verbose_option(parser)
    return parser


def _run(args) -> int:
    if args.out.exists() and not args.overwrite:
        raise InputError(f"{args.out}: exists; pass --overwrite to replace it")
    label_map = {}
    if args.eval_label_map:
        try:
            label_map = json.loads(args.eval_label_map)
        except json.JSONDecodeError as e:
            raise InputError(f"--eval-label-map: not JSON ({e}); write it like '{{\"2\": 1}}'") from e
    generations = args.generations
    if generations is None:
        m = get_method(args.method)
        generations = 2 if m.max_generations is None or m.max_generations >= 2 else m.default_generations()
    plan = write_plan_from_dataset(
        args.raw_dataset, args.unlabeled, args.test_list, out_path=args.out,
        dataset_id=args.dataset_id, dataset_name=args.dataset_name, name=args.title, note=args.note,
        method=args.method, generations=generations, subsets=args.subsets, seed=args.seed,
        views=args.views, configuration=args.configuration, metric=args.metric,
        eval_label_map=label_map, test_fraction=args.test_fraction)
    logger.info("%s: %s, %d labeled / %d reference / %d test cases", args.out, plan.method,
                len(plan.labeled), len(plan.reference), len(plan.test))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

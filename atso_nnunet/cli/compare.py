"""``atso_nnunet_compare``: methods x seeds over one plan, with the labeled-only and oracle lines.

    atso_nnunet_compare -d synthetic -f bench_10pct --views axial --out bench/10pct
    atso_nnunet_compare --plan my_plan.json --methods supervised stso atso --seeds 0 1 2 --gpus 0,1,2,3

Every (seed, method) is an ordinary resumable run folder ``<out>/seed<s>/<method>``; rerun the
same command to continue. Seed s draws its own labeled set from the plan's labeled cases plus
the reference cases that have ground truth and come from the labeled cases' sources (a transfer
plan's S, and a plan whose R has no labels, stay as they are for every seed; the test set never
changes), splits R with seed s and seeds every training with s, and builds its
experiment dataset under the plan's dataset id + s (an id already taken in nnU-Net's folders is
refused for every seed before anything runs); the labeled-only
run of a seed trains M0 once for every method of that seed. The tables and the figure
(``<out>/comparison.{md,csv,json,png}``) are rewritten after every run, from every run folder of
the asked seeds and methods that has a report (also one another invocation wrote, e.g. one per
seed running beside this one); ``--report-only`` writes them without running anything. A run
folder another invocation is driving is skipped with a warning (its whole seed when it is the
labeled-only run that trains the shared M0).
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from atso_nnunet.cli.common import (add_nnunet_dir_option, add_verbose_option, add_views_option, folder, nnunet_paths,
                                    number, plain, run_cli)
from atso_nnunet.cli.run import (add_execution_options, check_execution_options, make_executor_from_args,
                                 resolve_device)
from atso_nnunet.limits import PROCESSES_MAX, SEED_MAX
from atso_nnunet.plan.fields import MAX_GENERATIONS
from atso_nnunet.errors import InputError
from atso_nnunet.io import read_json
from atso_nnunet.run.rundir import PUBLISHED

logger = logging.getLogger("atso_nnunet.comparison.run")


def build_parser() -> argparse.ArgumentParser:
    from atso_nnunet.comparison.run import DEFAULT_METHODS
    from atso_nnunet.methods import method_names

    p = argparse.ArgumentParser(allow_abbrev=False, prog="atso_nnunet_compare", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("experiment plan")
    src.add_argument("-d", "--dataset", help="plan folder, e.g. synthetic, NIH")
    src.add_argument("-f", "--split", help="plan file in that folder, e.g. bench_10pct")
    src.add_argument("--plan", type=Path, help="path of a plan JSON file (instead of -d/-f)")
    cmp_ = p.add_argument_group("comparison")
    cmp_.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                      metavar="METHOD", help=f"methods to compare, of {', '.join(method_names())} "
                                             f"(default: {' '.join(DEFAULT_METHODS)}; supervised = "
                                             "labeled-only is always run)")
    cmp_.add_argument("--seeds", nargs="+", type=number(0, SEED_MAX), default=[0, 1, 2], metavar="S",
                      help="seeds: labeled draw, reference split and training seed (default: 0 1 2)")
    cmp_.add_argument("--generations", type=number(0, MAX_GENERATIONS), metavar="T", help="generations of the semi-supervised methods (default: the plan's)")
    add_views_option(cmp_, None, "views to train (default: the plan's)")
    cmp_.add_argument("--out", type=folder, required=True, help="folder of the comparison and its run folders")
    cmp_.add_argument("--report-only", action="store_true",
                      help="run nothing: write the comparison from the run folders already under --out "
                           "(finished and unfinished runs; a look at a long comparison while it runs), or "
                           "from published run records (atso_nnunet_publish); needs no nnU-Net folders")
    ex = p.add_argument_group("execution (the same executors as atso_nnunet_run)")
    add_nnunet_dir_option(ex)
    add_execution_options(p, ex)
    ex.add_argument("--num-processes", type=number(1, PROCESSES_MAX), default=2, metavar="N", help="processes for preprocessing and ingestion "
                                                                 "(default: %(default)s)")
    add_verbose_option(p)
    return p


def _run(args) -> int:
    from atso_nnunet.comparison.run import ComparisonOptions, run_comparison
    from atso_nnunet.methods import get_method
    from atso_nnunet.plan import find_plan, load_plan, resolve_case_rule

    check_execution_options(args)
    if args.plan is not None and (args.dataset or args.split):
        raise InputError("give either --plan FILE or -d DATASET -f SPLIT, not both")
    if args.plan is None and not (args.dataset and args.split):
        raise InputError("name the plan: -d DATASET -f SPLIT (e.g. -d synthetic -f bench_10pct) or --plan FILE")
    plan = load_plan(args.plan if args.plan is not None else find_plan(args.dataset, args.split))
    for m in args.methods:
        get_method(m)
    if args.report_only:  # reads run folders only: tables re-derived from published records need no nnU-Net
        paths = None
    else:
        paths = nnunet_paths(args.nnunet_dir)
        plan = resolve_case_rule(plan, paths)
    out = args.out.resolve()
    command = shlex.join(["atso_nnunet_compare", *(a for a in sys.argv[1:] if a != "--report-only")])
    if args.report_only:
        # tables re-derived from a publication keep the command that made its runs, not this one
        # (which, without --report-only, would be refused on published records)
        published = read_json(out / PUBLISHED)
        if published and published.get("command"):
            command = published["command"]
            logger.info("published records: the tables keep the command that made them: %s", command)
    options = ComparisonOptions(out_dir=out, paths=paths, methods=args.methods, seeds=args.seeds,
                                generations=args.generations, views=args.views,
                                executor=None if args.report_only else make_executor_from_args(args, out, plan),
                                device=resolve_device(args, plan, out), num_processes=args.num_processes,
                                command=command,
                                report_only=args.report_only)
    run_comparison(plan, options)
    print((args.out / "comparison.md").read_text())
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

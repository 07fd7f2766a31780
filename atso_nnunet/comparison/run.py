"""Methods x seeds over one plan: the evidence a team needs before it spends GPU-weeks.

:func:`run_comparison` runs, for every seed, every requested method as an ordinary resumable
run folder ``<out>/seed<s>/<method>`` through the usual driver and executors, then writes
``comparison.{md,csv,json,png}`` (:mod:`atso_nnunet.comparison.report`).

Seeds: seed ``s`` draws the labeled set S afresh from the plan's labeled pool (the test set E
never changes): ``sorted(default_rng(s).choice(sorted(pool), |S|))``, the rule of
``tools/make_synthetic_plans.py``. The pool (:func:`~atso_nnunet.comparison.seeds.labeled_pool`) is S plus the reference cases
that have ground truth *and* come from a source S comes from: a transfer plan (S from domain A, R
from domain B) keeps S as it is for every seed, and a plan whose R has no labels (a hospital's
unlabeled scans) cannot put an unlabeled case into S. The rest of S + R is R, split into subsets
with seed ``s``, and every training of that seed gets ``training.seed = s``. Each seed has its own experiment
dataset ``Dataset<plan id + s>_<name>S<s>`` (nnU-Net's fingerprint sees only that seed's S).

Generation 0 is the same work for every method of a seed, so it is done once: the labeled-only
run (method ``supervised``) of the seed trains M0, and each other method's run adopts its
finished generation-0 steps (links to the models, predictions, labels and scores, and the
markers, noting where they came from). Adoption is content-keyed: it happens only when the
generation-0 part of the two resolved plans is identical, so a changed plan or seed never
reuses an M0 it did not make.

Parallel invocations (one per seed or per GPU node, on a shared ``--out``): a run folder another
process is driving (its lock is held) is skipped with a warning instead of failing the whole
comparison; when that is a seed's labeled-only run, the seed is skipped (its other methods must
adopt that run's M0, not train their own). The tables cover every run folder on disk, so a last
invocation (or ``--report-only``) after all have finished writes the complete comparison.

Test labels: runs are made with ``defer_test_scores`` (every training and pseudo-labelling step
of a run finishes before any score on E is computed), and the comparison reads scores only from
finished runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence


from atso_nnunet.comparison.seeds import adopt_generation_zero, generation_zero_key, labeled_pool, plan_for_seed
from atso_nnunet.errors import InputError, RunLockedError
from atso_nnunet.io import read_json, write_json
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.run.rundir import RunDir, RunLock

logger = logging.getLogger(__name__)


DEFAULT_METHODS = ("supervised", "self", "stso", "atso", "oracle")  # what a comparison runs unless told


@dataclass
class ComparisonOptions:
    """What to compare and where.

    Attributes:
        out_dir: folder of the comparison (one run folder per seed and method below it).
        paths: nnU-Net folders.
        methods: method names; ``supervised`` (labeled-only, which trains each seed's M0) is
            always run first and added if missing.
        seeds: seeds (labeled draw, reference split, training seed).
        generations: generations of the semi-supervised methods (default: the plan's).
        views: override of the plan's views (e.g. ``["axial"]`` on a CPU).
        executor: executor for every run (default: local).
        device: ``cpu`` or ``cuda``.
        num_processes: processes for preprocessing and ingestion.
        command: the command line that reproduces the comparison (written into its tables).
        report_only: run nothing; write the comparison from the run folders already under
            ``out_dir`` (a look at a long comparison while it runs, or after it was stopped).
    """

    out_dir: Path
    paths: NnUNetPaths
    methods: Sequence[str] = DEFAULT_METHODS
    seeds: Sequence[int] = (0, 1, 2)
    generations: Optional[int] = None
    views: Optional[Sequence[str]] = None
    executor: object = None
    device: str = "cpu"
    num_processes: int = 2
    command: str = ""
    report_only: bool = False



@dataclass
class RunRecord:
    """One finished (or partial) run of the comparison."""

    seed: int
    method: str
    run_dir: Path
    report: Optional[dict] = None
    labeled: List[str] = field(default_factory=list)
    finished: bool = True
    #: per generation: the pseudo-labels' foreground voxels on R over the ground truth's (label-using, like
    #: @R DSC), from the run's ``eval/R_g{t}/R.json`` (:func:`truth_volume_ratios`)
    volume_vs_truth: Dict[int, float] = field(default_factory=dict)


def read_records(out: Path, seeds: Sequence[int], methods: Sequence[str]) -> List[RunRecord]:
    """Every run folder ``<out>/seed<s>/<method>`` of ``seeds`` x ``methods`` that has a report.

    A run's labeled cases are those the run itself trained on (its ``plan.json``), and it counts
    as finished when its report step is done; no run is read beyond its folder.
    """
    runs = [(s, m, Path(out) / f"seed{s}" / m) for s in seeds for m in methods]
    return [RunRecord(s, m, d, read_json(d / "report.json"),
                      list((read_json(d / "plan.json") or {}).get("labeled", [])),
                      finished=RunDir(d).is_done("report"), volume_vs_truth=truth_volume_ratios(d))
            for s, m, d in runs if (d / "report.json").is_file()]


def truth_volume_ratios(run_dir: Path) -> Dict[int, float]:
    """``{t: voxels of R_t / voxels of R's ground truth}`` summed over R's cases, for every generation whose
    pseudo-labels were scored on all of R (``eval/R_g{t}/R.json``, which records both counts per case)."""
    out = {}
    for path in sorted(Path(run_dir).glob("eval/R_g*/R.json")):
        suffix = path.parent.name[len("R_g"):]
        cases = ((read_json(path) or {}).get("details") or {}).get("cases") or []
        pred = sum(sum(c.get("voxels_pred", {}).values()) for c in cases)
        truth = sum(sum(c.get("voxels_gt", {}).values()) for c in cases)
        if suffix.isdigit() and truth:
            out[int(suffix)] = pred / truth
    return out


def run_comparison(plan, options: ComparisonOptions) -> List[RunRecord]:
    """Run every (seed, method) and write the comparison; see the module docstring.

    Raises:
        InputError: unknown methods or seeds, or a bad plan, before any work.
    """
    from atso_nnunet.comparison import report as comparison_report
    from atso_nnunet.run.driver import DriverOptions, make_context, run_experiment
    from atso_nnunet.methods import baseline_method, get_method
    from atso_nnunet.schedule import build_schedule
    from atso_nnunet.plan import reference_subsets

    baseline = baseline_method()
    methods = list(dict.fromkeys([baseline, *options.methods]))
    for m in methods:
        get_method(m)
    seeds = list(dict.fromkeys(int(s) for s in options.seeds))
    if not seeds or any(s < 0 for s in seeds):
        raise InputError(f"--seeds: give one or more seeds >= 0, got {options.seeds}")
    out = Path(options.out_dir).resolve()

    if options.report_only:
        records = read_records(out, seeds, methods)
        if not records:
            raise InputError(f"--report-only: no run folder with a report under {out} for seeds "
                             f"{' '.join(map(str, seeds))} and methods {' '.join(methods)}")
        comparison_report.write_comparison(records, out, plan_name=plan.name, command=options.command)
        return records
    if RunDir(out).published_file.is_file():
        raise InputError(f"--out {out} is a published comparison (run records without models): it cannot be run "
                         "or continued. Add --report-only to re-derive its tables, or give a new --out.")
    from atso_nnunet.data.materialize import find_cases
    from atso_nnunet.run.prepare import drop_absent_cases, ensure_sources
    from atso_nnunet.run.preflight import dataset_id_problems
    from atso_nnunet.run.refusal import removed_on_refusal

    # a comparison refused before any of its runs prepared its data leaves nothing behind
    def prepared() -> bool:
        return any(RunDir(out / f"seed{s}" / m).is_done("prepare") for s in seeds for m in methods)

    paths = options.paths
    with removed_on_refusal([out, paths.raw, paths.preprocessed, paths.results], keep=prepared,
                            before_removal=getattr(options.executor, "close", None)):
        present = drop_absent_cases(plan, options.paths)
        pool = labeled_pool(present, find_cases(ensure_sources(present, options.paths),
                                                [*present.labeled, *present.reference]))
        if len(pool) == len(plan.labeled):
            logger.warning("the labeled set is the same for every seed (no reference case has ground truth in a "
                           "source of the labeled cases): seeds differ in the reference split and the training "
                           "seed only")
        plans = {(s, m): plan_for_seed(plan, s, m, options.generations, options.views, pool=pool)
                 for s in seeds for m in methods}

        # Seed s builds its dataset under dataset_id + s: a clash on the last seed is found now, not
        # after hours of the first seeds' training.
        clashes = [f"seed {s}: {problem}" for s in seeds for problem in dataset_id_problems(plans[(s, baseline)],
                                                                                           options.paths)]
        if clashes:
            raise InputError("dataset ids of the comparison's seeds are taken:\n  - " + "\n  - ".join(clashes))
        skipped = []
        for s in seeds:
            shared_ctx = None
            for m in methods:
                p = plans[(s, m)]
                run_dir = out / f"seed{s}" / m
                busy = driven_elsewhere(run_dir)
                if busy:
                    skipped.append(f"seed {s} {m}")
                    if m == baseline:
                        logger.warning("seed %d skipped: its labeled-only run (which trains the M0 every method of "
                                       "the seed shares) is being driven elsewhere: %s", s, busy)
                        break
                    logger.warning("seed %d, %s skipped: %s", s, m, busy)
                    continue
                opts = DriverOptions(run_dir=run_dir, paths=options.paths, executor=options.executor,
                                     device=options.device, num_processes=options.num_processes,
                                     defer_test_scores=True)
                ctx = make_context(p, opts)
                if m == baseline:
                    shared_ctx = ctx
                    run_dir.mkdir(parents=True, exist_ok=True)
                    write_json({"key": generation_zero_key(p)}, run_dir / "g0_key.json")
                else:
                    steps = build_schedule(p, reference_subsets(p), get_method(m))
                    n = adopt_generation_zero(shared_ctx, ctx, steps)
                    logger.info("seed %d, %s: %d generation-0 step(s) shared with the labeled-only run", s, m, n)
                logger.info("=== seed %d, method %s: %s", s, m, run_dir)
                run_experiment(p, opts)
                # also the runs another invocation wrote (e.g. one per seed, in parallel)
                comparison_report.write_comparison(read_records(out, seeds, methods), out, plan_name=plan.name,
                                                   command=options.command)
    records = read_records(out, seeds, methods)
    if skipped:
        if records:  # after a skipped last run the tables were not rewritten yet
            comparison_report.write_comparison(records, out, plan_name=plan.name, command=options.command)
        logger.warning("skipped because another process is driving them: %s. Rerun this command (or add "
                       "--report-only) once they have finished, for tables that include them.", ", ".join(skipped))
    return records


def driven_elsewhere(run_dir: Path) -> Optional[str]:
    """The lock error's message when another process holds ``run_dir``'s lock, else ``None``."""
    try:
        with RunLock(run_dir):
            return None
    except RunLockedError as e:
        return str(e)

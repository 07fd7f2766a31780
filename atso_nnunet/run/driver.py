"""The ATSO driver: prepare the data, run the schedule with resume, write reports.

``run_experiment`` is what ``atso_nnunet_run`` calls. It

1. validates the plan and its overrides, before any work;
2. prepares the data once: builds missing synthetic sources, checks the sources hold every case,
   materialises the experiment dataset and plans / preprocesses it for every view (nnU-Net);
3. walks the schedule (:mod:`atso_nnunet.schedule`) batch by batch: independent nnU-Net trainings
   and predictions of a batch go to the executor together, plugin steps run in-process;
4. writes the report after every batch that produced scores (assembled from the schedule's
   declared outputs, :func:`atso_nnunet.evaluation.report.assemble`).

What a method adds to the schedule is the method object's business (:mod:`atso_nnunet.methods`);
how each step kind runs is :mod:`atso_nnunet.run.steps`'.

What is done is read from the markers in the run folder, written after each step's outputs, so
rerunning the same command continues where it stopped and never redoes a finished step.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from atso_nnunet.data import layout
from atso_nnunet.evaluation import report as report_mod
from atso_nnunet.errors import InputError
from atso_nnunet.execution.jobs import Executor
from atso_nnunet.io import read_json, write_json
from atso_nnunet.methods import get_method
from atso_nnunet.plan import ExperimentPlan, plan_changes, reference_subsets, resolved, source_dir
from atso_nnunet.nnunet.commands import stray_trainer_variables
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.run.progress import StepProgress
from atso_nnunet.run.rundir import RunDir, RunLock
from atso_nnunet.run import steps as runners
from atso_nnunet.run.context import RunContext
from atso_nnunet.run.steps import PLUGIN_RUNNERS
from atso_nnunet.schedule import Step, build_schedule, steps_by_id, topological_batches
from atso_nnunet.schedule.cost import training_cost
from atso_nnunet.run.prepare import drop_absent_cases, prepare, task_classes
from atso_nnunet.run.refusal import removed_on_refusal

logger = logging.getLogger(__name__)

PREPARE = "prepare"



@dataclass
class DriverOptions:
    """How to run an experiment.

    Attributes:
        run_dir: the run folder (outputs, markers, logs, report).
        paths: nnU-Net folders; raw and preprocessed are shared, each model gets its own results root.
        executor: runs the nnU-Net jobs (``atso_nnunet.execution.make_executor``).
        device: ``cpu`` or ``cuda``.
        num_processes: processes for in-process preprocessing and ingestion.
        dry_run: print every command instead of running anything.
        fresh: delete the run folder's previous outputs first (the user asked for it).
        only_step: run just this step id (its inputs must be finished), for a team's own scheduler.
        sec_per_iter: seconds per training iteration, for the budget ``--dry-run`` prints.
        defer_test_scores: score nothing on E (read no test label) before every training and
            pseudo-labelling step of the run has finished (the comparison runs this way).
    """

    run_dir: Path
    paths: NnUNetPaths
    executor: Optional[Executor] = None
    device: str = "cpu"
    num_processes: int = 2
    dry_run: bool = False
    fresh: bool = False
    only_step: Optional[str] = None
    defer_test_scores: bool = False
    sec_per_iter: Optional[float] = None


def default_run_dir(paths: NnUNetPaths, plan: ExperimentPlan) -> Path:
    """``$nnUNet_results/atso_runs/Dataset<id>_<name>__<method>``."""
    return paths.results / "atso_runs" / f"{layout.dataset_folder_name(plan.dataset_id, plan.dataset_name)}__{plan.method}"


def _run_batch(ctx: RunContext, batch: Sequence[Step], executor: Executor, progress: StepProgress) -> None:
    run = ctx.run
    todo = [s for s in batch if not run.is_done(s.id)]
    # plugin steps first (cheap; independent of the jobs of the same batch)
    for step in todo:
        runner = PLUGIN_RUNNERS.get(step.kind)
        if runner is not None:
            t0 = time.time()
            info = runner(ctx, step)
            run.mark_done(step.id, time.time() - t0, **info)
            progress.finished(step.id, time.time() - t0)
    jobs, owners = [], {}
    for step in todo:
        if step.kind == "train":
            job = runners.train_job(ctx, step)
            jobs.append(job)
            owners[job.name] = [step]
    # One nnUNetv2_predict per model and view (R and E together). A group with any unfinished
    # step is predicted whole again, since its folder is cleared first.
    for group in runners.prediction_groups(batch).values():
        if all(run.is_done(s.id) for s in group):
            continue
        runners.clear_partial_prediction(ctx, group)
        job = runners.predict_job(ctx, group)
        jobs.append(job)
        owners[job.name] = group
    if not jobs:
        return
    logger.info("running %d nnU-Net job(s): %s", len(jobs), ", ".join(j.name for j in jobs))
    results = executor.run_batch(jobs)
    from atso_nnunet.nnunet.trainers.resumes import resume_summary     # the trainer's record of its --c resumes

    for res in results:
        for step in owners[res.name]:
            extra = resume_summary(ctx.model_folder(step.output)) if step.kind == "train" else {}
            run.mark_done(step.id, res.wall_s, log=str(res.log_path), attempts=res.attempts, **extra)
            progress.finished(step.id, res.wall_s)


def _record_plan(run: RunDir, plan: ExperimentPlan, write: bool = True) -> None:
    """Write the resolved plan into the run folder; refuse a folder that holds another plan.

    A folder whose run never started (no step finished) is taken over, with a warning. With
    ``write=False`` only the check is made (before ``prepare``, whose data checks must pass
    before anything is recorded).
    """
    plan_data = resolved(plan)
    if run.plan_file.is_file():
        changed = plan_changes(json.loads(run.plan_file.read_text()), plan_data)
        if changed:
            if not run.started():
                # A run refused before its first step (or only dry-run) holds nothing to protect.
                logger.warning("%s held a run of another plan that never started (no step finished); this plan "
                               "takes it over (fields changed: %s)", run.root, ", ".join(changed))
                if write:
                    write_json(plan_data, run.plan_file)
                return
            raise InputError(
                f"{run.root} holds a run of a different plan (fields changed: {', '.join(changed)}). "
                "Use another --run-dir, or --overwrite to delete that run's outputs and start over.")
    if write:
        write_json(plan_data, run.plan_file)


def _wipe(run: RunDir) -> None:
    if run.root.is_dir():
        logger.warning("--overwrite: deleting the previous outputs in %s", run.root)
        for child in run.root.iterdir():
            if child.name == ".driver.lock":
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


@contextmanager
def _log_to_file(path: Path):
    """Copy the package's log lines to the run log; the reason the driver stopped, if it did not
    finish (failed jobs and their logs, a bad input, an interrupt), is the log's last line there,
    so a run read later says why it stopped (the CLI prints it on stderr itself)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("atso_nnunet")
    root.addHandler(handler)
    try:
        yield
    except BaseException as e:
        why = "interrupted (Ctrl-C or SIGTERM)" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        handler.handle(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "driver stopped: %s", (why,), None))
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


def _network_override(plan: ExperimentPlan):
    if plan.network is None:
        return None
    from atso_nnunet.nnunet.planning import NetworkOverride

    return NetworkOverride(**asdict(plan.network))


def training_settings(plan: ExperimentPlan) -> Callable[[str], Dict[str, object]]:
    """The trainer settings of each training role (``plan.training.for_role``); the role
    ``predict`` holds the prediction settings (test-time augmentation)."""
    training = plan.training

    def for_role(role: str) -> Dict[str, object]:
        if role == "predict":
            return {"test_time_augmentation": training.test_time_augmentation}
        return training.for_role(role)

    return for_role


def training_words(plan: ExperimentPlan, steps: Sequence[Step]) -> str:
    """One sentence per training role of the run: the settings its models train with."""
    roles = list(dict.fromkeys(s.training_role for s in steps if s.kind == "train"))
    parts = []
    for role in roles:
        st = plan.training.for_role(role)
        parts.append(f"{role}: " + (", ".join(f"{k} {v}" for k, v in st.items()) or "nnU-Net's defaults"))
    return "Training settings per role (unset = nnU-Net's default): " + "; ".join(parts) + "."


def make_context(plan: ExperimentPlan, options: "DriverOptions") -> RunContext:
    dataset_dir = options.paths.raw / layout.dataset_folder_name(plan.dataset_id, plan.dataset_name)
    return RunContext(plan, options.paths, RunDir(options.run_dir), dataset_dir, device=options.device,
                      num_processes=options.num_processes, training=training_settings(plan))


def run_experiment(plan: ExperimentPlan, options: DriverOptions) -> Optional[report_mod.RunReport]:
    """Run (or continue) an experiment; see the module docstring.

    Returns:
        The report, or None for ``dry_run`` and ``only_step``.

    Raises:
        InputError: bad plan, overrides or data (before any expensive work).
        RunLockedError: another driver is running on ``options.run_dir``.
        StepFailedError: a job failed after its retries (its log is named).
    """
    stray = stray_trainer_variables()
    if stray:
        raise InputError(f"{', '.join(stray)} set in this shell: every job would inherit it and it would beat "
                         "the run's settings. The plan's training (schedule) section is the single source of "
                         f"training settings: unset {' '.join(stray)} and put the value there.")
    if RunDir(options.run_dir).published_file.is_file():
        raise InputError(f"{options.run_dir} holds the published records of a run (scores, no models): it cannot be "
                         "run or continued. Continue the run folder it was published from (see its published.json), "
                         "or give a new run folder.")
    network = _network_override(plan)
    plan = drop_absent_cases(plan, options.paths)
    method = get_method(plan.method)
    steps = build_schedule(plan, reference_subsets(plan), method, task_classes(plan, options.paths))
    check_step_id(options.only_step, steps)
    ctx = make_context(plan, options)
    run = ctx.run
    from atso_nnunet.run.preflight import preflight

    refused = None
    if not run.is_done(PREPARE):        # a prepared run passed it and needs its sources no more
        try:
            preflight(plan, options.paths)  # before anything is written in the run folder
        except InputError as e:
            if not options.dry_run:
                raise
            refused = e
    if options.dry_run:
        from atso_nnunet.run.dryrun import print_commands, print_schedule

        if refused is not None:
            # The schedule and the budget come from the plan's case lists alone: a team sees them
            # before it converts its data; then the problems, and nothing is written.
            print_schedule(ctx, steps, options.sec_per_iter)
            raise refused

        # Only the resolved plan and the trainer run configs are written, so the printed commands run as given.
        with removed_on_refusal([run.root]):
            _record_plan(run, plan)
            print_commands(ctx, steps, options.sec_per_iter)
        return None
    paths = options.paths
    made = [run.root, paths.raw, paths.preprocessed, paths.results, ctx.dataset_dir,
            paths.preprocessed / ctx.dataset_dir.name]
    executor = options.executor
    if executor is None:
        from atso_nnunet.execution.options import make_executor

        executor = make_executor("local")
    # a run refused by the checks that need the data built (or planned) leaves nothing behind
    with removed_on_refusal(made, keep=lambda: run.is_done(PREPARE), before_removal=getattr(executor, "close", None)):
        return _drive(ctx, steps, network, options, executor)


def check_step_id(step_id: Optional[str], steps: Sequence[Step]) -> None:
    """``--step``: ``prepare`` or a step of the schedule, checked before any work (with or without ``--dry-run``).

    Raises:
        InputError: naming the id, the closest ids and where to see them all.
    """
    if step_id is None or step_id == PREPARE or step_id in steps_by_id(steps):
        return
    import difflib

    close = difflib.get_close_matches(step_id, [PREPARE, *(s.id for s in steps)], n=3)
    raise InputError(f"--step {step_id}: no such step" + (f" (did you mean {', '.join(close)}?)" if close else "")
                     + "; see --dry-run for the step ids, or give --step prepare")


def _drive(ctx: RunContext, steps: Sequence[Step], network, options: DriverOptions, executor: Executor):
    """The run itself (not a dry run), after every check that needs no written file."""
    plan, run = ctx.plan, ctx.run
    options.paths.makedirs()
    run.root.mkdir(parents=True, exist_ok=True)
    with RunLock(run.root), _log_to_file(run.log_file):
        if options.fresh:
            _wipe(run)
        stale = run.remove_stale_temporaries()
        if stale:
            logger.info("removed %d temporary file(s) left by an interrupted driver", len(stale))
        _record_plan(run, plan, write=run.started())
        logger.info("run folder: %s (plan '%s', method %s, %d generation(s), views %s)", run.root, plan.name,
                    plan.method, plan.generations, ", ".join(plan.views))
        if plan.note:
            logger.info("plan note: %s", plan.note)
        if options.only_step != PREPARE and not all(run.is_done(s.id) for s in steps):
            executor.warm_up(run.root / "logs")  # warm workers import while the data are prepared
        if not run.is_done(PREPARE):
            t0 = time.time()
            prepare(ctx, network)
            _record_plan(run, plan)    # the plan passed every check: now it is recorded
            run.mark_done(PREPARE, time.time() - t0)
        if options.only_step == PREPARE:
            return None
        from atso_nnunet.run.ground_truth import reopen_scoring

        reopen_scoring(ctx, steps, [source_dir(options.paths, s) for s in plan.sources])
        progress = StepProgress(steps, run.is_done, parallel=getattr(executor, "max_parallel", 1))
        if options.only_step:
            return _run_only(ctx, steps, options.only_step, executor, progress)
        logger.info("%d steps, %d already done", len(steps), sum(run.is_done(s.id) for s in steps))
        phases = [steps]
        if options.defer_test_scores:
            test_scores = {s.id for s in steps if s.kind == "evaluate" and s.role == "test_eval"}
            phases = [[s for s in steps if s.id not in test_scores and s.kind != "report"], steps]
        for batch in (b for phase in phases for b in topological_batches(phase)):
            if all(run.is_done(s.id) for s in batch):
                continue
            _run_batch(ctx, [s for s in batch if s.kind != "report"], executor, progress)
            freed = runners.release_probabilities(ctx, steps)
            if freed:
                logger.info("released %.1f MB of probabilities no fusion needs any more", freed / 2**20)
            if any(s.report_cells or s.kind == "report" for s in batch):
                # the plot is redrawn once per generation (when M_t's test score arrives)
                plot = any(c.column in ("test", "final") for s in batch for c in s.report_cells)
                report_mod.write_report(report_of(ctx, steps), run.root, with_plot=plot)
                if any(s.kind == "report" for s in batch):
                    run.mark_done("report", 0.0)
        rep = report_of(ctx, steps)
        report_mod.write_report(rep, run.root)
        return rep


def _run_only(ctx: RunContext, steps: Sequence[Step], step_id: str, executor: Executor, progress: StepProgress):
    by_id = steps_by_id(steps)
    step = by_id[step_id]       # the id was checked before any work (check_step_id)
    for i in step.inputs:  # nnU-Net commands a team ran by hand (from --dry-run) leave no marker
        if not ctx.run.is_done(i) and runners.outputs_present(ctx, by_id[i]):
            ctx.run.mark_done(i, 0.0, adopted=True)
    pending = [i for i in step.inputs if not ctx.run.is_done(i)]
    if pending:
        raise InputError(f"--step {step_id}: its inputs are not finished: {', '.join(pending)}")
    if step.kind == "report":
        rep = report_of(ctx, steps)
        report_mod.write_report(rep, ctx.run.root)
        ctx.run.mark_done("report", 0.0)
        return rep
    _run_batch(ctx, [step], executor, progress)
    return None


def report_of(ctx: RunContext, steps: Sequence[Step]) -> report_mod.RunReport:
    """The report as far as the run has got, from the schedule's declared outputs."""
    run = ctx.run
    method = get_method(ctx.plan.method)
    logs = {s.id: str(run.step_log(s.id).relative_to(run.root)) for s in steps
            if s.kind in ("train", "predict") and run.step_log(s.id).exists()}
    rep = report_mod.assemble(steps, lambda a: read_json(ctx.path(a)), run.is_done, method=method.name,
                              plan_name=ctx.plan.name, metric=ctx.plan.metric,
                              how_evaluated=f"{method.describe(ctx.plan)} {training_words(ctx.plan, steps)}",
                              logs=logs)
    rep.test_cases = len(ctx.plan.test)
    rep.final_label_round = method.final_label_round(ctx.plan)
    rep.cost = training_cost(ctx.plan, steps)
    rep.ship_generation, rep.last_generation = ctx.plan.ship_generation, ctx.plan.generations
    rep.ship_models = {t: method.generation_model(ctx.plan, t) for t in range(ctx.plan.generations + 1)}
    rep.resumed_trainings = run.resumed_trainings([s.id for s in steps if s.kind == "train"])
    return rep

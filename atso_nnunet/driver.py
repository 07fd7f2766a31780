"""The ATSO driver: prepare the data, run the schedule with resume, write reports.

``run_experiment`` is what ``atso_nnunet_run`` calls. It

1. validates the plan and its overrides, before any work;
2. prepares the data once: builds missing synthetic sources, checks the sources hold every case,
   materialises the experiment dataset and plans / preprocesses it for every view (nnU-Net);
3. walks the schedule (:mod:`atso_nnunet.schedule`) batch by batch: independent nnU-Net trainings
   and predictions of a batch go to the executor together, plugin steps run in-process;
4. writes the report after every batch that produced scores.

What is done is read from the markers in the run folder, written after each step's outputs, so
rerunning the same command continues where it stopped and never redoes a finished step.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from atso_nnunet import report as report_mod
from atso_nnunet.errors import InputError
from atso_nnunet.execution import Executor
from atso_nnunet.experiment import ExperimentPlan, reference_subsets, resolved, validate_against_dataset
from atso_nnunet.io import write_json
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.rundir import RunDir, RunLock
from atso_nnunet.schedule import Step, build_schedule, topological_batches
from atso_nnunet import steps as steps_mod

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
    """

    run_dir: Path
    paths: NnUNetPaths
    executor: Optional[Executor] = None
    device: str = "cpu"
    num_processes: int = 2
    dry_run: bool = False
    fresh: bool = False
    only_step: Optional[str] = None


def default_run_dir(paths: NnUNetPaths, plan: ExperimentPlan) -> Path:
    """``$nnUNet_results/atso_runs/Dataset<id>_<name>__<method>``."""
    return paths.results / "atso_runs" / f"Dataset{plan.dataset_id:03d}_{plan.dataset_name}__{plan.method}"


# ---------------------------------------------------------------------------------------------
# preparation


def source_dir(paths: NnUNetPaths, source: str) -> Path:
    """Folder of a plan source: an absolute path, or a dataset name under ``nnUNet_raw``."""
    p = Path(source)
    return p if p.is_absolute() else paths.raw / source


def _missing_source_error(plan: ExperimentPlan, source: str, where: Path) -> InputError:
    from atso_nnunet.data.converters import conversion_command

    cmd = conversion_command(source) or plan.convert_hint
    how = f"Create it first:\n  {cmd}" if cmd else "Convert or copy that nnU-Net raw dataset there first."
    return InputError(f"source dataset {source} not found at {where} (plan '{plan.name}'). {how}")


def ensure_sources(plan: ExperimentPlan, paths: NnUNetPaths) -> List[Path]:
    """Source dataset folders; synthetic sources named in ``plan.synthetic`` are generated if missing.

    ``plan.synthetic`` maps a source name to the generator's options
    (``domain``, ``n_cases``, ``seed``, ``shape``, ``spacing``, ``case_prefix``).
    """
    from atso_nnunet.data import synthetic

    out = []
    for source in plan.sources:
        where = source_dir(paths, source)
        if not where.is_dir():
            spec = (plan.synthetic or {}).get(source)
            if spec is None:
                raise _missing_source_error(plan, source, where)
            spec = dict(spec)
            n_cases = spec.pop("n_cases")
            prefix = spec.pop("case_prefix", None)
            dataset_id = int(source.split("_", 1)[0][len("Dataset"):])
            logger.info("generating synthetic source %s (%d cases) ...", source, n_cases)
            t0 = time.time()
            cfg = synthetic.SyntheticConfig(**spec)
            synthetic.write_source_dataset(paths.raw, dataset_id, source.split("_", 1)[1], n_cases, cfg,
                                           case_prefix=prefix)
            logger.info("generated %s in %.1f s", source, time.time() - t0)
        out.append(where)
    return out


def prepare(ctx: steps_mod.RunContext, network) -> None:
    """Sources -> experiment dataset -> tri-view plans and preprocessed data (each idempotent)."""
    from atso_nnunet.data.materialize import find_cases, materialize
    from atso_nnunet.planning import plan_and_preprocess

    plan = ctx.plan
    sources = ensure_sources(plan, ctx.paths)
    cases = find_cases(sources, [*plan.labeled, *plan.reference, *plan.test])
    validate_against_dataset(plan, cases, [c for c, f in cases.items() if f.label is not None],
                             origin=f"plan '{plan.name}' against its sources")
    materialize(ctx.dataset_dir, sources, plan.labeled, plan.reference, plan.test)
    from atso_nnunet.data.checks import check_raw_dataset

    check_raw_dataset(ctx.dataset_dir, ground_truth_values=[int(k) for k in plan.eval_label_map])
    t0 = time.time()
    plan_and_preprocess(ctx.paths, plan.dataset_id, views=plan.views, configuration=plan.configuration,
                        network=network, num_processes=ctx.num_processes)
    logger.info("tri-view planning and preprocessing ready (%.1f s)", time.time() - t0)


# ---------------------------------------------------------------------------------------------
# running


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class _Progress:
    """One log line per finished step: count, duration, elapsed time, what comes next."""

    def __init__(self, steps: Sequence[Step], done: Callable[[str], bool]):
        self.total = len(steps)
        self.order = [s.id for s in steps]
        self.done = done
        self.t0 = time.time()

    def finished(self, step_id: str, seconds: float) -> None:
        n = sum(1 for s in self.order if self.done(s))
        nxt = next((s for s in self.order if not self.done(s)), None)
        logger.info("[%d/%d] %s done in %.1f s (elapsed %s)%s", n, self.total, step_id, seconds,
                    _fmt(time.time() - self.t0), f"; next: {nxt}" if nxt else "")


def _run_batch(ctx: steps_mod.RunContext, batch: Sequence[Step], executor: Executor, progress: _Progress) -> None:
    run = ctx.run
    todo = [s for s in batch if not run.is_done(s.id)]
    # plugin steps first (cheap; independent of the jobs of the same batch)
    for step in todo:
        if step.kind in ("ingest", "fuse", "evaluate"):
            t0 = time.time()
            runner = {"ingest": steps_mod.run_ingest, "fuse": steps_mod.run_fuse,
                      "evaluate": steps_mod.run_evaluate}[step.kind]
            info = runner(ctx, step)
            run.mark_done(step.id, time.time() - t0, **info)
            progress.finished(step.id, time.time() - t0)
    jobs, owners = [], {}
    for step in todo:
        if step.kind == "train":
            job = steps_mod.train_job(ctx, step)
            jobs.append(job)
            owners[job.name] = [step]
    # One nnUNetv2_predict per model and view (R and E together). A group with any unfinished
    # step is predicted whole again, since its folder is cleared first.
    groups: Dict[tuple, List[Step]] = OrderedDict()
    for step in batch:
        if step.kind == "predict":
            groups.setdefault((step.model, step.view), []).append(step)
    for group in groups.values():
        if all(run.is_done(s.id) for s in group):
            continue
        steps_mod.clear_partial_prediction(ctx, group)
        job = steps_mod.predict_job(ctx, group)
        jobs.append(job)
        owners[job.name] = group
    if not jobs:
        return
    logger.info("running %d nnU-Net job(s): %s", len(jobs), ", ".join(j.name for j in jobs))
    results = executor.run_batch(jobs)
    for res in results:
        for step in owners[res.name]:
            run.mark_done(step.id, res.wall_s, log=str(res.log_path), attempts=res.attempts)
            progress.finished(step.id, res.wall_s)


def _record_plan(run: RunDir, plan: ExperimentPlan) -> None:
    """Write the resolved plan into the run folder; refuse a folder that holds another plan."""
    plan_data = resolved(plan)
    if run.plan_file.is_file():
        old = json.loads(run.plan_file.read_text())
        if old != plan_data:
            changed = sorted(k for k in set(old) | set(plan_data) if old.get(k) != plan_data.get(k))
            raise InputError(
                f"{run.root} holds a run of a different plan (fields changed: {', '.join(changed)}). "
                "Use another --run-dir, or --fresh to delete that run's outputs and start over.")
    write_json(plan_data, run.plan_file)


def _wipe(run: RunDir) -> None:
    if run.root.is_dir():
        logger.warning("--fresh: deleting the previous outputs in %s", run.root)
        for child in run.root.iterdir():
            if child.name == ".driver.lock":
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


@contextmanager
def _log_to_file(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("atso_nnunet")
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def _network_override(plan: ExperimentPlan):
    if not plan.network:
        return None
    from atso_nnunet.planning import NetworkOverride

    try:
        return NetworkOverride(**plan.network)
    except TypeError as e:
        raise InputError(f"plan field network: {e}") from None


def run_experiment(plan: ExperimentPlan, options: DriverOptions) -> Optional[report_mod.RunReport]:
    """Run (or continue) an experiment; see the module docstring.

    Returns:
        The report, or None for ``dry_run``.

    Raises:
        InputError: bad plan, overrides or data (before any expensive work).
        RunLockedError: another driver is running on ``options.run_dir``.
        StepFailedError: a job failed after its retries (its log is named).
    """
    schedule = steps_mod.check_schedule(plan.schedule)
    network = _network_override(plan)
    split = reference_subsets(plan)
    steps = build_schedule(plan, split)
    run = RunDir(options.run_dir)
    dataset_dir = options.paths.raw / f"Dataset{plan.dataset_id:03d}_{plan.dataset_name}"
    ctx = steps_mod.RunContext(plan, options.paths, run, dataset_dir, device=options.device,
                               num_processes=options.num_processes, schedule=schedule)
    if options.dry_run:
        # Only the resolved plan and the trainer run configs are written, so the printed commands run as given.
        _record_plan(run, plan)
        print_commands(ctx, steps)
        return None
    run.root.mkdir(parents=True, exist_ok=True)
    with RunLock(run.root), _log_to_file(run.log_file):
        if options.fresh:
            _wipe(run)
        _record_plan(run, plan)
        logger.info("run folder: %s (plan '%s', method %s, %d generation(s), views %s)", run.root, plan.name,
                    plan.method, plan.generations, ", ".join(plan.views))
        if not run.is_done(PREPARE):
            t0 = time.time()
            prepare(ctx, network)
            run.mark_done(PREPARE, time.time() - t0)
        if options.only_step == PREPARE:
            return None
        executor = options.executor
        if executor is None:
            from atso_nnunet.execution import make_executor

            executor = make_executor("local")
        progress = _Progress(steps, run.is_done)
        if options.only_step:
            return _run_only(ctx, steps, options.only_step, executor, progress)
        logger.info("%d steps, %d already done", len(steps), sum(run.is_done(s.id) for s in steps))
        for batch in topological_batches(steps):
            if all(run.is_done(s.id) for s in batch):
                continue
            _run_batch(ctx, [s for s in batch if s.kind != "report"], executor, progress)
            if any(s.kind in ("evaluate", "report") for s in batch):
                rep = collect_report(ctx, steps, split)
                report_mod.write_report(rep, run.root)
                if any(s.kind == "report" for s in batch):
                    run.mark_done("report", 0.0)
        rep = collect_report(ctx, steps, split)
        report_mod.write_report(rep, run.root)
        return rep


def _run_only(ctx, steps: Sequence[Step], step_id: str, executor: Executor, progress: _Progress):
    by_id = {s.id: s for s in steps}
    if step_id not in by_id:
        raise InputError(f"--step {step_id}: no such step; see --dry-run for the step ids")
    step = by_id[step_id]
    for i in step.inputs:  # nnU-Net commands a team ran by hand (from --dry-run) leave no marker
        if not ctx.run.is_done(i) and _outputs_present(ctx, by_id[i]):
            ctx.run.mark_done(i, 0.0, adopted=True)
    pending = [i for i in step.inputs if not ctx.run.is_done(i)]
    if pending:
        raise InputError(f"--step {step_id}: its inputs are not finished: {', '.join(pending)}")
    if step.kind == "report":
        rep = collect_report(ctx, steps, reference_subsets(ctx.plan))
        report_mod.write_report(rep, ctx.run.root)
        ctx.run.mark_done("report", 0.0)
        return rep
    _run_batch(ctx, [step], executor, progress)
    return None


def _outputs_present(ctx: steps_mod.RunContext, step: Step) -> bool:
    """Whether a train / predict step's nnU-Net outputs are all there (run outside the driver)."""
    if step.kind == "train":
        trainer = steps_mod.trainer_name(step.model)
        return (ctx.model_folder(step.model, step.view, trainer) / "checkpoint_final.pth").is_file()
    if step.kind == "predict":
        out = ctx.run.predictions(step.model, step.view)
        return all((out / f"{c}.nii.gz").is_file() for c in step.cases)
    return False


def print_commands(ctx: steps_mod.RunContext, steps: Sequence[Step]) -> None:
    """``--dry-run``: every step as a command, in order (nnU-Net's own commands for train/predict)."""
    base = f"atso_nnunet_run --plan {ctx.run.root / 'plan.json'} --run-dir {ctx.run.root}"
    lines = [f"# {len(steps)} steps; plugin steps run with: {base} --step <id>",
             f"# prepare (sources, experiment dataset, tri-view plan + preprocess): {base} --step {PREPARE}"]
    batches = topological_batches(steps)
    for i, batch in enumerate(batches):
        lines.append(f"# batch {i + 1}/{len(batches)} ({len(batch)} independent step(s))")
        groups: Dict[tuple, List[Step]] = OrderedDict()
        for s in batch:
            if s.kind == "train":
                lines.append(f"# {s.id}\n" + steps_mod.describe_job(steps_mod.train_job(ctx, s)))
            elif s.kind == "predict":
                groups.setdefault((s.model, s.view), []).append(s)
            else:
                lines.append(f"{base} --step {s.id}")
        for group in groups.values():
            job = steps_mod.predict_job(ctx, group, link=False)
            lines.append(f"# {', '.join(s.id for s in group)}\n" + steps_mod.describe_job(job))
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# report


def _score(ev: Optional[dict], key: str) -> Optional[float]:
    if not ev or not ev.get("available"):
        return None
    return ev.get(key)


def _agreements(ctx: steps_mod.RunContext, t: int, split, models: Sequence[str]) -> Dict[str, Optional[float]]:
    from atso_nnunet.evaluation import agreement

    out = {}
    folders = [ctx.run.fused(f"fused/{m}/R") for m in models]
    done = all(ctx.run.is_done(f"g{t}/fuse/{m}/R") for m in models)
    for j, part in enumerate(split, 1):
        if not done:
            out[f"R{j}"] = None
            continue
        pairs = [(a, b) for i, a in enumerate(folders) for b in folders[i + 1:]]
        vals = [agreement(a, b, cases=list(part), foreground=ctx.foreground).mean for a, b in pairs]
        out[f"R{j}"] = sum(vals) / len(vals) if vals else None
    return out


def _cached(ctx: steps_mod.RunContext, name: str, compute: Callable[[], dict]) -> dict:
    path = ctx.run.root / "eval" / "monitors" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    if all(v is not None for v in _flatten(value)):
        write_json(value, path)
    return value


def _flatten(d) -> list:
    if isinstance(d, dict):
        return [x for v in d.values() for x in _flatten(v)]
    return [d]


def collect_report(ctx: steps_mod.RunContext, steps: Sequence[Step], split) -> report_mod.RunReport:
    """Read the scores in the run folder into a :class:`~atso_nnunet.report.RunReport`."""
    from atso_nnunet.evaluation import agreement

    plan, run = ctx.plan, ctx.run
    metric_key = f"{plan.metric}_dsc"
    K = len(split)
    rep = report_mod.RunReport(method=plan.method, plan_name=plan.name, metric=plan.metric)
    rep.how_evaluated = {
        "atso": "M_t on E (t >= 1) is the majority vote of the ensemble of the half-models M_t^(k) over all "
                "views; @R scores the fold-swapped pseudo-labels R_t. The final model, trained on S + all of R, "
                "is scored at the end.",
        "stso": "M_t on E is the tri-view majority vote of the generation's model; @R scores its pseudo-labels.",
        "self": "M_t on E is the tri-view majority vote of the generation's model; @R scores its pseudo-labels.",
        "supervised": "M0 trained on the labeled set only, tri-view majority vote.",
    }[plan.method]
    last = 0 if plan.method == "supervised" else plan.generations
    for t in range(0, last + 1):
        g = report_mod.GenerationRecord(generation=t)
        ev_r = run.read_evaluation(f"R_g{t}", "R")
        g.reference_dsc = _score(ev_r, "mean_dsc")
        test_model = "M0" if t == 0 else (f"g{t}_ens" if plan.method == "atso" else f"g{t}_all")
        ev_e = run.read_evaluation(test_model, "E")
        g.test_dsc, g.test_dsc_mean, g.test_dsc_global = (_score(ev_e, metric_key), _score(ev_e, "mean_dsc"),
                                                          _score(ev_e, "global_dsc"))
        if plan.method == "atso" and K > 1:
            for j in range(1, K + 1):
                for k in range(1, K + 1):
                    src = ("R_g0", f"R_h{j}") if t == 0 else (f"g{t}_h{k}", f"R_h{j}")
                    g.half_models[f"M{k}@R{j}"] = _score(run.read_evaluation(*src), "mean_dsc")
            if t >= 1:
                models = [f"g{t}_h{k}" for k in range(1, K + 1)]
                g.agreement = _cached(ctx, f"agreement_g{t}", lambda: _agreements(ctx, t, split, models))
        if t >= 1 and run.is_done(f"g{t}/fuse/R_g{t}") and run.is_done(f"g{t - 1}/fuse/R_g{t - 1}"):
            g.change = _cached(ctx, f"change_g{t}", lambda: {"change": agreement(
                run.pseudo_labels(f"R_g{t}"), run.pseudo_labels(f"R_g{t - 1}"), cases=list(plan.reference),
                foreground=ctx.foreground).mean})["change"]
        ingest_marker = run.marker(f"{'final' if t == plan.generations and plan.method == 'atso' else f'g{t + 1}'}"
                                   f"/ingest/R_g{t}/{plan.views[0]}")
        if ingest_marker.is_file():
            g.empty_pseudo_labels = len(json.loads(ingest_marker.read_text()).get("empty_cases", []))
        if any(v is not None for v in (g.reference_dsc, g.test_dsc, g.change)) or run.is_done(f"g{t}/fuse/R_g{t}"):
            rep.generations.append(g)
    ev_f = run.read_evaluation(plan.final_model, "E")
    if ev_f is not None:
        rep.final = {"test_dsc_mean": _score(ev_f, "mean_dsc"), "test_dsc_global": _score(ev_f, "global_dsc")}
    rep.logs = {s.id: str(run.step_log(s.id).relative_to(run.root)) for s in steps
                if s.kind in ("train", "predict") and run.step_log(s.id).exists()}
    return rep

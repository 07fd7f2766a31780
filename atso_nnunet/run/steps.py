"""Running the steps of a schedule: nnU-Net commands as jobs, plugin steps in-process.

:mod:`atso_nnunet.schedule` decides *what* runs; this module knows *how*:

- ``train`` and ``predict`` become :class:`~atso_nnunet.execution.Job` s (``nnUNetv2_train`` /
  ``nnUNetv2_predict`` argument lists) handed to an executor; the predictions of R and E by one
  model and view are one ``nnUNetv2_predict`` call;
- ``ingest``, ``fuse``, ``evaluate`` and ``monitor`` run in the driver's process (they are cheap);
  :data:`PLUGIN_RUNNERS` maps each kind to its function.

Every artefact a step names is resolved to a path by
:meth:`atso_nnunet.run.context.RunContext.path`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.execution.jobs import Job
from atso_nnunet.io import read_array, write_array, write_json
from atso_nnunet.nnunet.commands import WANDB_NAME_VAR, job_env, predict_command, train_command
from atso_nnunet.schedule import GroundTruth, Model, Prediction, Step
from atso_nnunet.views import plans_identifier
from atso_nnunet.run.context import RunContext


logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# nnU-Net commands


def _job_name(step_id: str) -> str:
    return step_id.replace("/", "__")


def train_job(ctx: RunContext, step: Step, preview: bool = False) -> Job:
    """The ``nnUNetv2_train`` job of a training step (and its run config file).

    ``preview`` (``--dry-run``): a stability filter that has not run yet keeps every case.
    """
    from atso_nnunet.nnunet.trainers.config import TrainerRunConfig

    model: Model = step.output
    settings = dict(ctx.training(step.training_role))
    if step.labels is not None:
        settings["pseudo_label_dir"] = str(ctx.path(step.labels))
        settings["pseudo_label_cases"] = filtered_cases(ctx, step, preview)
    if step.init_from is not None:
        settings["init"] = "checkpoint"
        settings["init_checkpoint"] = str(ctx.model_folder(step.init_from) / "checkpoint_final.pth")
    config_file = ctx.run.run_config(step.id)
    TrainerRunConfig.from_dict(settings).to_json(config_file)
    common = dict(dataset_id=ctx.plan.dataset_id, configuration=ctx.plan.configuration, fold=ctx.plan.fold,
                  trainer=model.trainer, plans=plans_identifier(model.view), device=ctx.device)
    # A fold folder left by an interrupted run: continue from its latest checkpoint (--c).
    started = ctx.model_folder(model).is_dir()
    env = job_env(ctx.model_paths(model), run_config=config_file)
    if ctx.device == "cpu" and "nnUNet_n_proc_DA" not in os.environ:
        # On a CPU the augmentation workers compete with training for the same cores and each
        # pays an nnU-Net import at start; single-threaded augmentation is faster there.
        env["nnUNet_n_proc_DA"] = "0"
    env[WANDB_NAME_VAR] = step.id  # the training's W&B run, when nnU-Net logs to W&B (README)
    return Job(name=_job_name(step.id), argv=train_command(continue_training=started, **common),
               resume_argv=train_command(continue_training=True, **common), env=env,
               log_path=ctx.run.step_log(step.id), uses_gpu=ctx.device != "cpu",
               done_marker=training_done_file(ctx.model_folder(model), settings.get("final_validation")))


def training_done_file(model_folder: Path, final_validation: Optional[bool]) -> Path:
    """The file whose presence says a training's work is complete: ``checkpoint_final.pth``
    (written atomically by the trainer), or, where nnU-Net's final validation runs after it
    (``final_validation`` not ``False``), the validation's ``summary.json``.

    It is the training job's ``done_marker``: an executor skips the job, and a SLURM task told to
    stop (time limit, preemption) once it exists lets the command finish instead of requeueing.
    """
    if final_validation is False:
        return model_folder / "checkpoint_final.pth"
    return model_folder / "validation" / "summary.json"


def predict_job(ctx: RunContext, steps: Sequence[Step], link: bool = True) -> Job:
    """One ``nnUNetv2_predict`` job for the predict steps of one model and view (R and/or E)."""
    model: Model = steps[0].output.model
    if any(s.output.model != model for s in steps):
        raise ValueError("predict_job: steps of different models or views")
    parts = "".join(sorted({s.output.part for s in steps}))  # "E", "R" or "ER"
    cases = sorted({c for s in steps for c in s.cases})
    input_dir = _link_inputs(ctx, parts, cases) if link else ctx.run.inputs(parts)
    out = ctx.path(steps[0].output)
    # -npp 0 -nps 0 is nnU-Net's sequential mode: on a CPU its spawned worker pools cost more than they save
    workers = 0 if ctx.device == "cpu" else 2
    tta = ctx.training("predict").get("test_time_augmentation", True)
    argv = predict_command(input_dir, out, ctx.plan.dataset_id, ctx.plan.configuration, ctx.plan.fold, model.trainer,
                           plans_identifier(model.view), device=ctx.device, num_processes_preprocessing=workers,
                           num_processes_segmentation_export=workers, disable_tta=not tta,
                           save_probabilities=any(s.save_probabilities for s in steps))
    return Job(name=_job_name(f"{model.name}/{model.view}/predict_{parts}"), argv=argv,
               env=job_env(ctx.model_paths(model)), log_path=ctx.run.step_log(steps[0].id),
               uses_gpu=ctx.device != "cpu")


def _link_inputs(ctx: RunContext, parts: str, cases: Sequence[str]) -> Path:
    """A folder of links to the images of ``cases`` (what ``nnUNetv2_predict -i`` reads)."""
    folder = ctx.run.inputs(parts)
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        link = folder / f"{case}{layout.CHANNEL}{layout.FILE_ENDING}"
        target = ctx.image(case).resolve()
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target)
    return folder


def describe_job(job: Job) -> str:
    """A copy-pasteable shell line for ``--dry-run`` (only the variables atso_nnunet sets)."""
    keys = [k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer",
                        "ATSO_RUN_CONFIG", "CUDA_VISIBLE_DEVICES", "nnUNet_n_proc_DA") if k in job.env]
    return " ".join([*(f"{k}={shlex.quote(job.env[k])}" for k in keys), shlex.join(job.argv)])


def prediction_groups(steps: Sequence[Step]) -> Dict[Model, List[Step]]:
    """Predict steps grouped by the model (and view) predicting: one nnU-Net call each."""
    groups: Dict[Model, List[Step]] = {}
    for step in steps:
        if step.kind == "predict":
            groups.setdefault(step.output.model, []).append(step)
    return groups


def clear_partial_prediction(ctx: RunContext, steps: Sequence[Step]) -> None:
    """Remove a prediction folder left by an interrupted, unmarked prediction (never trusted)."""
    out = ctx.path(steps[0].output)
    if out.exists():
        shutil.rmtree(out)


def outputs_present(ctx: RunContext, step: Step) -> bool:
    """Whether a train / predict step's nnU-Net outputs are all there (a command run by hand)."""
    if step.kind == "train":
        return (ctx.model_folder(step.output) / "checkpoint_final.pth").is_file()
    if step.kind == "predict":
        out = ctx.path(step.output)
        return all((out / f"{c}{layout.FILE_ENDING}").is_file() for c in step.cases)
    return False


# ---------------------------------------------------------------------------------------------
# plugin steps


def write_mapped_truth(ctx: RunContext, cases: Sequence[str]) -> Path:
    """Copies of R's ground truth with the plan's ``eval_label_map`` applied, for training.

    Scores map labels before comparing (``eval_label_map``: the MSD transfer counts tumour 2 as
    pancreas 1), but a training target must hold the experiment dataset's labels (nnU-Net's and
    the ingestion's checks refuse a 2 the dataset.json does not list). Existing copies are kept:
    their modification time is part of the ingestion cache key.
    """
    from atso_nnunet.evaluation.metrics import _apply_label_map

    out = ctx.run.mapped_truth()
    for case in cases:
        dst = out / f"{case}{layout.FILE_ENDING}"
        if not dst.is_file():
            array, geometry = read_array(layout.label_path(ctx.dataset_dir, layout.LABELS_REF, case))
            write_array(_apply_label_map(array, ctx.eval_label_map()).astype(array.dtype), geometry, dst)
    return out


def run_ingest(ctx: RunContext, step: Step) -> dict:
    """Bring a label set into one view's preprocessed space (cached by content)."""
    from atso_nnunet.pseudolabels.ingest import ingest_pseudolabels

    if isinstance(step.labels, GroundTruth) and ctx.eval_label_map():
        write_mapped_truth(ctx, step.cases)

    res = ingest_pseudolabels(ctx.paths, ctx.plan.dataset_id, plans_identifier(step.view), ctx.plan.configuration,
                              ctx.path(step.labels), cases=step.cases, num_processes=ctx.num_processes)
    if res.empty_cases:
        logger.warning("%s: %d label map(s) without foreground: %s", step.labels.name, len(res.empty_cases),
                       ", ".join(res.empty_cases))
    return {"cache_dir": str(res.cache_dir), "empty_cases": list(res.empty_cases), "reused": res.reused}


def run_fuse(ctx: RunContext, step: Step) -> dict:
    """Fuse each group's predictions (views, models) case by case, in the images' geometry.

    ``vote``: majority vote; ties (an even number of voters, or three or more classes) go to the
    tied class with the highest summed probability, read from the probabilities the predictions
    kept for this purpose; without them the fusion warns with the count of ties it resolved by
    class order. ``mean``: argmax of the mean probability.
    """
    from atso_nnunet.pseudolabels.fuse import PROBABILITIES_ENDING, fuse_folders
    from atso_nnunet.pseudolabels.vote import ties_possible

    out = ctx.path(step.output)
    num_classes = len(ctx.foreground) + 1
    match = volume_match(ctx, step) if step.role == "pseudo_label" else None
    written, tie_break = 0, "lowest"
    for group in step.fuse_groups:
        inputs = list(dict.fromkeys(ctx.path(p) for p in group.predictions))
        refs = {c: ctx.image(c) for c in group.cases}
        tie_break = "lowest"      # no tie can occur (an odd number of voters, two classes)
        if step.fusion == "vote" and ties_possible(len(group.predictions), num_classes):
            have = all((d / f"{c}{PROBABILITIES_ENDING}").is_file() for d in inputs for c in group.cases)
            # without probabilities (released after an earlier fusion, an older version, or odd voters of a
            # multi-class task) "auto" resolves ties by class order and fuse_folders warns with their counts
            tie_break = "probability" if have else "auto"
        written += len(fuse_folders(inputs, out, method=step.fusion, cases=list(group.cases), reference_images=refs,
                                    num_classes=num_classes, tie_break=tie_break, skip_existing=True,
                                    progress=False, foreground_threshold=match.threshold if match else None))
    return {"folder": str(out), "cases": len(step.cases), "written": written, "fusion": step.fusion,
            "tie_break": "lowest (no probabilities)" if tie_break == "auto" else tie_break,
            **({"volume_match": dataclasses.asdict(match)} if match else {})}


def volume_match(ctx: RunContext, step: Step):
    """With the plan's ``pseudo_label_volume: labeled_mean``: the foreground threshold that gives the
    step's pseudo-labels the labeled cases' mean volume (:mod:`atso_nnunet.pseudolabels.volume_prior`);
    None otherwise. One threshold for the whole set, whichever group (half) a case is fused in."""
    if getattr(ctx.plan, "pseudo_label_volume", "predicted") != "labeled_mean":
        return None
    from atso_nnunet.pseudolabels.volume_prior import match_pseudo_label_volume

    if len(ctx.foreground) != 1:
        raise InputError(f"pseudo_label_volume 'labeled_mean' is for tasks with one foreground label; "
                         f"{ctx.dataset_name} has {len(ctx.foreground)}: set it to 'predicted'")
    inputs = {c: list(dict.fromkeys(ctx.path(p) for p in g.predictions)) for g in step.fuse_groups for c in g.cases}
    return match_pseudo_label_volume(inputs, {c: ctx.image(c) for c in step.cases},
                                     [layout.label_path(ctx.dataset_dir, layout.LABELS_TR, c) for c in ctx.plan.labeled])


def release_probabilities(ctx: RunContext, steps: Sequence[Step]) -> int:
    """Delete the probability files a finished schedule no longer needs; returns the bytes freed.

    A prediction's probabilities are deleted once every fusion reading it has finished, so the
    disk holds at most the probabilities of the fusions still to run.
    """
    from atso_nnunet.pseudolabels.fuse import PROBABILITIES_ENDING

    consumers: Dict[Prediction, List[str]] = {}
    for s in steps:
        if s.kind == "fuse":
            for g in s.fuse_groups:
                for p in g.predictions:
                    consumers.setdefault(p, []).append(s.id)
    freed = 0
    for s in steps:
        if s.kind != "predict" or not s.save_probabilities or not ctx.run.is_done(s.id):
            continue
        if not all(ctx.run.is_done(i) for i in consumers.get(s.output, [])):
            continue
        folder = ctx.path(s.output)
        for case in s.cases:
            for ending in (PROBABILITIES_ENDING, ".pkl"):
                f = folder / f"{case}{ending}"
                if f.is_file():
                    freed += f.stat().st_size
                    f.unlink()
    return freed


def run_evaluate(ctx: RunContext, step: Step) -> dict:
    """Score a fused folder against ground truth (recorded as unavailable without it)."""
    from atso_nnunet.evaluation.metrics import evaluate_folder

    gt = ctx.ground_truth_dir(step.role)
    dest = ctx.path(step.output)
    missing = [c for c in step.cases if not layout.label_path(gt, ".", c).exists()]
    if missing:
        write_json({"available": False, "reason": f"no ground truth for {len(missing)} case(s) in {gt}"}, dest)
        return {"available": False}
    res = evaluate_folder(ctx.path(step.reads[0]), gt, cases=list(step.cases), foreground=ctx.foreground,
                          label_map=ctx.eval_label_map(), progress=False)
    res.to_csv(dest.with_suffix(".csv"))
    summary = {"available": True, "mean_dsc": res.score("mean"), "global_dsc": res.score("global"),
               "n_cases": len(res.cases), "details": res.to_dict()}
    write_json(summary, dest)
    return {"available": True, "mean_dsc": summary["mean_dsc"], "global_dsc": summary["global_dsc"]}


def _has_foreground(path: Path) -> bool:
    from atso_nnunet.io import read_array

    return bool((read_array(path)[0] > 0).any())


def run_monitor(ctx: RunContext, step: Step) -> dict:
    """A label-free figure: agreement between label sets, change between generations, empty maps,
    the pseudo-labels' volume (:mod:`atso_nnunet.monitors.drift`) and the stability filter (:mod:`atso_nnunet.monitors.stability`).

    ``agreement`` and ``change`` are DSC between label sets over ``step.cases`` (mean over cases,
    pairwise mean for more than two sets); ``empty`` counts label maps without foreground.
    """
    from atso_nnunet.evaluation.metrics import agreement

    if step.monitor == "volume":
        return _run_volume_monitor(ctx, step)
    if step.monitor == "stability":
        return _run_stability_monitor(ctx, step)
    folders = [ctx.path(r) for r in step.reads]
    if step.monitor == "empty":
        empty = [c for c in step.cases if not _has_foreground(folders[0] / f"{c}{layout.FILE_ENDING}")]
        value: Dict[str, Any] = {"value": len(empty), "empty_cases": empty}
    else:
        pairs = [(a, b) for i, a in enumerate(folders) for b in folders[i + 1:]]
        vals = [agreement(a, b, cases=list(step.cases), foreground=ctx.foreground).mean for a, b in pairs]
        value = {"value": sum(vals) / len(vals) if vals else None, "pairs": len(pairs)}
    value.update({"monitor": step.monitor, "cases": len(step.cases)})
    write_json(value, ctx.path(step.output))
    return {"value": value["value"]}


def _run_volume_monitor(ctx: RunContext, step: Step) -> dict:
    """The drift monitor: volume of the pseudo-labels, against earlier generations' and their views'."""
    from atso_nnunet.monitors.drift import drift_warning, volume_record
    from atso_nnunet.pseudolabels.volume_prior import labeled_mean_volume_ml
    from atso_nnunet.io import read_json
    from atso_nnunet.schedule import Monitor

    earlier = [read_json(ctx.path(r)) for r in step.reads if isinstance(r, Monitor)]
    first = earlier[0] if earlier else None
    groups = [(g.cases, [ctx.path(p) for p in g.predictions]) for g in step.fuse_groups]
    labeled = [layout.label_path(ctx.dataset_dir, layout.LABELS_TR, c) for c in ctx.plan.labeled]
    record = volume_record(ctx.path(step.reads[0]), step.cases, groups, first=first,
                           previous=earlier[-1] if earlier else None, file_ending=layout.FILE_ENDING,
                           labeled_mean_ml=labeled_mean_volume_ml(labeled) if labeled else None)
    warning = drift_warning(record, step.generation)
    if warning:
        logger.warning("%s: %s", step.reads[0].name, warning)
    record.update({"monitor": "volume", "cases": len(step.cases), "warning": warning})
    write_json(record, ctx.path(step.output))
    return {"value": record["value"], "vs_first": record["vs_first"]}


def _run_stability_monitor(ctx: RunContext, step: Step) -> dict:
    """The stability filter: which pseudo-labelled cases change most since the previous round."""
    from atso_nnunet.monitors.stability import stability_record

    rule = ctx.plan.stability_filter
    record = stability_record(ctx.path(step.reads[0]), ctx.path(step.reads[1]), step.cases, rule,
                              file_ending=layout.FILE_ENDING)
    if record["dropped"]:
        logger.info("%s: %d of %d pseudo-labelled case(s) left out of the trainings that learn from them (%s): %s",
                    step.reads[0].name, len(record["dropped"]), len(step.cases), rule.words(),
                    ", ".join(record["dropped"]))
    record.update({"monitor": "stability", "cases": len(step.cases)})
    write_json(record, ctx.path(step.output))
    return {"value": record["value"]}


def filtered_cases(ctx: RunContext, step: Step, preview: bool = False) -> List[str]:
    """The reference cases a training uses: its ``train_cases``, less those its stability filter drops.

    Raises:
        InputError: the filter's record is missing (unless ``preview``: then every case is kept).
    """
    from atso_nnunet.io import read_json

    if step.case_filter is None:
        return list(step.train_cases)
    record = read_json(ctx.path(step.case_filter))
    if record is None and preview:
        return list(step.train_cases)
    if record is None:
        raise InputError(f"step {step.id}: the stability filter's record {ctx.path(step.case_filter)} is missing; "
                         f"rerun its step ({step.case_filter.name}) first")
    dropped = set(record.get("dropped", ()))
    return [c for c in step.train_cases if c not in dropped]


PLUGIN_RUNNERS: Dict[str, Callable[[RunContext, Step], dict]] = {
    "ingest": run_ingest, "fuse": run_fuse, "evaluate": run_evaluate, "monitor": run_monitor,
}

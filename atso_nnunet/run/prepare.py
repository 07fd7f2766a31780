"""Preparing a run: source datasets (generated when the plan says how), the experiment dataset, its
checks, and nnU-Net's tri-view plans and preprocessed data (each step idempotent).
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import List, Optional

from atso_nnunet.errors import InputError
from atso_nnunet.methods import get_method
from atso_nnunet.plan import ExperimentPlan, source_dir, validate_against_dataset
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.run.context import RunContext

logger = logging.getLogger(__name__)

PREPARE = "prepare"



def _missing_source_error(plan: ExperimentPlan, source: str, where: Path) -> InputError:
    from atso_nnunet.data.converters import conversion_command

    cmd = conversion_command(source) or plan.convert_hint
    how = f"Create it first:\n  {cmd}" if cmd else "Convert or copy that nnU-Net raw dataset there first."
    return InputError(f"source dataset {source} not found at {where} (plan '{plan.name}'). {how}")


def ensure_sources(plan: ExperimentPlan, paths: NnUNetPaths) -> List[Path]:
    """Source dataset folders; synthetic sources named in ``plan.synthetic`` are generated if missing
    (one that exists but was generated with other options is an InputError).

    ``plan.synthetic`` maps a source name to the generator's options
    (``domain``, ``n_cases``, ``seed``, ``shape``, ``spacing``, ``case_prefix``).
    """
    from atso_nnunet.data import synthetic
    from atso_nnunet.run.preflight import generated_source_check

    out = []
    for source in plan.sources:
        where = source_dir(paths, source)
        if where.is_dir():
            problem, _ = (generated_source_check(source, where, plan.synthetic[source])
                          if source in plan.synthetic else (None, None))
            if problem:
                raise InputError(problem)
        else:
            spec = plan.synthetic.get(source)
            if spec is None:
                raise _missing_source_error(plan, source, where)
            n_cases, prefix = spec.n_cases, spec.case_prefix
            dataset_id = int(source.split("_", 1)[0][len("Dataset"):])
            logger.info("generating synthetic source %s (%d cases) ...", source, n_cases)
            t0 = time.time()
            cfg = synthetic.SyntheticConfig(**spec.generator_options())
            synthetic.write_source_dataset(paths.raw, dataset_id, source.split("_", 1)[1], n_cases, cfg,
                                           case_prefix=prefix)
            logger.info("generated %s in %.1f s", source, time.time() - t0)
        out.append(where)
    return out


def task_classes(plan: ExperimentPlan, paths: NnUNetPaths) -> Optional[int]:
    """Classes of the task (background included) from the sources' dataset.json, or for a synthetic
    source not generated yet from its generator options (lesions: 3); None where neither tells."""
    from atso_nnunet.data import synthetic
    from atso_nnunet.io import read_json

    counts = []
    for source in plan.sources:
        data = read_json(source_dir(paths, source) / "dataset.json")
        if isinstance(data, dict) and isinstance(data.get("labels"), dict):
            counts.append(len(data["labels"]))
        elif source in plan.synthetic:
            counts.append(3 if synthetic.SyntheticConfig(**plan.synthetic[source].generator_options()).lesions else 2)
    return max(counts) if counts else None


def drop_absent_cases(plan: ExperimentPlan, paths: NnUNetPaths) -> ExperimentPlan:
    """The plan without the reference / test cases of ``may_be_absent`` that its sources lack.

    Releases of a dataset differ (TCIA's Pancreas-CT lost NIH_0025 and NIH_0070); a plan lists
    such cases in ``may_be_absent``. Absent ones are named in a warning and left out, with the
    resulting set sizes; a missing labeled case stays an error (checked when the data is prepared).
    Sources that do not exist yet (to be generated or converted) are left to ``prepare``.
    """
    if not plan.may_be_absent:
        return plan
    from atso_nnunet.data.materialize import available_cases

    dirs = [source_dir(paths, s) for s in plan.sources]
    if not all(d.is_dir() for d in dirs):
        return plan
    have = available_cases(dirs)
    absent = sorted(c for c in plan.may_be_absent if c not in have and (c in plan.reference or c in plan.test))
    if not absent:
        return plan
    reference = tuple(c for c in plan.reference if c not in absent)
    test = tuple(c for c in plan.test if c not in absent)
    logger.warning("%d case(s) of the plan are absent from its sources and left out (listed in may_be_absent): "
                   "%s; the run uses %d labeled, %d reference and %d test cases", len(absent), ", ".join(absent),
                   len(plan.labeled), len(reference), len(test))
    return dataclasses.replace(plan, reference=reference, test=test, reference_split=None,
                               may_be_absent=tuple(c for c in plan.may_be_absent if c not in absent),
                               note=f"{plan.note} [left out, absent from the sources: {', '.join(absent)}]")


def prepare(ctx: RunContext, network) -> None:
    """Sources -> experiment dataset -> tri-view plans and preprocessed data (each idempotent)."""
    from atso_nnunet.data.materialize import find_cases, materialize
    from atso_nnunet.nnunet.planning import plan_and_preprocess

    plan = ctx.plan
    sources = ensure_sources(plan, ctx.paths)
    # the validation cases too: never read by a run, but a plan naming cases its sources lack is wrong
    cases = find_cases(sources, [*plan.labeled, *plan.reference, *plan.test, *plan.validation])
    validate_against_dataset(plan, cases, [c for c, f in cases.items() if f.label is not None],
                             origin=f"plan '{plan.name}' against its sources")
    built_now = not ctx.dataset_dir.exists()
    materialize(ctx.dataset_dir, sources, plan.labeled, plan.reference, plan.test)
    from atso_nnunet.data.checks import check_raw_dataset

    try:
        check_raw_dataset(ctx.dataset_dir, ground_truth_values=[int(k) for k in plan.eval_label_map])
        problems = get_method(plan.method).dataset_problems(ctx.dataset_dir, plan)
        if problems:
            raise InputError("; ".join(problems))
    except InputError as e:
        if not built_now:
            raise
        # links only: a corrected plan with other case lists must be able to build it again
        shutil.rmtree(ctx.dataset_dir)
        raise InputError(f"{e}\n(The experiment dataset {ctx.dataset_dir.name} was removed again; nothing of this run "
                         "was recorded. Fix the source files named above, or leave their cases out of the plan, and "
                         "run the same command again.)") from None
    t0 = time.time()
    from atso_nnunet.execution.group_child import run_in_process_group

    # in a child process group that dies with the driver: nnU-Net's spawn pools must not outlive a SIGKILL
    run_in_process_group(plan_and_preprocess, ctx.paths, plan.dataset_id, views=plan.views,
                         configuration=plan.configuration, network=network, num_processes=ctx.num_processes)
    logger.info("tri-view planning and preprocessing ready (%.1f s)", time.time() - t0)

"""Ground truth of R and E that arrives after the run: link it in, score again, nothing else.

A run without the ground truth of the reference set R or the test set E (a team's own data, or a
research run whose ``labelsRef`` / ``labelsTs`` were held back) goes to its end: every training,
prediction and pseudo-labelling step runs, and each scoring step records its score as
unavailable. When the ground truth is put in place later (in the experiment dataset's
``labelsRef`` / ``labelsTs``, or in the source datasets it was built from), rerunning the same
command runs only the scoring steps again and rewrites the report: :func:`reopen_scoring` links
the new files into the experiment dataset, checks them, and removes the markers of the scoring
steps that can now be scored (and of the report). Nothing a training or a pseudo-label set
depends on is touched, which is also how a run shows that it never read the ground truth of R
or E before scoring.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import SimpleITK as sitk

from atso_nnunet.data import layout
from atso_nnunet.io import Geometry, read_json

logger = logging.getLogger(__name__)


def _source_label(sources: Sequence[Path], case: str) -> Optional[Path]:
    """The ground-truth file of ``case`` in the sources (None if none has it)."""
    from atso_nnunet.data.materialize import SOURCE_FOLDERS

    for source in sources:
        for image_dir, label_dir in SOURCE_FOLDERS:
            if layout.image_path(source, image_dir, case).exists():
                label = layout.label_path(source, label_dir, case)
                return label if label.is_file() else None
    return None


def _link_label(label: Path, dest: Path) -> None:
    """Relative symlink ``dest`` -> ``label`` (replacing a broken link), as materialize links."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() and not dest.exists():
        dest.unlink()
    os.symlink(os.path.relpath(label.resolve(), dest.parent.resolve()), dest)


def reopen_scoring(ctx, steps: Sequence, sources: Sequence[Path] = ()) -> List[str]:
    """Reopen the scoring steps recorded as unavailable whose ground truth is there now.

    For each finished ``evaluate`` step whose marker says ``available: false``: every case's
    ground truth missing from the experiment dataset is linked from ``sources`` if one holds it;
    when all of the step's cases have ground truth, their files are checked (readable, complete,
    geometry of the image, values) and the step's marker and score file are removed, so the
    driver scores it again. The report marker is removed with them.

    Args:
        ctx: the run context (:class:`atso_nnunet.run.context.RunContext`).
        steps: the run's schedule.
        sources: the plan's source dataset folders (searched for ground truth added there).

    Returns:
        The reopened step ids (logged).

    Raises:
        InputError: a ground-truth file that appeared is unreadable, has the wrong geometry or
            values outside the dataset's labels (each named).
    """
    from atso_nnunet.data.labels import check_label_file, raise_if_problems

    run = ctx.run
    reopened: List[str] = []
    problems: List[str] = []
    allowed: Optional[set] = None
    checked: Dict[Path, List[str]] = {}     # a case is scored by several steps: check its file once

    def check(case: str, label: Path) -> List[str]:
        if label not in checked:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(ctx.image(case)))
            reader.ReadImageInformation()
            geometry = Geometry(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                                tuple(reader.GetDirection()))
            checked[label] = check_label_file(label, allowed, geometry, check_voxels=True)
        return checked[label]
    for step in steps:
        if step.kind != "evaluate" or not run.is_done(step.id):
            continue
        marker = read_json(run.marker(step.id)) or {}
        if marker.get("available", True):
            continue
        gt_dir = ctx.ground_truth_dir(step.role)
        new: Dict[str, Path] = {}
        for case in step.cases:
            dest = layout.label_path(gt_dir, ".", case)
            if dest.exists():
                continue
            label = _source_label(sources, case)
            if label is None:
                break
            new[case] = label
        else:
            if allowed is None:
                allowed = set(ctx.foreground) | {0} | {int(k) for k in ctx.plan.eval_label_map}
            # files put into the experiment dataset by hand are checked too
            step_problems = [p for case in step.cases
                             for p in check(case, new.get(case, layout.label_path(gt_dir, ".", case)))]
            if step_problems:
                problems += [p for p in step_problems if p not in problems]
                continue
            for case, label in new.items():
                _link_label(label, layout.label_path(gt_dir, ".", case))
            run.marker(step.id).unlink()
            score = ctx.path(step.output)
            if score.exists():
                score.unlink()
            reopened.append(step.id)
    raise_if_problems(problems, ctx.dataset_dir, hint="fix the ground-truth files and run the same command again")
    if reopened:
        if run.is_done("report"):
            run.marker("report").unlink()
        logger.info("ground truth found for %d scoring step(s) recorded as unavailable; scoring them again "
                    "(nothing is retrained or relabelled): %s", len(reopened), ", ".join(reopened))
    return reopened

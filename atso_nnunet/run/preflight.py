"""A plan checked against what exists, before anything is written (``--dry-run`` and every run).

:func:`preflight` runs without nnU-Net and without writing a file: the plan's sources (present,
or synthetic and generated on first use, or missing with the command that creates them) and every
case id against the sources (unknown ids, ids given with their file ending, labeled cases
without a label; ``pseudo_label_volume: labeled_mean`` on a source with more than one foreground
label); the fold is checked with the plan itself (:mod:`atso_nnunet.plan.load`).
:func:`parse_gpu_ids` checks ``--gpus``. Problems are collected and raised together as one
:class:`~atso_nnunet.errors.InputError`, so a run folder is only created for a plan that passed
them all.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.paths import NnUNetPaths

logger = logging.getLogger(__name__)

_CHANNEL_RE = re.compile(r"_\d{4}$")
_GPU_RE = re.compile(r"^(\d+|(GPU|MIG)-[0-9A-Za-z/\-]+)$")


def parse_gpu_ids(text: Optional[str]) -> Optional[List[str]]:
    """``--gpus 0,1,3`` -> ``["0", "1", "3"]``; None or empty -> None (CPU).

    Accepts non-negative integers and the GPU / MIG UUIDs ``CUDA_VISIBLE_DEVICES`` takes.

    Raises:
        InputError: an entry is not a GPU id (``abc``, ``-1``, empty) or is repeated.
    """
    if text is None or not text.strip():
        return None
    ids = [g.strip() for g in text.split(",")]
    bad = [g for g in ids if not _GPU_RE.match(g)]
    if bad:
        raise InputError(f"--gpus {text}: {', '.join(repr(g) for g in bad)} is not a GPU id; give the ids "
                         "nvidia-smi lists, comma-separated (e.g. --gpus 0,1), or leave --gpus out to run on the CPU")
    repeated = sorted({g for g in ids if ids.count(g) > 1})
    if repeated:
        raise InputError(f"--gpus {text}: GPU {', '.join(repeated)} given more than once; list each GPU once")
    return ids


def file_name_hint(case: str) -> Optional[str]:
    """For a case id given as a file name, what to drop (``x_0000.nii.gz`` -> "drop the `_0000.nii.gz`")."""
    for ending in layout.IMAGE_ENDINGS:
        if case.endswith(ending):
            stem = case[: -len(ending)]
            m = _CHANNEL_RE.search(stem)
            case_id = stem[: m.start()] if m else stem
            return f"drop the `{case[len(case_id):]}` (the case id is {case_id!r})"
    return None


def _source_cases(source: Path) -> Dict[str, bool]:
    """Case id -> has a ground-truth label, over a source's image folders (or a flat image folder)."""
    from atso_nnunet.data.materialize import SOURCE_FOLDERS, _source_ending

    ending = _source_ending(source)
    cases: Dict[str, bool] = {}
    for image_dir, label_dir in SOURCE_FOLDERS:
        for case in layout.case_ids_in(source / image_dir, ending=ending):
            cases[case] = cases.get(case, False) or layout.label_path(source, label_dir, case, ending=ending).exists()
    for case in layout.case_ids_in(source, ending=ending):      # a flat folder of unlabeled images
        cases.setdefault(case, False)
    return cases


def _ending_mismatch(source: Path) -> Optional[str]:
    """A source whose dataset.json ``file_ending`` matches none of its image files (its first folder that shows it)."""
    from atso_nnunet.data.materialize import SOURCE_FOLDERS, _source_ending

    ending = _source_ending(source)
    return next(filter(None, (layout.ending_mismatch(source / image_dir, ending) for image_dir, _ in SOURCE_FOLDERS)),
                None)


def dataset_id_problems(plan, paths: NnUNetPaths) -> List[str]:
    """A folder of another name under the plan's ``dataset_id`` in nnU-Net's three folders.

    nnU-Net finds a dataset by its id alone (``nnUNetv2_train 988 ...``): a second
    ``Dataset988_*`` there makes every command of this run fail ("More than one dataset name
    found") after the experiment dataset was written, and the other experiment's commands too.
    """
    own = layout.dataset_folder_name(plan.dataset_id, plan.dataset_name)
    problems = []
    for var, root in (("nnUNet_raw", paths.raw), ("nnUNet_preprocessed", paths.preprocessed),
                      ("nnUNet_results", paths.results)):
        if not root.is_dir():
            continue
        taken = sorted(p.name for p in root.glob(layout.dataset_prefix(plan.dataset_id) + "*") if p.is_dir() and p.name != own)
        if taken:
            problems.append(f"dataset_id {plan.dataset_id}: {var} ({root}) already holds {', '.join(taken)}; nnU-Net "
                            f"finds datasets by id, so this run's {own} cannot share it: give the plan another "
                            "dataset_id (atso_nnunet_compare uses dataset_id + seed for each seed)")
    return problems


def source_problems(plan, paths: NnUNetPaths) -> Tuple[List[str], List[str]]:
    """Problems of the plan's sources and case ids, and notes (sources generated on first use).

    Returns:
        (problems, notes): each problem names the source or the case and what to do.
    """
    from atso_nnunet.data.converters import conversion_command
    from atso_nnunet.plan import source_dir
    from atso_nnunet.plan import SETS, dataset_problems

    problems: List[str] = []
    notes: List[str] = []
    for s in SETS:
        for case in getattr(plan, s):
            hint = file_name_hint(case)
            if hint:
                problems.append(f"{s}: case id {case!r} is a file name; {hint}")
    available: Dict[str, bool] = {}
    unchecked = False
    for source in plan.sources:
        where = source_dir(paths, source)
        if where.is_dir():
            mismatch = _ending_mismatch(where)
            if mismatch:
                problems.append(f"source {source}: {mismatch}")
                unchecked = True
                continue
            if source in (plan.synthetic or {}):
                problem, note = generated_source_check(source, where, plan.synthetic[source])
                if problem:
                    problems.append(problem)
                    unchecked = True
                    continue
                if note:
                    notes.append(note)
            for case, has_label in _source_cases(where).items():
                available[case] = available.get(case, False) or has_label
        elif source in (plan.synthetic or {}):
            spec = plan.synthetic[source]
            notes.append(f"source {source} does not exist yet: it is synthetic and is generated on first use "
                         f"({spec.n_cases} cases, domain {spec.domain}) at {where}")
            unchecked = True
        else:
            cmd = conversion_command(source) or plan.convert_hint
            problems.append(f"source {source}: not found at {where}; "
                            + (f"create it first: {cmd}" if cmd else "convert or copy that nnU-Net raw dataset there"))
            unchecked = True
    if unchecked:
        if plan.sources and any(source_dir(paths, s).is_dir() for s in plan.sources):
            notes.append("case ids are checked once every source exists")
        return problems, notes
    problems += dataset_problems(plan, available, [c for c, has in available.items() if has])
    for s in SETS:
        for case in getattr(plan, s):
            m = _CHANNEL_RE.search(case)
            if case not in available and m and case[: m.start()] in available:
                problems.append(f"{s}: case id {case!r} is not in the sources but {case[: m.start()]!r} is: drop "
                                f"the `{m.group(0)}` (the channel suffix of the image file name)")
    return problems, notes


def generated_source_check(source: str, where: Path, spec) -> Tuple[Optional[str], Optional[str]]:
    """(problem, note) for a plan's synthetic source that already exists: it is reused as it is,
    so one generated with other options than the plan's (say another generator ``seed``) is an
    error rather than a run on the old cases."""
    from atso_nnunet.data.synthetic_config import SyntheticConfig, recorded_differences

    differences = recorded_differences(where, SyntheticConfig(**spec.generator_options()), spec.n_cases,
                                       spec.case_prefix)
    if differences is None:
        return None, (f"source {source} at {where} records no generator options (not written by "
                      "atso_nnunet's generator): used as it is, the plan's `synthetic` settings are not applied")
    if not differences:
        return None, None
    return (f"source {source} exists at {where} but was generated with other options than the plan's "
            f"`synthetic` entry ({'; '.join(differences)}). It would be reused as it is: give the plan's "
            "source a new Dataset<id>_<Name> (in `sources` and `synthetic`), run with another --nnunet-dir, "
            f"or delete {where} (and the experiment datasets and preprocessed data made from it) "
            "to regenerate it"), None


def _labels_of_first_labeled_case(plan, paths: NnUNetPaths) -> Tuple[Optional[str], Optional[Dict[str, int]]]:
    """(source, its ``labels``) of the source that holds the plan's first labeled case: the experiment
    dataset takes its labels from there (:func:`atso_nnunet.data.materialize.materialize`).
    (None, None) when no source holds it yet or its labels cannot be read (other checks name that)."""
    from atso_nnunet.data.materialize import read_dataset_json
    from atso_nnunet.data.synthetic_config import SyntheticConfig, case_id, case_prefix_or_default
    from atso_nnunet.plan import source_dir

    if not plan.labeled:
        return None, None
    case = plan.labeled[0]
    for source in plan.sources:
        where = source_dir(paths, source)
        if where.is_dir():
            if case in _source_cases(where):
                try:
                    return source, dict(read_dataset_json(where).get("labels") or {})
                except (OSError, ValueError, InputError):
                    return None, None
        elif source in (plan.synthetic or {}):
            spec = plan.synthetic[source]
            prefix = case_prefix_or_default(spec.domain, spec.case_prefix)
            if case in (case_id(prefix, i) for i in range(spec.n_cases)):
                return source, dict(SyntheticConfig(**spec.generator_options()).labels)
    return None, None


def volume_prior_problems(plan, paths: NnUNetPaths) -> List[str]:
    """``pseudo_label_volume: labeled_mean`` on a dataset with more than one foreground label.

    The threshold is one foreground probability for one organ (:mod:`atso_nnunet.pseudolabels.volume_prior`);
    found here, before M0 trains, rather than at the first pseudo-label fusion hours later.
    """
    if getattr(plan, "pseudo_label_volume", "predicted") != "labeled_mean":
        return []
    source, labels = _labels_of_first_labeled_case(plan, paths)
    if labels is None:
        return []
    foreground = list(layout.foreground_labels(labels))
    if len(foreground) == 1:
        return []
    return [f"pseudo_label_volume: 'labeled_mean' is for tasks with one foreground label; the labeled cases' "
            f"source {source} has {len(foreground)} ({', '.join(foreground) or 'none'}): set pseudo_label_volume "
            "to 'predicted', or use a source with one foreground label"]


def preflight(plan, paths: NnUNetPaths) -> List[str]:
    """Every check of a plan that needs neither nnU-Net nor a written file.

    Returns:
        Notes for the user (e.g. sources that will be generated), also logged.

    Raises:
        InputError: listing every problem, each naming the field, source or case and the fix.
    """
    source, notes = source_problems(plan, paths)
    problems = source + dataset_id_problems(plan, paths) + volume_prior_problems(plan, paths)
    if problems:
        raise InputError(f"plan '{plan.name}': {len(problems)} problem(s) found before any work\n  - "
                         + "\n  - ".join(problems))
    for note in notes:
        logger.info("%s", note)
    return notes

"""A plan for a team's own nnU-Net dataset plus a folder of unlabeled images (``atso_nnunet_make_plan``).

S = the cases of ``<raw_dataset_dir>/imagesTr`` (each needs its ``labelsTr`` label); R = the
``<case>_0000.nii.gz`` images of the unlabeled folder minus the test cases; E = the ids of a test
list. Each set is found by its own small function, so another way to choose a set (say, a seeded
test set drawn from the labeled cases) is one more function and one more option.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.plan.load import plan_from_dict
from atso_nnunet.plan.validate import raise_if
from atso_nnunet.plan.schema import ExperimentPlan
from atso_nnunet.views import VIEWS

logger = logging.getLogger(__name__)


def read_case_list(path: os.PathLike) -> List[str]:
    """Case ids from a text file, one per line; blank lines and ``#`` comments are skipped.

    A line may also be an image or label file name (``case_0000.nii.gz``, ``case.nii.gz``).

    Raises:
        InputError: the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: case list not found")
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = os.path.basename(line)
        for tail in (layout.CHANNEL + layout.FILE_ENDING, layout.FILE_ENDING):
            if name.endswith(tail):
                name = name[: -len(tail)]
                break
        ids.append(name)
    return ids


def _labeled_cases(raw: Path, problems: List[str]) -> List[str]:
    """S: the images of ``imagesTr``; each needs its label in ``labelsTr``."""
    labeled = layout.case_ids_in(raw / layout.IMAGES_TR)
    if not labeled:
        problems.append(f"{raw / layout.IMAGES_TR}: no images <case>_0000{layout.FILE_ENDING}")
    no_label = sorted(set(labeled) - set(layout.label_ids_in(raw / layout.LABELS_TR)))
    if no_label:
        problems.append(f"{raw / layout.LABELS_TR}: labeled case(s) without label file: {', '.join(no_label)}")
    return labeled


def _unlabeled_cases(unl: Path, problems: List[str]) -> List[str]:
    unlabeled = layout.case_ids_in(unl)
    if not unlabeled:
        problems.append(f"{unl}: no images <case>_0000{layout.FILE_ENDING}")
    return unlabeled


def _listed_test_cases(test_list: Optional[os.PathLike], raw: Path, unl: Path, labeled: Sequence[str],
                       unlabeled: Sequence[str], problems: List[str]) -> List[str]:
    """E from a test list: ids found in the unlabeled folder or the raw dataset's ``imagesTs``."""
    if test_list is None:
        return []
    try:
        test = read_case_list(test_list)
    except InputError as e:
        problems.append(str(e))
        return []
    raw_test = set(layout.case_ids_in(raw / layout.IMAGES_TS))
    unknown = sorted(set(test) - set(unlabeled) - raw_test - set(labeled))
    if unknown:
        problems.append(f"test list {test_list}: case(s) in neither {unl} nor {raw / layout.IMAGES_TS}: "
                        f"{', '.join(unknown)}")
    return test


def hold_out_labeled(labeled: Sequence[str], fraction: float, seed: int) -> List[str]:
    """E drawn from S: ``round(fraction * n)`` of the labeled cases (at least 1), seeded.

    The sorted ids are permuted with ``numpy.random.default_rng(seed)``; the first ones are taken.
    At least one labeled case stays for training.

    Raises:
        InputError: ``fraction`` not in (0, 1), or too few labeled cases to hold any out.
    """
    import numpy as np

    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise InputError(f"test fraction must be a number between 0 and 1 (e.g. 0.2), got {fraction!r}")
    ids = sorted(labeled)
    if len(ids) < 2:
        raise InputError(f"test fraction {fraction}: {len(ids)} labeled case(s) cannot be split into a training "
                         "and a test set")
    n = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted(ids[i] for i in order[:n])


def held_out_note(held_out: Sequence[str], fraction: Optional[float], seed: int) -> str:
    """The plan note's words for labeled cases held out as the test set."""
    how = (f"drawn as fraction {fraction} of the labeled cases with seed {seed}" if fraction is not None
           else "listed in the test list")
    return (f"; {len(held_out)} labeled case(s) held out as the test set E ({how}): {', '.join(held_out)}. "
            "Their labels are used only to score E: they are never trained on, pseudo-labelled or used to "
            "choose a model")


def _folders(raw_dataset_dir: os.PathLike, unlabeled_dir: os.PathLike) -> Tuple[Path, Path]:
    raw = Path(raw_dataset_dir).expanduser().resolve()
    unl = Path(unlabeled_dir).expanduser().resolve()
    raise_if([f"{what} {p}: not a folder" for p, what in ((raw, "raw dataset"), (unl, "unlabeled folder"))
              if not p.is_dir()], "make plan")
    return raw, unl


def plan_from_dataset(raw_dataset_dir: os.PathLike, unlabeled_dir: os.PathLike,
                      test_list: Optional[os.PathLike] = None, *, dataset_id: int,
                      dataset_name: Optional[str] = None, name: Optional[str] = None,
                      note: Optional[str] = None, method: str = "atso", generations: int = 2,
                      subsets: int = 2, seed: int = 0, views: Sequence[str] = VIEWS,
                      configuration: str = "2d", fold: Any = "all", metric: str = "mean",
                      eval_label_map: Optional[Mapping[str, int]] = None,
                      network: Optional[Mapping[str, Any]] = None,
                      training: Optional[Mapping[str, Any]] = None,
                      test_fraction: Optional[float] = None) -> ExperimentPlan:
    """Plan for a team's own nnU-Net dataset plus a folder of unlabeled images.

    S = the cases of ``<raw_dataset_dir>/imagesTr`` (each needs its ``labelsTr`` label) minus
    the held-out test cases;
    R = the ``<case>_0000.nii.gz`` images of ``unlabeled_dir`` minus the test cases;
    E = the ids of ``test_list`` (see :func:`read_case_list`), found in ``imagesTr`` (held out of
    S: their labels only score E), in ``unlabeled_dir`` (then taken out of R; no ground truth,
    so E is predicted but not scored) or in the raw dataset's ``imagesTs`` (scored where
    ``labelsTs`` has the label); or, with ``test_fraction``, that share of the labeled cases
    drawn with ``seed`` (:func:`hold_out_labeled`). Both folders are recorded in ``sources`` as
    absolute paths; the note records which cases were taken out of S and R.

    Args:
        raw_dataset_dir: the team's nnU-Net raw dataset.
        unlabeled_dir: folder of unlabeled ``<case>_0000.nii.gz`` images.
        test_list: optional text file of test case ids.
        test_fraction: instead of a list, hold out this share of the labeled cases as E.
        dataset_id: nnU-Net id of the experiment dataset (not the raw dataset's).
        dataset_name: its name (default: the raw dataset's name + method).
        name: human-readable plan title (default: counts of the sets).
        note: free text recorded in the plan (before the generated note).
        network, training: the plan's ``network`` and ``training`` sections.
        method, generations, subsets, seed, views, configuration, fold, metric, eval_label_map:
            the plan fields of the same names.

    Raises:
        InputError: missing folders, no images, labeled cases without labels, unknown test ids,
            or any plan problem (all listed).
    """
    raw, unl = _folders(raw_dataset_dir, unlabeled_dir)
    problems: List[str] = []
    labeled = _labeled_cases(raw, problems)
    unlabeled = _unlabeled_cases(unl, problems)
    test = _listed_test_cases(test_list, raw, unl, labeled, unlabeled, problems)
    if test_fraction is not None:
        if test_list is not None:
            problems.append("give either a test list or a test fraction, not both")
        elif labeled:
            try:
                test = hold_out_labeled(labeled, test_fraction, seed)
            except InputError as e:
                problems.append(str(e))
    raise_if(problems, "make plan")

    taken = sorted(set(test) & set(unlabeled))
    held_out = sorted(set(test) & set(labeled))
    test_ids = set(test)
    reference = [c for c in unlabeled if c not in test_ids]
    labeled = [c for c in labeled if c not in test_ids]
    if not labeled:
        raise_if([f"every labeled case of {raw / layout.IMAGES_TR} is in the test set; keep at least one to "
                  "train on"], "make plan")
    m = re.match(r"^Dataset\d+_(.+)$", raw.name)
    dataset_name = dataset_name or f"{m.group(1) if m else raw.name}{method.upper()}"
    auto_note = (f"made by atso_nnunet_make_plan: labeled = {raw / layout.IMAGES_TR}, reference = {unl}"
                 + (f", test ids from {Path(test_list).resolve()}" if test_list is not None else ", no test set")
                 + (f"; {len(taken)} test case(s) taken out of the reference set: {', '.join(taken)}"
                    if taken else "")
                 + (held_out_note(held_out, test_fraction, seed) if held_out else ""))
    data = {
        "name": name or f"{dataset_name}: {len(labeled)} labeled, {len(reference)} unlabeled",
        "note": f"{note}; {auto_note}" if note else auto_note,
        "sources": [str(raw), str(unl)],
        "dataset_id": dataset_id,
        "dataset_name": dataset_name,
        "labeled": labeled,
        "reference": reference,
        "test": test,
        "seed": seed,
        "subsets": subsets,
        "generations": generations,
        "views": list(views),
        "configuration": configuration,
        "fold": fold,
        "method": method,
        "metric": metric,
        "eval_label_map": dict(eval_label_map) if eval_label_map is not None else {},
        "network": dict(network) if network is not None else None,
        "training": dict(training) if training is not None else None,
    }
    return plan_from_dict(data, origin="generated plan")


def write_plan(plan: ExperimentPlan, out_path: os.PathLike) -> Path:
    """Atomically write ``plan`` as JSON (without a computed split) and return the path."""
    from atso_nnunet.io import write_json  # io reads images with SimpleITK: not imported with the plan

    return write_json(plan.to_dict(), out_path)


def write_plan_from_dataset(raw_dataset_dir: os.PathLike, unlabeled_dir: os.PathLike,
                            test_list: Optional[os.PathLike] = None, *, out_path: os.PathLike,
                            **options: Any) -> ExperimentPlan:
    """:func:`plan_from_dataset`, written to ``out_path``; returns the plan.

    Args:
        raw_dataset_dir: the team's nnU-Net raw dataset (S = its ``imagesTr``).
        unlabeled_dir: folder of unlabeled ``<case>_0000.nii.gz`` images (R).
        test_list: optional text file of test case ids (E).
        out_path: plan JSON to write.
        **options: keyword arguments of :func:`plan_from_dataset` (``dataset_id`` required).

    Raises:
        InputError: see :func:`plan_from_dataset`.
    """
    plan = plan_from_dataset(raw_dataset_dir, unlabeled_dir, test_list, **options)
    write_plan(plan, out_path)
    logger.info("wrote plan %s: %d labeled, %d reference, %d test cases", out_path, len(plan.labeled),
                len(plan.reference), len(plan.test))
    return plan

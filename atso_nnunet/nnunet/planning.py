"""Tri-view planning and preprocessing through nnU-Net's own Python API.

Each view (:mod:`atso_nnunet.views`) gets its own nnU-Net plans identifier ``ATSOPlans_<view>``,
planned by a subclass of nnU-Net's default ``ExperimentPlanner`` that forces the view's
``transpose_forward``. nnU-Net then plans spacing, patch size and network for the plane the 2D
network sees, preprocesses into its own ``<plans>_<configuration>`` folder, and its predictor
transposes back on export. The fingerprint is shared by all views (extracted once).

Layout written under ``nnUNet_preprocessed/<Dataset>/``::

    dataset_fingerprint.json, dataset.json, gt_segmentations/    nnU-Net's own
    ATSOPlans_<view>.json                                        plans (network override applied)
    ATSOPlans_<view>_2d/                                         nnU-Net's preprocessed labeled cases
    atso_preprocessed_ATSOPlans_<view>_2d.done                   completion marker (JSON)
    atso_unlabeled/ATSOPlans_<view>_2d/<case>.b2nd|_seg.b2nd|.pkl  unlabeled cases (imagesRef ...)

nnU-Net's own data folders hold nothing but what nnU-Net wrote (``infer_dataset_class`` requires
one kind of data file there).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.io import read_json, write_json
from atso_nnunet.paths import UNLABELED_DIR, NnUNetPaths, nnunet_environment
from atso_nnunet.plan import CONFIGURATIONS  # what the tri-view planner makes; plans are checked at load
from atso_nnunet.views import TRANSPOSE_FORWARD, VIEWS, check_views, plans_identifier

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Planners: one subclass per view, each overriding determine_transpose only
# --------------------------------------------------------------------------------------------
class _ViewPlanner(ExperimentPlanner):
    """nnU-Net's default planner with the view's ``transpose_forward`` instead of the computed one."""

    view: str = ""

    def determine_transpose(self):
        forward = list(TRANSPOSE_FORWARD[self.view])
        # same inverse as ExperimentPlanner.determine_transpose (nnunetv2 2.8.1)
        backward = [forward.index(i) for i in range(3)]
        return forward, backward


class AxialPlanner(_ViewPlanner):
    view = "axial"


class CoronalPlanner(_ViewPlanner):
    view = "coronal"


class SagittalPlanner(_ViewPlanner):
    view = "sagittal"


PLANNERS = {p.view: p for p in (AxialPlanner, CoronalPlanner, SagittalPlanner)}


from atso_nnunet.nnunet.network import NetworkOverride  # noqa: E402  (re-exported)


# --------------------------------------------------------------------------------------------
# Paths and markers
# --------------------------------------------------------------------------------------------
def dataset_name_of(paths: NnUNetPaths, dataset_id: int) -> str:
    """``DatasetXXX_Name`` of ``dataset_id`` in ``paths.raw``.

    Raises:
        InputError: no or several raw datasets with that id.
    """
    prefix = f"Dataset{int(dataset_id):03d}_"
    found = sorted(p.name for p in Path(paths.raw).glob(prefix + "*") if p.is_dir())
    if len(found) != 1:
        raise InputError(f"expected one raw dataset {prefix}* in {paths.raw}, found {found or 'none'}")
    return found[0]


def plans_file(paths: NnUNetPaths, dataset_name: str, plans: str) -> Path:
    """``<preprocessed>/<Dataset>/<plans>.json``."""
    return Path(paths.preprocessed) / dataset_name / f"{plans}.json"


def data_identifier(paths: NnUNetPaths, dataset_name: str, plans: str, configuration: str) -> str:
    """The ``data_identifier`` of a configuration as written in the plans file."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    f = plans_file(paths, dataset_name, plans)
    if not f.is_file():
        raise InputError(f"{f}: plans not found; run the planning step first")
    return PlansManager(json.loads(f.read_text())).get_configuration(configuration).data_identifier


def unlabeled_folder(paths: NnUNetPaths, dataset_name: str, plans_identifier: str, configuration: str) -> Path:
    """Folder of the preprocessed unlabeled cases of one view (plans) and configuration.

    ``<preprocessed>/<Dataset>/atso_unlabeled/<data_identifier>/`` holding, per case, nnU-Net's
    files ``<case>.b2nd`` (image), ``<case>_seg.b2nd`` (nnU-Net's non-zero mask: -1 outside the
    crop's non-zero region, 0 inside; not a label) and ``<case>.pkl`` (nnU-Net's properties:
    ``spacing``, ``shape_before_cropping``, ``bbox_used_for_cropping``,
    ``shape_after_cropping_and_before_resampling``, ...). A case is complete when its ``.pkl`` exists.
    """
    return (Path(paths.preprocessed) / dataset_name / UNLABELED_DIR
            / data_identifier(paths, dataset_name, plans_identifier, configuration))


def completion_marker(paths: NnUNetPaths, dataset_name: str, plans: str, configuration: str) -> Path:
    """``<preprocessed>/<Dataset>/atso_preprocessed_<plans>_<configuration>.done``."""
    return Path(paths.preprocessed) / dataset_name / f"atso_preprocessed_{plans}_{configuration}.done"


# --------------------------------------------------------------------------------------------
# Plan and preprocess
# --------------------------------------------------------------------------------------------
def plan_and_preprocess(paths: NnUNetPaths, dataset_id: int, views: Sequence[str] = VIEWS,
                        configuration: str = "2d", network: Optional[NetworkOverride] = None,
                        num_processes: int = 2, verify: bool = True,
                        unlabeled_folders: Sequence[str] = (layout.IMAGES_REF,)) -> Dict[str, str]:
    """Fingerprint, plan and preprocess an experiment dataset for each view; idempotent.

    A view whose completion marker records the same configuration and network override is
    skipped. Otherwise its plans are (re)written, the override is applied to the plans JSON, and
    nnU-Net preprocesses the labeled cases (``imagesTr``). Then the images of
    ``unlabeled_folders`` (default ``imagesRef``; add ``imagesTs`` if test images are wanted) are
    preprocessed without labels with :func:`preprocess_unlabeled` (cases already done are skipped).

    Args:
        paths: nnU-Net folders; ``paths.raw`` holds ``DatasetXXX_Name``.
        dataset_id: nnU-Net dataset id.
        views: views to plan (see :data:`atso_nnunet.views.VIEWS`).
        configuration: nnU-Net configuration to preprocess, ``2d`` (or ``3d_fullres``).
        network: optional override of the planned network for ``configuration``.
        num_processes: worker processes for nnU-Net's fingerprint / integrity check / preprocessing.
        verify: run the raw-dataset checks and nnU-Net's ``verify_dataset_integrity`` first.
        unlabeled_folders: raw image folders preprocessed without labels for every view.

    Returns:
        view -> plans identifier (``ATSOPlans_<view>``).

    Raises:
        InputError: bad arguments or a dataset that fails the checks.
    """
    views = _check_args(views, configuration, num_processes)
    name = dataset_name_of(paths, dataset_id)
    raw_dir = Path(paths.raw) / name
    out = {v: plans_identifier(v) for v in views}
    expected = {v: _marker_content(out[v], configuration, network) for v in views}
    todo = [v for v in views if _read_marker(paths, name, out[v], configuration) != expected[v]]

    if todo:
        if os.environ.get("nnUNet_n_proc_DA") == "0":
            raise InputError("nnUNet_n_proc_DA=0 makes nnU-Net's planning crash (torch.set_num_threads(0)); "
                             "unset it for planning and set it for training only")
        with nnunet_environment(paths):
            if verify:
                _verify(raw_dir, num_processes)
            _fingerprint(paths, dataset_id, name, num_processes)
            for view in todo:
                t0 = time.monotonic()
                logger.info("%s: planning and preprocessing view %s (%s, %s)", name, view, out[view], configuration)
                _plan_and_preprocess_view(paths, dataset_id, name, view, configuration, network, num_processes)
                write_json(expected[view], completion_marker(paths, name, out[view], configuration))
                logger.info("%s: view %s preprocessed in %.1f s", name, view, time.monotonic() - t0)
    else:
        logger.info("%s: all views already preprocessed (%s)", name, ", ".join(views))

    for view in views:
        cases = {}
        for folder in unlabeled_folders:
            cases.update(_image_files(raw_dir, folder))
        if cases:
            preprocess_unlabeled(paths, dataset_id, out[view], configuration, cases,
                                 num_processes=min(num_processes, len(cases)))
    return out


def _check_args(views, configuration, num_processes) -> List[str]:
    try:
        views = check_views(views)
    except ValueError as e:
        raise InputError(f"views: {e}") from e
    if configuration not in CONFIGURATIONS:
        raise InputError(f"configuration {configuration!r} is not supported; choose from {', '.join(CONFIGURATIONS)}")
    if not isinstance(num_processes, int) or num_processes < 1:
        raise InputError(f"num_processes must be a positive integer, got {num_processes!r}")
    return views


def _marker_content(plans: str, configuration: str, network: Optional[NetworkOverride]) -> dict:
    return {"plans": plans, "configuration": configuration,
            "network": network.to_dict() if network is not None else None}


def _read_marker(paths: NnUNetPaths, name: str, plans: str, configuration: str) -> Optional[dict]:
    return read_json(completion_marker(paths, name, plans, configuration))


def _verify(raw_dir: Path, num_processes: int) -> None:
    """atso_nnunet's raw-dataset checks and nnU-Net's integrity check."""
    from atso_nnunet.data.checks import check_raw_dataset

    # planning trains on the labeled set only; the driver checks R and E itself
    check_raw_dataset(raw_dir, roles=("labeled",))
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    try:
        verify_dataset_integrity(str(raw_dir), num_processes)
    except (AssertionError, RuntimeError, FileNotFoundError) as e:
        # nnU-Net reports dataset problems with assert / RuntimeError; surface them as input errors
        raise InputError(f"{raw_dir}: nnU-Net's dataset integrity check failed: {e}") from e


def _fingerprint(paths: NnUNetPaths, dataset_id: int, name: str, num_processes: int) -> None:
    if (Path(paths.preprocessed) / name / "dataset_fingerprint.json").is_file():
        return
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset

    t0 = time.monotonic()
    extract_fingerprint_dataset(dataset_id, num_processes=num_processes, check_dataset_integrity=False,
                                clean=False, verbose=False, show_progress_bar=False)
    logger.info("%s: fingerprint extracted in %.1f s", name, time.monotonic() - t0)


def _plan_and_preprocess_view(paths: NnUNetPaths, dataset_id: int, name: str, view: str, configuration: str,
                              network: Optional[NetworkOverride], num_processes: int) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset, preprocess_dataset

    plans = plans_identifier(view)
    plan_experiment_dataset(dataset_id, PLANNERS[view], overwrite_plans_name=plans)
    f = plans_file(paths, name, plans)
    planned = json.loads(f.read_text())
    if configuration not in planned["configurations"]:
        raise InputError(f"{name}: nnU-Net planned no {configuration!r} configuration for {plans} "
                         f"(planned: {', '.join(planned['configurations'])})")
    if network is not None:
        write_json(network.apply(planned, configuration), f, sort_keys=False)
    preprocess_dataset(dataset_id, plans, configurations=[configuration], num_processes=[num_processes],
                       verbose=False, show_progress_bar=False)


def _image_files(raw_dir: Path, folder: str) -> Dict[str, List[str]]:
    """case -> channel files (sorted) of one raw images folder (empty if absent)."""
    dj = json.loads((raw_dir / "dataset.json").read_text())
    ending = dj.get("file_ending", layout.FILE_ENDING)
    n_channels = len(dj["channel_names"])
    out = {}
    for case in layout.case_ids_in(raw_dir / folder, ending=ending):
        files = [layout.image_path(raw_dir, folder, case, c, ending) for c in range(n_channels)]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise InputError(f"case {case}: channel file(s) missing: {', '.join(missing)}")
        out[case] = [str(p) for p in files]
    return out


# --------------------------------------------------------------------------------------------
# Unlabeled cases
# --------------------------------------------------------------------------------------------
def preprocess_unlabeled(paths: NnUNetPaths, dataset_id: int, view_plans_identifier: str, configuration: str,
                         cases: Mapping[str, Sequence[str]], num_processes: int = 1) -> Path:
    """Preprocess images without labels for one view, as nnU-Net does for its training cases.

    Uses nnU-Net's ``DefaultPreprocessor.run_case(images, None, ...)`` (transpose, crop to the
    non-zero box, normalise, resample) and ``nnUNetDatasetBlosc2.save_case``; the properties
    dict is saved as nnU-Net returns it. Cases whose ``.pkl`` exists are skipped; each case is
    written in a temporary folder and renamed into place, ``.pkl`` last.

    Args:
        paths: nnU-Net folders.
        dataset_id: nnU-Net dataset id.
        view_plans_identifier: ``ATSOPlans_<view>`` (planned already).
        configuration: ``2d`` (or another configuration in the plans).
        cases: case id -> image files (one per channel, in channel order).
        num_processes: worker processes (1 = in this process).

    Returns:
        The output folder, :func:`unlabeled_folder`.
    """
    name = dataset_name_of(paths, dataset_id)
    folder = unlabeled_folder(paths, name, view_plans_identifier, configuration)
    todo = {c: [str(f) for f in files] for c, files in cases.items() if not (folder / f"{c}.pkl").is_file()}
    if not todo:
        return folder
    partial = folder.parent / f".partial_{folder.name}"
    partial.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    args = (str(plans_file(paths, name, view_plans_identifier)), configuration,
            str(Path(paths.preprocessed) / name / "dataset.json"), str(partial), str(folder))
    t0 = time.monotonic()
    if num_processes <= 1:
        for case, files in todo.items():
            _preprocess_one(case, files, *args)
    else:
        with ProcessPoolExecutor(num_processes, mp_context=get_context("spawn")) as pool:
            for f in [pool.submit(_preprocess_one, case, files, *args) for case, files in todo.items()]:
                f.result()
    shutil.rmtree(partial, ignore_errors=True)
    logger.info("%s %s: %d unlabeled case(s) preprocessed in %.1f s", view_plans_identifier, configuration,
                len(todo), time.monotonic() - t0)
    return folder


def _preprocess_one(case: str, image_files: List[str], plans_json: str, configuration: str, dataset_json: str,
                    partial: str, folder: str) -> None:
    """Preprocess and save one case (top level: runs in spawn workers)."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans_json)
    cm = plans_manager.get_configuration(configuration)
    data, seg, properties = DefaultPreprocessor(verbose=False).run_case(
        image_files, None, plans_manager, cm, json.loads(Path(dataset_json).read_text()))
    # from DefaultPreprocessor.run_case_save (nnunetv2 2.8.1), written under a temporary name
    data = data.astype("float32", copy=False)
    seg = seg.astype("int16", copy=False)
    blocks, chunks = comp_blosc2_params(data.shape, tuple(cm.patch_size), data.itemsize)
    blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, tuple(cm.patch_size), seg.itemsize)
    tmp = Path(partial) / case
    for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)  # blosc2 refuses to overwrite
    nnUNetDatasetBlosc2.save_case(data, seg, properties, str(tmp), chunks=chunks, blocks=blocks,
                                  chunks_seg=chunks_seg, blocks_seg=blocks_seg)
    for suffix in (".b2nd", "_seg.b2nd", ".pkl"):  # the pkl last: it marks the case complete
        os.replace(str(tmp) + suffix, Path(folder) / f"{case}{suffix}")

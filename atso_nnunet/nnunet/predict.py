"""Tri-view prediction with nnU-Net's ``nnUNetPredictor``, in-process.

:func:`predict_view` runs one trained nnU-Net model folder over a set of cases;
:func:`predict_tri_view` runs one model per view and fuses the views with
:func:`atso_nnunet.pseudolabels.fuse.fuse_folders`.

What nnU-Net writes per case (nnunetv2 2.8, ``export_prediction_from_logits``):

* ``<case>.nii.gz``: the label map, transposed back, un-cropped and resampled to the input
  image's array, written by the plans' reader/writer (SimpleITKIO for ``.nii.gz``) with the
  input image's spacing, origin and direction. The three views are therefore voxel-aligned.
* with ``save_probabilities``: ``<case>.npz`` (key ``probabilities``, float32, shape
  (C, z, y, x) in the input's array order, softmax over C) and ``<case>.pkl`` (nnU-Net's
  properties of the case, which ``nnUNetv2_ensemble`` reads).

Each case is predicted into a hidden staging folder inside ``output_dir`` and its files are
moved into place with ``os.replace``, the label map last: a ``<case>.nii.gz`` in ``output_dir``
means the case is complete, so an interrupted run resumes by skipping those cases.
"""
from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

from tqdm import tqdm

from atso_nnunet.data.layout import FILE_ENDING
from atso_nnunet.errors import InputError
from atso_nnunet.pseudolabels.fuse import fuse_folders
from atso_nnunet.io import write_json

logger = logging.getLogger(__name__)

CHECKPOINT_FINAL = "checkpoint_final.pth"
PROBABILITIES_ENDING = ".npz"
PROPERTIES_ENDING = ".pkl"


def resolve_trainer_class(trainer_name: str):
    """The trainer class stored in a checkpoint, for building the network architecture.

    Looked up, in order: in :mod:`atso_nnunet.nnunet.trainers` (no environment needed), with nnU-Net's
    ``recursive_find_trainer_class_by_name`` (nnunetv2's trainers, then the folders in
    ``nnUNet_extTrainer``), and finally ``nnUNetTrainer`` with a warning: every trainer that does
    not override ``build_network_architecture`` builds the same network from the plans, and a
    mismatch surfaces as a ``load_state_dict`` error.
    """
    try:
        import atso_nnunet.nnunet.trainers as atso_trainers

        cls = getattr(atso_trainers, trainer_name, None)
        if inspect.isclass(cls):
            return cls
    except ImportError as e:
        logger.debug("atso_nnunet.nnunet.trainers not importable (%s)", e)
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(trainer_name)
    except RuntimeError:
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        logger.warning("trainer %s not found (atso_nnunet.nnunet.trainers, nnunetv2, nnUNet_extTrainer); building "
                       "the network with nnUNetTrainer.build_network_architecture", trainer_name)
        return nnUNetTrainer


def _as_device(device: Union[str, Any]):
    import torch

    return device if isinstance(device, torch.device) else torch.device(device)


def load_predictor(model_folder: Path, folds: Sequence[Union[int, str]] = ("all",),
                   checkpoint: str = CHECKPOINT_FINAL, device: Union[str, Any] = "cpu",
                   use_mirroring: bool = True, tile_step_size: float = 0.5, progress: bool = False):
    """An initialised ``nnUNetPredictor`` for a trained nnU-Net model folder.

    Equivalent to ``nnUNetPredictor.initialize_from_trained_model_folder`` (nnunetv2 2.8.1,
    whose steps this follows) except for the trainer lookup (:func:`resolve_trainer_class`),
    so models trained with the ATSO trainers load without ``nnUNet_extTrainer``.

    Args:
        model_folder: ``<Trainer>__<plans>__<configuration>`` folder holding ``plans.json``,
            ``dataset.json`` and ``fold_<f>/<checkpoint>``.
        folds: folds to ensemble (``"all"`` or integers).
        checkpoint: checkpoint file name inside each fold folder.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.
        use_mirroring: test-time mirroring (nnU-Net's default; ``False`` is 2-4x faster in 2D).
        tile_step_size: sliding-window step as a fraction of the patch size (0.5 default; 1.0 no
            overlap, fastest).
        progress: let nnU-Net show its sliding-window progress bar.

    Raises:
        InputError: the folder, its plans/dataset JSON or a checkpoint is missing.
    """
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    model_folder = Path(model_folder)
    needed = [model_folder / "plans.json", model_folder / "dataset.json"]
    needed += [model_folder / f"fold_{f}" / checkpoint for f in folds]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise InputError(f"trained model incomplete in {model_folder}: missing {', '.join(missing)}. "
                         "Train the model (or choose other folds / checkpoint) first")
    device = _as_device(device)
    dataset_json = load_json(str(model_folder / "dataset.json"))
    plans_manager = PlansManager(load_json(str(model_folder / "plans.json")))
    parameters = []
    for i, f in enumerate(folds):
        ckpt = torch.load(model_folder / f"fold_{f}" / checkpoint, map_location=torch.device("cpu"),
                          weights_only=False)
        if i == 0:
            trainer_name = ckpt["trainer_name"]
            configuration_name = ckpt["init_args"]["configuration"]
            mirroring_axes = ckpt.get("inference_allowed_mirroring_axes")
        parameters.append(ckpt["network_weights"])
    configuration_manager = plans_manager.get_configuration(configuration_name)
    num_input_channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    num_output_channels = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    trainer_class = resolve_trainer_class(trainer_name)
    network = trainer_class.build_network_architecture(
        plans_manager, configuration_manager, num_input_channels, num_output_channels,
        enable_deep_supervision=False)
    network.load_state_dict(parameters[0])
    predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_mirroring=use_mirroring,
                                perform_everything_on_device=device.type == "cuda", device=device,
                                verbose=False, allow_tqdm=progress)
    predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                    trainer_name, mirroring_axes)
    logger.info("loaded %s (trainer %s, configuration %s, folds %s) on %s", model_folder, trainer_name,
                configuration_name, list(folds), device)
    return predictor


def _case_done(output_dir: Path, case: str, save_probabilities: bool) -> bool:
    done = (output_dir / f"{case}{FILE_ENDING}").is_file()
    if save_probabilities:
        done = done and (output_dir / f"{case}{PROBABILITIES_ENDING}").is_file()
    return done


def _check_inputs(input_files: Mapping[str, Sequence[Path]]) -> None:
    if not input_files:
        raise InputError("no cases to predict")
    problems = []
    for case, files in input_files.items():
        if not files:
            problems.append(f"{case}: no image files")
        problems += [f"{case}: {f} not found" for f in files if not Path(f).is_file()]
    if problems:
        raise InputError("cannot predict: " + "; ".join(problems[:20])
                         + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""))


def predict_view(model_folder: Path, input_files: Mapping[str, Sequence[Path]], output_dir: Path,
                 folds: Sequence[Union[int, str]] = ("all",), device: Union[str, Any] = "cpu",
                 save_probabilities: bool = False, checkpoint: str = CHECKPOINT_FINAL,
                 use_mirroring: bool = True, tile_step_size: float = 0.5,
                 skip_existing: bool = True, progress: bool = True) -> List[Path]:
    """Predict cases with one trained nnU-Net model, sequentially in this process (no pools).

    Args:
        model_folder: ``<Trainer>__<plans>__<configuration>`` results folder.
        input_files: ``{case: [channel 0 image, channel 1 image, ...]}``; outputs are named by
            the case id, the files may be named anyhow (extension as in the dataset).
        output_dir: folder for ``<case>.nii.gz`` (and ``.npz``/``.pkl``), created.
        folds: folds to ensemble.
        device: torch device (``"cpu"`` disables ``perform_everything_on_device``).
        save_probabilities: also write nnU-Net's ``<case>.npz`` + ``<case>.pkl``.
        checkpoint: checkpoint file name in each fold folder.
        use_mirroring: test-time mirroring.
        tile_step_size: sliding-window step (fraction of the patch size).
        skip_existing: skip cases whose outputs exist (the model is not even loaded when all do).
        progress: tqdm progress bar over cases.

    Returns:
        ``output_dir/<case>.nii.gz`` of every case in ``input_files``, in its order.

    Raises:
        InputError: missing input images or an incomplete model folder.
    """
    output_dir = Path(output_dir)
    _check_inputs(input_files)
    cases = list(input_files)
    todo = [c for c in cases if not (skip_existing and _case_done(output_dir, c, save_probabilities))]
    outputs = [output_dir / f"{c}{FILE_ENDING}" for c in cases]
    if not todo:
        logger.info("all %d case(s) already predicted in %s", len(cases), output_dir)
        return outputs
    predictor = load_predictor(model_folder, folds, checkpoint, device, use_mirroring, tile_step_size)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(predictor.dataset_json, output_dir / "dataset.json")
    write_json(predictor.plans_manager.plans, output_dir / "plans.json")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output_dir))
    logger.info("predicting %d case(s) with %s into %s (%d already done)", len(todo), model_folder, output_dir,
                len(cases) - len(todo))
    try:
        for case in tqdm(todo, desc=f"predict {Path(model_folder).name}", unit="case", disable=not progress):
            predictor.predict_from_files_sequential(
                [[str(f) for f in input_files[case]]], [str(staging / case)],
                save_probabilities=save_probabilities, overwrite=True)
            endings = ([PROBABILITIES_ENDING, PROPERTIES_ENDING] if save_probabilities else []) + [FILE_ENDING]
            for ending in endings:  # the label map last: it marks the case as complete
                src = staging / f"{case}{ending}"
                if not src.is_file():
                    raise RuntimeError(f"nnU-Net did not write {src} for case {case}")
                os.replace(src, output_dir / f"{case}{ending}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return outputs


def predict_tri_view(model_folders: Mapping[str, Path], input_files: Mapping[str, Sequence[Path]],
                     work_dir: Path, output_dir: Path, fusion: str = "vote", tie_break: str = "auto",
                     folds: Sequence[Union[int, str]] = ("all",), device: Union[str, Any] = "cpu",
                     checkpoint: str = CHECKPOINT_FINAL, use_mirroring: bool = True,
                     tile_step_size: float = 0.5, save_probabilities: Optional[bool] = None,
                     skip_existing: bool = True, progress: bool = True) -> List[Path]:
    """Predict every case with one model per view and fuse the views.

    Each model writes into ``work_dir/<view>/`` (:func:`predict_view`); the views are fused into
    ``output_dir/<case>.nii.gz`` by :func:`atso_nnunet.pseudolabels.fuse.fuse_folders` with the case's
    first input image as the reference geometry, so every fused file has exactly that image's
    size, spacing, origin and direction.

    Args:
        model_folders: ``{view: model folder}``; the keys (views, or any model names, e.g. for
            3 views x 2 half-models) name the sub-folders of ``work_dir``.
        input_files: ``{case: [channel images]}``.
        work_dir: per-view predictions (kept: they are inputs to later fusions and monitors).
        output_dir: fused label maps.
        fusion: ``"vote"`` or ``"mean"``.
        tie_break: vote tie rule (:mod:`atso_nnunet.pseudolabels.fuse`).
        folds, device, checkpoint, use_mirroring, tile_step_size: as in :func:`predict_view`.
        save_probabilities: write ``.npz`` per view; default: only when ``fusion="mean"`` or
            ``tie_break="probability"`` need them.
        skip_existing: resume: keep per-view predictions and fused files that exist.
        progress: progress bars.

    Returns:
        The fused ``output_dir/<case>.nii.gz`` files in case order.

    Raises:
        InputError: no models, a bad view name, missing inputs or models, fusion errors.
    """
    if not model_folders:
        raise InputError("predict_tri_view: no model folders given")
    bad = [v for v in model_folders if not v or os.sep in v or v.startswith(".")]
    if bad:
        raise InputError(f"predict_tri_view: view names must be plain folder names, got {bad}")
    if save_probabilities is None:
        save_probabilities = fusion == "mean" or tie_break == "probability"
    _check_inputs(input_files)
    work_dir = Path(work_dir)
    view_dirs: List[Path] = []
    for view, folder in model_folders.items():
        view_dir = work_dir / view
        predict_view(folder, input_files, view_dir, folds=folds, device=device,
                     save_probabilities=save_probabilities, checkpoint=checkpoint, use_mirroring=use_mirroring,
                     tile_step_size=tile_step_size, skip_existing=skip_existing, progress=progress)
        view_dirs.append(view_dir)
    references = {case: Path(files[0]) for case, files in input_files.items()}
    return fuse_folders(view_dirs, output_dir, method=fusion, cases=list(input_files), reference_images=references,
                        tie_break=tie_break, skip_existing=skip_existing, progress=progress)

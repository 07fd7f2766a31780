"""Argument lists and environments for nnU-Net's command-line tools (pure functions).

Training and prediction run as ``nnUNetv2_train`` / ``nnUNetv2_predict`` subprocesses. They find
the plugin's trainers by name through ``nnUNet_extTrainer``, which :func:`nnunet_env` sets to
:func:`ext_trainer_dir`; the user never exports it. In-process code imports the trainer classes
from :mod:`atso_nnunet.trainers` instead.

Example:
    >>> argv = train_command(990, "2d", "all", "ATSOTrainer", "ATSOPlans_axial")
    >>> env = nnunet_env(paths, run_config=run_dir / "run_config.json")
    >>> subprocess.run(argv, env=env, check=True)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from atso_nnunet.paths import NnUNetPaths

EXT_TRAINER_VAR = "nnUNet_extTrainer"
RUN_CONFIG_VAR = "ATSO_RUN_CONFIG"  # same as atso_nnunet.trainers.config.RUN_CONFIG_VAR (no torch import here)


def ext_trainer_dir() -> Path:
    """The folder to list in ``nnUNet_extTrainer`` (``atso_nnunet/nnunet_ext``)."""
    return Path(__file__).resolve().parent / "nnunet_ext"


def console_script(name: str) -> str:
    """Path of an installed console script next to ``sys.executable``, else the bare name (PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() else name


def train_command(dataset_id: int, configuration: str, fold: Union[int, str], trainer: str, plans: str,
                  device: str = "cpu", continue_training: bool = False, extra: Sequence[str] = ()) -> list:
    """``nnUNetv2_train DATASET CONFIGURATION FOLD -tr TRAINER -p PLANS -device DEVICE [--c] [extra]``.

    Args:
        dataset_id: nnU-Net dataset id.
        configuration: ``2d`` ...
        fold: fold number or ``all``.
        trainer: trainer class name (e.g. ``ATSOTrainer``).
        plans: plans identifier (e.g. ``ATSOPlans_axial``).
        device: ``cpu``, ``cuda`` or ``mps``.
        continue_training: add ``--c`` (resume from ``checkpoint_latest.pth``).
        extra: further arguments, appended as given.
    """
    argv = [console_script("nnUNetv2_train"), str(int(dataset_id)), configuration, str(fold),
            "-tr", trainer, "-p", plans, "-device", device]
    if continue_training:
        argv.append("--c")
    return argv + [str(a) for a in extra]


def predict_command(input_dir: Union[str, os.PathLike], output_dir: Union[str, os.PathLike], dataset_id: int,
                    configuration: str, fold: Union[int, str], trainer: str, plans: str, device: str = "cpu",
                    save_probabilities: bool = False, num_processes_preprocessing: int = 1,
                    num_processes_segmentation_export: int = 1, checkpoint: str = "checkpoint_final.pth",
                    disable_tta: bool = False, extra: Sequence[str] = ()) -> list:
    """``nnUNetv2_predict -i IN -o OUT -d DATASET -c CONFIGURATION -f FOLD -tr TRAINER -p PLANS ...``.

    Args:
        input_dir: folder of images (``<case>_0000.nii.gz``).
        output_dir: folder for the segmentations (created by nnU-Net).
        dataset_id, configuration, fold, trainer, plans: identify the trained model.
        device: ``cpu``, ``cuda`` or ``mps``.
        save_probabilities: also write ``<case>.npz`` / ``<case>.pkl`` probabilities.
        num_processes_preprocessing: ``-npp``.
        num_processes_segmentation_export: ``-nps``.
        checkpoint: ``-chk`` file name inside the fold folder.
        disable_tta: no mirroring at test time (faster).
        extra: further arguments, appended as given.
    """
    argv = [console_script("nnUNetv2_predict"), "-i", str(input_dir), "-o", str(output_dir),
            "-d", str(int(dataset_id)), "-c", configuration, "-f", str(fold), "-tr", trainer, "-p", plans,
            "-device", device, "-npp", str(num_processes_preprocessing),
            "-nps", str(num_processes_segmentation_export), "-chk", checkpoint, "--disable_progress_bar"]
    if save_probabilities:
        argv.append("--save_probabilities")
    if disable_tta:
        argv.append("--disable_tta")
    return argv + [str(a) for a in extra]


def nnunet_env(paths: NnUNetPaths, run_config: Optional[Union[str, os.PathLike]] = None,
               base_env: Optional[Mapping[str, str]] = None, gpu: Optional[str] = None) -> dict:
    """Environment for an nnU-Net subprocess: a copy of ``base_env`` (default ``os.environ``) plus
    the nnU-Net folders, ``nnUNet_extTrainer`` (the plugin's folder appended to any existing value),
    ``ATSO_RUN_CONFIG`` and ``CUDA_VISIBLE_DEVICES``.

    Args:
        paths: nnU-Net folders.
        run_config: trainer run config JSON (:class:`~atso_nnunet.trainers.config.TrainerRunConfig`);
            ``None`` leaves ``ATSO_RUN_CONFIG`` as in ``base_env``.
        base_env: environment to start from; never modified.
        gpu: value for ``CUDA_VISIBLE_DEVICES`` (e.g. ``"0"``); ``None`` leaves it as in ``base_env``.
    """
    env = paths.env(base_env)
    ext = str(ext_trainer_dir())
    existing = [p for p in env.get(EXT_TRAINER_VAR, "").split(os.pathsep) if p]
    if ext not in existing:
        existing.append(ext)
    env[EXT_TRAINER_VAR] = os.pathsep.join(existing)
    if run_config is not None:
        env[RUN_CONFIG_VAR] = str(Path(run_config).resolve())
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return env

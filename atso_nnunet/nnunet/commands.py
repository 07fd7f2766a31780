"""Argument lists and environments for nnU-Net's command-line tools (pure functions).

Training and prediction run as ``nnUNetv2_train`` / ``nnUNetv2_predict`` subprocesses. They find
the plugin's trainers by name through ``nnUNet_extTrainer``, which :func:`nnunet_env` sets to
:func:`ext_trainer_dir`; the user never exports it. In-process code imports the trainer classes
from :mod:`atso_nnunet.nnunet.trainers` instead.

Example:
    >>> argv = train_command(990, "2d", "all", "ATSOTrainer", "ATSOPlans_axial")
    >>> env = nnunet_env(paths, run_config=run_dir / "run_config.json")
    >>> subprocess.run(argv, env=env, check=True)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from atso_nnunet.paths import NnUNetPaths

EXT_TRAINER_VAR = "nnUNet_extTrainer"
RUN_CONFIG_VAR = "ATSO_RUN_CONFIG"  # same as atso_nnunet.nnunet.trainers.config.RUN_CONFIG_VAR (no torch import here)
# nnU-Net's W&B logger (``nnUNet_wandb_enabled=1``, nnunetv2 >= 2.7) calls ``wandb.init`` without a
# run name, so wandb takes it from this variable: a training's job sets it to its step id.
WANDB_NAME_VAR = "WANDB_NAME"


def ext_trainer_dir() -> Path:
    """The folder to list in ``nnUNet_extTrainer`` (``atso_nnunet/nnunet/ext``)."""
    return Path(__file__).resolve().parent / "ext"


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


def job_env(paths: NnUNetPaths, run_config: Optional[Union[str, os.PathLike]] = None,
            base_env: Optional[Mapping[str, str]] = None, gpu: Optional[str] = None) -> Dict[str, str]:
    """Only the variables a run sets for an nnU-Net job: the nnU-Net folders, ``nnUNet_extTrainer``
    (the plugin's folder appended to ``base_env``'s value), ``ATSO_RUN_CONFIG`` and
    ``CUDA_VISIBLE_DEVICES`` where given.

    An executor applies them on top of the environment where the job runs (the driver's for a
    local job, the compute node's for a SLURM task), so nothing else of the driver's environment
    travels: the node's own ``CUDA_VISIBLE_DEVICES`` and ``SLURM_*`` stay as SLURM set them.

    Args:
        paths: nnU-Net folders.
        run_config: trainer run config JSON (:class:`~atso_nnunet.nnunet.trainers.config.TrainerRunConfig`);
            ``None``: no ``ATSO_RUN_CONFIG``.
        base_env: where to read an existing ``nnUNet_extTrainer`` (default ``os.environ``); never modified.
        gpu: value for ``CUDA_VISIBLE_DEVICES`` (e.g. ``"0"``); ``None``: not set.
    """
    base = os.environ if base_env is None else base_env
    env = {k: v for k, v in paths.env({}).items()}
    ext = str(ext_trainer_dir())
    existing = [p for p in base.get(EXT_TRAINER_VAR, "").split(os.pathsep) if p]
    if ext not in existing:
        existing.append(ext)
    env[EXT_TRAINER_VAR] = os.pathsep.join(existing)
    if run_config is not None:
        env[RUN_CONFIG_VAR] = str(Path(run_config).resolve())
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return env


def nnunet_env(paths: NnUNetPaths, run_config: Optional[Union[str, os.PathLike]] = None,
               base_env: Optional[Mapping[str, str]] = None, gpu: Optional[str] = None) -> dict:
    """Full environment for an nnU-Net subprocess started directly (``subprocess.run(env=...)``):
    a copy of ``base_env`` (default ``os.environ``) with :func:`job_env`'s variables on top.

    Args:
        paths, run_config, gpu: as for :func:`job_env` (unset options keep ``base_env``'s values).
        base_env: environment to start from; never modified.
    """
    env = dict(os.environ if base_env is None else base_env)
    env.update(job_env(paths, run_config=run_config, base_env=env, gpu=gpu))
    return env


def stray_trainer_variables(env: Optional[Mapping[str, str]] = None) -> List[str]:
    """Names of the trainers' per-run variables (``ATSO_NUM_EPOCHS`` ...) set, non-empty, in ``env``
    (default ``os.environ``).

    Jobs inherit the environment where they run, and these variables beat the run's config file
    (``ATSO_RUN_CONFIG``): a driver must not start while any is set.
    """
    from atso_nnunet.nnunet.trainers.config import ENV_VARS

    env = os.environ if env is None else env
    return sorted(name for name in ENV_VARS if env.get(name, "").strip())

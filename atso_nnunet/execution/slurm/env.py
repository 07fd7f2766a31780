"""Environment of SLURM submissions and tasks: what ``sbatch`` may see of the driver's
environment, what a task's resources set, and the log line naming the task an attempt runs in."""
from __future__ import annotations

import os
from typing import Dict, Optional

# Variables of the driver's own environment that must not reach sbatch: a driver running as a
# SLURM job would otherwise hand its job's identity and GPUs to every task it submits.
_DRIVER_ONLY_PREFIXES = ("SLURM_",)
_DRIVER_ONLY_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")
_KEEP_VARS = ("SLURM_CONF",)  # where the cluster's configuration is: needed by sbatch itself


def _slurm_origin(env: Dict[str, str]) -> str:
    """One log line naming the SLURM task an attempt runs in (empty outside SLURM)."""
    if "SLURM_JOB_ID" not in env:
        return ""
    task = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_TASK_ID" in env
            else env["SLURM_JOB_ID"])
    return (f"=== SLURM job {task} (job id {env['SLURM_JOB_ID']}) on {env.get('SLURMD_NODENAME', '?')}, "
            f"restart {env.get('SLURM_RESTART_COUNT', '0')}, "
            f"CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '(unset)')} ===\n")


def submission_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment ``sbatch`` runs in: ``base`` (default ``os.environ``) without the driver's
    own ``SLURM_*`` and GPU-visibility variables (``SLURM_CONF`` is kept)."""
    base = dict(os.environ if base is None else base)
    return {k: v for k, v in base.items()
            if k in _KEEP_VARS or not (k.startswith(_DRIVER_ONLY_PREFIXES) or k in _DRIVER_ONLY_VARS)}


def data_loader_workers(cpus_per_task: int) -> int:
    """``nnUNet_n_proc_DA`` for a task with ``cpus_per_task`` CPUs: one CPU stays with the training
    process; with a single CPU augmentation runs in it (nnU-Net's workers die there otherwise,
    MIC-DKFZ/nnUNet#2863)."""
    return max(0, int(cpus_per_task) - 1)

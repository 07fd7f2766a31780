"""Marked copies of nnU-Net and submitit code: flag an upgrade that changes what was copied."""
from __future__ import annotations

import hashlib
import inspect

# sha256 of the source of each upstream function copied into atso_nnunet (nnunetv2 2.8.1, submitit 1.5.4).
COPIED = {
    # atso_nnunet/nnunet/trainers/semi.py: ATSOSemiTrainer._get_dataloaders_fixed_fraction
    "nnunetv2.training.nnUNetTrainer.nnUNetTrainer:nnUNetTrainer.get_dataloaders":
        "5f59e2b907cfa2d1eb1e77ab2a5b8893161e7af8567fc5669c62a4810334899e",
    # atso_nnunet/execution/slurm/submitit_copy.py: _SubmititSlurmExecutor (submitit 1.5.4)
    "submitit.core.core:PicklingExecutor._submit_command":
        "286fa2f9891c2863550c22f539110636ad25c05d65c4ca8f663aba50c55969e3",
    "submitit.slurm.slurm:SlurmExecutor._internal_process_submissions":
        "cd71325592178efb7fb6163eb6a7b42c11a1aefe8610d41d1da06e5de2f83d4d",
}


def _source(spec: str) -> str:
    import importlib

    module, qualname = spec.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return inspect.getsource(obj)


def test_copied_upstream_code_is_unchanged():
    changed = [spec for spec, digest in COPIED.items()
               if hashlib.sha256(_source(spec).encode()).hexdigest() != digest]
    assert not changed, (f"upstream changed {changed}: update the marked copies in atso_nnunet "
                         "(see the comment at each copy) and the digests here")

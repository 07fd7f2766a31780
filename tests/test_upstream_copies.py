"""Marked copies of nnU-Net code: flag an nnU-Net upgrade that changes what was copied."""
from __future__ import annotations

import hashlib
import inspect

# sha256 of the source of each nnU-Net function copied into atso_nnunet (nnunetv2 2.8.1).
COPIED = {
    # atso_nnunet/nnunet/trainers/semi.py: ATSOSemiTrainer._get_dataloaders_fixed_fraction
    "nnunetv2.training.nnUNetTrainer.nnUNetTrainer:nnUNetTrainer.get_dataloaders":
        "5f59e2b907cfa2d1eb1e77ab2a5b8893161e7af8567fc5669c62a4810334899e",
}


def _source(spec: str) -> str:
    import importlib

    module, qualname = spec.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return inspect.getsource(obj)


def test_copied_nnunet_code_is_unchanged_upstream():
    changed = [spec for spec, digest in COPIED.items()
               if hashlib.sha256(_source(spec).encode()).hexdigest() != digest]
    assert not changed, (f"nnU-Net changed {changed}: update the marked copies in atso_nnunet "
                         "(see the comment at each copy) and the digests here")

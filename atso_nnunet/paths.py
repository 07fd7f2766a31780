"""nnU-Net's three folders (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``).

nnU-Net reads these environment variables lazily. Library code never mutates ``os.environ``:
it carries an :class:`NnUNetPaths` and passes :meth:`NnUNetPaths.env` to subprocesses.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from atso_nnunet.errors import InputError

_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")

#: folder under ``nnUNet_preprocessed/<Dataset>/`` of reference images preprocessed without labels
UNLABELED_DIR = "atso_unlabeled"


def result_folder_name(trainer: str, plans_identifier: str, configuration: str) -> str:
    """``<trainer>__<plans>__<configuration>``: nnU-Net's folder of a trained model under
    ``nnUNet_results/<Dataset>/`` (it holds ``fold_<f>/``)."""
    return f"{trainer}__{plans_identifier}__{configuration}"


@dataclass(frozen=True)
class NnUNetPaths:
    """The three nnU-Net base folders.

    Attributes:
        raw: ``nnUNet_raw``, raw datasets ``DatasetXXX_Name``.
        preprocessed: ``nnUNet_preprocessed``.
        results: ``nnUNet_results``, trained models.
    """

    raw: Path
    preprocessed: Path
    results: Path

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "NnUNetPaths":
        """Read the folders from ``env`` (default ``os.environ``).

        Raises:
            InputError: a variable is unset; the message names it and the export to add.
        """
        env = os.environ if env is None else env
        missing = [v for v in _VARS if not env.get(v)]
        if missing:
            raise InputError(
                "nnU-Net folders not set: " + ", ".join(missing) + ". Export them as for nnU-Net, "
                "e.g. `export nnUNet_raw=/data/nnUNet_raw nnUNet_preprocessed=/data/nnUNet_preprocessed "
                "nnUNet_results=/data/nnUNet_results`, or pass --nnunet-dir DIR."
            )
        return cls(Path(env["nnUNet_raw"]), Path(env["nnUNet_preprocessed"]), Path(env["nnUNet_results"]))

    @classmethod
    def under(cls, root: Path) -> "NnUNetPaths":
        """All three folders below one root (``root/nnUNet_raw`` ...), as the demo uses."""
        root = Path(root)
        return cls(root / "nnUNet_raw", root / "nnUNet_preprocessed", root / "nnUNet_results")

    def env(self, base: Optional[Mapping[str, str]] = None) -> dict:
        """A copy of ``base`` (default ``os.environ``) with the three variables set."""
        out = dict(os.environ if base is None else base)
        out.update(nnUNet_raw=str(self.raw), nnUNet_preprocessed=str(self.preprocessed),
                   nnUNet_results=str(self.results))
        return out

    def makedirs(self) -> None:
        for p in (self.raw, self.preprocessed, self.results):
            p.mkdir(parents=True, exist_ok=True)


@contextmanager
def nnunet_environment(paths: NnUNetPaths):
    """Scope nnU-Net's folder variables for in-process calls into nnU-Net's API.

    nnU-Net reads ``nnUNet_raw`` & co. from ``os.environ`` whenever it needs them. This is the
    one place where atso_nnunet sets them in-process; the previous values are restored on exit.
    Subprocesses get :meth:`NnUNetPaths.env` instead.
    """
    old = {v: os.environ.get(v) for v in _VARS}
    os.environ.update(paths.env({}))
    try:
        yield paths
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

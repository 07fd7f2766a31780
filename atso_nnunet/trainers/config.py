"""Per-run settings of the atso_nnunet trainers, read from the environment.

nnU-Net fixes the trainer constructor ``(plans, configuration, fold, dataset_json, device)``, so
a run's settings travel through the environment of the ``nnUNetv2_train`` process:

``ATSO_RUN_CONFIG``
    path of a JSON file with any of the :class:`TrainerRunConfig` fields (written by
    :meth:`TrainerRunConfig.to_json`); read first.

Individual variables, applied on top of the file:

======================================= =====================================================
``ATSO_NUM_EPOCHS``                     ``num_epochs`` (int)
``ATSO_ITERATIONS_PER_EPOCH``           ``num_iterations_per_epoch`` (int)
``ATSO_VAL_ITERATIONS_PER_EPOCH``       ``num_val_iterations_per_epoch`` (int)
``ATSO_SAVE_EVERY``                     ``save_every`` (int, epochs between checkpoints)
``ATSO_FINAL_VALIDATION``               ``final_validation`` (``1/0``, ``true/false``, ``yes/no``)
``ATSO_INIT``                           ``init`` (``scratch`` or ``checkpoint``)
``ATSO_INIT_CHECKPOINT``                ``init_checkpoint`` (path; implies ``init=checkpoint``)
``ATSO_INITIAL_LR``                     ``initial_lr`` (float)
``ATSO_PSEUDOLABELS``                   ``pseudo_label_dir`` (folder)
``ATSO_PSEUDOLABEL_CASES``              ``pseudo_label_cases`` (comma-separated case ids)
``ATSO_LABELED_FRACTION``               ``labeled_fraction`` (float in [0, 1])
``ATSO_OVERSAMPLE_FOREGROUND``          ``oversample_foreground`` (float in [0, 1])
======================================= =====================================================

An empty variable counts as unset. Every field is optional; ``None`` keeps nnU-Net's default.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from atso_nnunet.errors import InputError
from atso_nnunet.io import write_json

RUN_CONFIG_VAR = "ATSO_RUN_CONFIG"
INIT_MODES = ("scratch", "checkpoint")


def _int(v: str) -> int:
    return int(v)


def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _cases(v: str) -> List[str]:
    return [c.strip() for c in v.split(",") if c.strip()]


# variable -> (field, parser)
ENV_VARS: Dict[str, tuple] = {
    "ATSO_NUM_EPOCHS": ("num_epochs", _int),
    "ATSO_ITERATIONS_PER_EPOCH": ("num_iterations_per_epoch", _int),
    "ATSO_VAL_ITERATIONS_PER_EPOCH": ("num_val_iterations_per_epoch", _int),
    "ATSO_SAVE_EVERY": ("save_every", _int),
    "ATSO_FINAL_VALIDATION": ("final_validation", _bool),
    "ATSO_INIT": ("init", str),
    "ATSO_INIT_CHECKPOINT": ("init_checkpoint", str),
    "ATSO_INITIAL_LR": ("initial_lr", float),
    "ATSO_PSEUDOLABELS": ("pseudo_label_dir", str),
    "ATSO_PSEUDOLABEL_CASES": ("pseudo_label_cases", _cases),
    "ATSO_LABELED_FRACTION": ("labeled_fraction", float),
    "ATSO_OVERSAMPLE_FOREGROUND": ("oversample_foreground", float),
}


@dataclass(frozen=True)
class TrainerRunConfig:
    """Settings of one training run; ``None`` keeps nnU-Net's default.

    Attributes:
        num_epochs: epochs (nnU-Net: 1000).
        num_iterations_per_epoch: training iterations per epoch (nnU-Net: 250).
        num_val_iterations_per_epoch: validation iterations per epoch (nnU-Net: 50).
        save_every: epochs between ``checkpoint_latest.pth`` saves (nnU-Net: 50).
        final_validation: run nnU-Net's full-case validation after training (nnU-Net: yes);
            ``False`` skips it (on CPU it dominates tiny runs).
        init: ``scratch`` (nnU-Net's random init) or ``checkpoint`` (all weights from
            ``init_checkpoint``, segmentation head included).
        init_checkpoint: nnU-Net checkpoint (``.pth``) to start from when ``init='checkpoint'``.
        initial_lr: initial learning rate (nnU-Net: 1e-2).
        pseudo_label_dir: folder of pseudo-labels (``<case>.nii.gz``) for the semi-supervised trainer.
        pseudo_label_cases: the cases of ``pseudo_label_dir`` to use (``None`` = every file there).
        labeled_fraction: share of training samples drawn from labeled cases (``None`` = uniform
            over all cases).
        oversample_foreground: share of patches forced to contain foreground (nnU-Net: 0.33).
    """

    num_epochs: Optional[int] = None
    num_iterations_per_epoch: Optional[int] = None
    num_val_iterations_per_epoch: Optional[int] = None
    save_every: Optional[int] = None
    final_validation: Optional[bool] = None
    init: Optional[str] = None
    init_checkpoint: Optional[str] = None
    initial_lr: Optional[float] = None
    pseudo_label_dir: Optional[str] = None
    pseudo_label_cases: Optional[List[str]] = None
    labeled_fraction: Optional[float] = None
    oversample_foreground: Optional[float] = None

    def __post_init__(self):
        self.validate()

    def validate(self, source: Callable[[str], str] = lambda f: f) -> None:
        """Check every field; ``source(field)`` names where a value came from in messages.

        Raises:
            InputError: naming the offending field (or variable).
        """
        for name in ("num_epochs", "num_iterations_per_epoch", "save_every"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InputError(f"{source(name)} must be a positive integer, got {v!r}")
        v = self.num_val_iterations_per_epoch
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise InputError(f"{source('num_val_iterations_per_epoch')} must be an integer >= 0, got {v!r}")
        if self.final_validation is not None and not isinstance(self.final_validation, bool):
            raise InputError(f"{source('final_validation')} must be true or false, got {self.final_validation!r}")
        if self.init is not None and self.init not in INIT_MODES:
            raise InputError(f"{source('init')} must be one of {', '.join(INIT_MODES)}, got {self.init!r}")
        if self.init == "checkpoint" and not self.init_checkpoint:
            raise InputError(f"{source('init')}='checkpoint' needs {source('init_checkpoint')} (a .pth file)")
        if self.init_checkpoint is not None and not isinstance(self.init_checkpoint, str):
            raise InputError(f"{source('init_checkpoint')} must be a path, got {self.init_checkpoint!r}")
        v = self.initial_lr
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise InputError(f"{source('initial_lr')} must be a number > 0, got {v!r}")
        if self.pseudo_label_dir is not None and not isinstance(self.pseudo_label_dir, str):
            raise InputError(f"{source('pseudo_label_dir')} must be a path, got {self.pseudo_label_dir!r}")
        cases = self.pseudo_label_cases
        if cases is not None and (not isinstance(cases, (list, tuple))
                                  or not all(isinstance(c, str) and c for c in cases)):
            raise InputError(f"{source('pseudo_label_cases')} must be a list of case ids, got {cases!r}")
        if cases is not None and self.pseudo_label_dir is None:
            raise InputError(f"{source('pseudo_label_cases')} is set but {source('pseudo_label_dir')} is not")
        for name in ("labeled_fraction", "oversample_foreground"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1):
                raise InputError(f"{source(name)} must be a number in [0, 1], got {v!r}")

    @property
    def init_from_checkpoint(self) -> bool:
        """Whether the network starts from :attr:`init_checkpoint`."""
        return self.init == "checkpoint" or (self.init is None and self.init_checkpoint is not None)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "run config") -> "TrainerRunConfig":
        """Build from a mapping; unknown keys are errors naming ``source``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"{source}: unknown field(s) {unknown}; allowed: {', '.join(sorted(known))}")
        d = dict(d)
        if isinstance(d.get("pseudo_label_cases"), tuple):
            d["pseudo_label_cases"] = list(d["pseudo_label_cases"])
        try:
            return cls(**d)
        except InputError as e:
            raise InputError(f"{source}: {e}") from e

    @classmethod
    def from_json(cls, path: os.PathLike) -> "TrainerRunConfig":
        """Read a JSON file written by :meth:`to_json`.

        Raises:
            InputError: missing or malformed file, or invalid fields (naming the file).
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: run config file not found")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(d, dict):
            raise InputError(f"{path}: expected a JSON object with run config fields")
        return cls.from_dict(d, source=str(path))

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "TrainerRunConfig":
        """Read ``ATSO_RUN_CONFIG`` (if set), then the individual ``ATSO_*`` variables on top.

        Args:
            env: the environment (default ``os.environ``).

        Raises:
            InputError: naming the variable or file field at fault.
        """
        env = os.environ if env is None else env
        values: Dict[str, Any] = {}
        origin = {f.name: f.name for f in fields(cls)}
        if env.get(RUN_CONFIG_VAR):
            values = asdict(cls.from_json(env[RUN_CONFIG_VAR]))
            origin = {k: f"{k} (from {RUN_CONFIG_VAR}={env[RUN_CONFIG_VAR]})" for k in origin}
        for var, (name, parse) in ENV_VARS.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = parse(raw.strip())
            except ValueError as e:
                raise InputError(f"{var}={raw!r}: {e}") from e
            origin[name] = var
        if values.get("init_checkpoint") and origin["init_checkpoint"] == "ATSO_INIT_CHECKPOINT" \
                and "ATSO_INIT" not in env:
            values["init"] = "checkpoint"
        config = cls.__new__(cls)
        for f in fields(cls):
            object.__setattr__(config, f.name, values.get(f.name))
        config.validate(source=lambda f: origin[f])
        return config

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: os.PathLike) -> Path:
        """Atomically write the config as JSON (readable by :meth:`from_json`)."""
        return write_json(self.to_dict(), path)

    def to_env(self) -> Dict[str, str]:
        """``ATSO_*`` variables equivalent to this config (unset fields are left out)."""
        out = {}
        for var, (name, _) in ENV_VARS.items():
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool):
                out[var] = "1" if v else "0"
            elif isinstance(v, list):
                out[var] = ",".join(v)
            else:
                out[var] = str(v)
        return out

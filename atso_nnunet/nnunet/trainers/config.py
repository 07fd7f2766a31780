"""Per-run settings of the atso_nnunet trainers, read from the environment.

nnU-Net fixes the trainer constructor ``(plans, configuration, fold, dataset_json, device)``, so
a run's settings travel through the environment of the ``nnUNetv2_train`` process:

``ATSO_RUN_CONFIG``
    path of a JSON file with any of the :class:`TrainerRunConfig` fields (written by
    :meth:`TrainerRunConfig.to_json`); read first.

Individual variables, applied on top of the file: one per field, listed in :data:`ENV_VARS`
(``ATSO_NUM_EPOCHS`` -> ``num_epochs``, ...). The training settings and their variables are
declared once, in :class:`atso_nnunet.plan.training.TrainingSettings`; this module adds the
per-run fields (teacher init, pseudo-labels). An empty variable counts as unset. Every field is
optional; ``None`` keeps nnU-Net's default.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from atso_nnunet.errors import InputError
from atso_nnunet.io import write_json
from atso_nnunet.plan.training import TrainingSettings, field_problems

RUN_CONFIG_VAR = "ATSO_RUN_CONFIG"
INIT_MODES = ("scratch", "checkpoint")


def _cases(v: str) -> List[str]:
    return [c.strip() for c in v.split(",") if c.strip()]


def _run_field(env: str, parse: Callable[[str], Any], kind: Optional[str] = None) -> Any:
    return field(default=None, metadata={"env": env, "parse": parse, "kind": kind})


@dataclass(frozen=True)
class TrainerRunConfig(TrainingSettings):
    """Settings of one training run: the :class:`TrainingSettings` plus this run's inputs.

    ``None`` keeps nnU-Net's default.

    Attributes:
        init: ``scratch`` (nnU-Net's random init) or ``checkpoint`` (all weights from
            ``init_checkpoint``, segmentation head included).
        init_checkpoint: nnU-Net checkpoint (``.pth``) to start from when ``init='checkpoint'``.
        pseudo_label_dir: folder of pseudo-labels (``<case>.nii.gz``) for the semi-supervised trainer.
        pseudo_label_cases: the cases of ``pseudo_label_dir`` to use (``None`` = every file there).
    """

    init: Optional[str] = _run_field("ATSO_INIT", str)
    init_checkpoint: Optional[str] = _run_field("ATSO_INIT_CHECKPOINT", str, "path")
    pseudo_label_dir: Optional[str] = _run_field("ATSO_PSEUDOLABELS", str, "path")
    pseudo_label_cases: Optional[List[str]] = _run_field("ATSO_PSEUDOLABEL_CASES", _cases)

    def __post_init__(self):
        self.validate()

    def validate(self, source: Callable[[str], str] = lambda f: f) -> None:
        """Check every field; ``source(field)`` names where a value came from in messages.

        Raises:
            InputError: naming the offending field (or variable).
        """
        problems = field_problems(asdict(self), fields(self), source)
        if problems:
            raise InputError(problems[0])
        if self.init is not None and self.init not in INIT_MODES:
            raise InputError(f"{source('init')} must be one of {', '.join(INIT_MODES)}, got {self.init!r}")
        if self.init == "checkpoint" and not self.init_checkpoint:
            raise InputError(f"{source('init')}='checkpoint' needs {source('init_checkpoint')} (a .pth file)")
        cases = self.pseudo_label_cases
        if cases is not None and (not isinstance(cases, (list, tuple))
                                  or not all(isinstance(c, str) and c for c in cases)):
            raise InputError(f"{source('pseudo_label_cases')} must be a list of case ids, got {cases!r}")
        if cases is not None and self.pseudo_label_dir is None:
            raise InputError(f"{source('pseudo_label_cases')} is set but {source('pseudo_label_dir')} is not")

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


# variable -> (field, parser), from the fields' declarations
ENV_VARS: Dict[str, tuple] = {f.metadata["env"]: (f.name, f.metadata["parse"]) for f in fields(TrainerRunConfig)}

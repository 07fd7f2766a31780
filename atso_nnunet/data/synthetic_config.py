"""Options of the synthetic generator (:class:`SyntheticConfig`), checked with messages naming the option."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from atso_nnunet.errors import InputError
from atso_nnunet.limits import SEED_MAX

DOMAINS = ("A", "B")
# Largest volume the generator makes: 1024 voxels along an axis, 2**26 (67 million) in all
# (512 x 512 x 256); the generator's float arrays of a larger one would take gigabytes.
MAX_EDGE = 1024
MAX_VOXELS = 2 ** 26
GENERATOR_VERSION = 1

# Per-domain defaults of the options a user may leave unset.
DOMAIN_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "A": {"shape": (160, 160, 64), "spacing": (0.8, 0.8, 2.5), "noise_sigma": 12.0, "hu_offset": 0.0,
          "lesions": False},
    "B": {"shape": (160, 160, 32), "spacing": (0.8, 0.8, 5.0), "noise_sigma": 22.0, "hu_offset": 30.0,
          "lesions": True},
}


@dataclass(frozen=True)
class SyntheticConfig:
    """Options of the synthetic CT generator; ``None`` fields take the domain's default.

    Attributes:
        domain: ``"A"`` (NIH-like, venous, no lesions) or ``"B"`` (MSD-like, arterial, lesions).
        shape: volume size (x, y, z) in voxels; default (160, 160, 64) for A, (160, 160, 32) for
            B (thicker slices over the same length). At least 16 x 16 x 4, at most 1024 along an axis and 2**26
            voxels in all.
        spacing: voxel size (x, y, z) in mm, each in (0, 100); default (0.8, 0.8, 2.5) for A, (0.8, 0.8, 5.0)
            for B.
        seed: base seed (0 to 2**32 - 1); case ``i`` draws from ``np.random.default_rng([seed, i, domain])``.
        noise_sigma: standard deviation of the image noise in HU, 0 to 500; default 12 (A), 22 (B).
        hu_offset: scanner calibration offset added to every voxel, HU, -500 to 500; default 0 (A), 30 (B).
        lesions: put 1-2 hypodense lesions (label 2) inside the organ; default False (A), True (B).
    """

    domain: str = "A"
    shape: Optional[Tuple[int, int, int]] = None
    spacing: Optional[Tuple[float, float, float]] = None
    seed: int = 0
    noise_sigma: Optional[float] = None
    hu_offset: Optional[float] = None
    lesions: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise InputError(f"SyntheticConfig.domain must be one of {list(DOMAINS)}, got {self.domain!r}")
        defaults = DOMAIN_DEFAULTS[self.domain]
        for name in ("shape", "spacing", "noise_sigma", "hu_offset", "lesions"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])

        shape = _triple(self.shape, "shape")
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shape):
            raise InputError(f"SyntheticConfig.shape must be three integers (x, y, z), got {self.shape!r}")
        if shape[0] < 16 or shape[1] < 16 or shape[2] < 4:
            raise InputError(f"SyntheticConfig.shape (x, y, z) must be at least (16, 16, 4), got {tuple(shape)}")
        if max(shape) > MAX_EDGE or int(np.prod([int(v) for v in shape])) > MAX_VOXELS:
            raise InputError(f"SyntheticConfig.shape {tuple(int(v) for v in shape)} is above the limit: at most "
                             f"{MAX_EDGE} voxels along an axis and {MAX_VOXELS} in all")
        object.__setattr__(self, "shape", tuple(int(v) for v in shape))

        spacing = _triple(self.spacing, "spacing")
        if not all(_is_number(v) and 0 < float(v) < 100 for v in spacing):
            raise InputError(f"SyntheticConfig.spacing must be three numbers in (0, 100) mm, got {self.spacing!r}")
        object.__setattr__(self, "spacing", tuple(float(v) for v in spacing))

        if (not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0
                or self.seed > SEED_MAX):
            raise InputError(f"SyntheticConfig.seed must be an integer from 0 to {SEED_MAX}, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if not _is_number(self.noise_sigma) or not 0 <= float(self.noise_sigma) <= 500:
            raise InputError(f"SyntheticConfig.noise_sigma must be a number in [0, 500] HU, got {self.noise_sigma!r}")
        object.__setattr__(self, "noise_sigma", float(self.noise_sigma))
        if not _is_number(self.hu_offset) or not -500 <= float(self.hu_offset) <= 500:
            raise InputError(f"SyntheticConfig.hu_offset must be a number in [-500, 500] HU, got {self.hu_offset!r}")
        object.__setattr__(self, "hu_offset", float(self.hu_offset))
        if not isinstance(self.lesions, (bool, np.bool_)):
            raise InputError(f"SyntheticConfig.lesions must be true or false, got {self.lesions!r}")
        object.__setattr__(self, "lesions", bool(self.lesions))

    @property
    def labels(self) -> Dict[str, int]:
        """nnU-Net ``labels`` of the cases this configuration generates."""
        labels = {"background": 0, "pancreas": 1}
        if self.lesions:
            labels["tumour"] = 2
        return labels

    def to_dict(self) -> Dict[str, Any]:
        """The resolved options as plain JSON types."""
        d = asdict(self)
        d["shape"], d["spacing"] = list(self.shape), list(self.spacing)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SyntheticConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise an InputError naming them."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown SyntheticConfig option(s) {unknown}; known: {sorted(known)}")
        kwargs = dict(d)
        for k in ("shape", "spacing"):
            if isinstance(kwargs.get(k), list):
                kwargs[k] = tuple(kwargs[k])
        return cls(**kwargs)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _triple(value: Any, name: str) -> tuple:
    try:
        values = tuple(value)
    except TypeError:
        values = ()
    if len(values) != 3:
        raise InputError(f"SyntheticConfig.{name} must have three values (x, y, z), got {value!r}")
    return values


def case_prefix_or_default(domain: str, case_prefix: Optional[str] = None) -> str:
    """The case id prefix of a generated source: ``case_prefix``, or ``syn<domain>`` when unset."""
    return f"syn{domain}" if case_prefix is None else case_prefix


def case_id(prefix: str, index: int) -> str:
    """Case ``index`` of a generated source (``synA_0000``); it depends only on the options and ``index``."""
    return f"{prefix}_{index:04d}"


def recorded_differences(dataset_dir: Path, config: SyntheticConfig, n_cases: int,
                         case_prefix: Optional[str] = None) -> Optional[List[str]]:
    """How an existing generated source differs from the options a plan asks for.

    :func:`atso_nnunet.data.synthetic.write_source_dataset` records its resolved options in ``dataset.json``; a source that
    already exists is reused as it is, so a plan whose generator options changed (another
    ``seed``, ``noise_sigma``, ``shape``, ...) would silently run on the old cases. A source with
    *more* cases than asked holds the asked ones (case ``i`` depends only on the options and
    ``i``), so only fewer cases is a difference.

    Returns:
        None when ``dataset.json`` records no generator options (the folder was not written by
        this generator); otherwise one ``"option: plan X, dataset Y"`` line per difference
        (empty: the source is the one the plan describes).
    """
    try:  # json, not atso_nnunet.io: the plan layer imports this module without SimpleITK
        recorded = json.loads((Path(dataset_dir) / "dataset.json").read_text(encoding="utf-8")).get("synthetic")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, dict):
        return None
    wanted = {**config.to_dict(), "case_prefix": case_prefix_or_default(config.domain, case_prefix),
              "generator_version": GENERATOR_VERSION}
    out = [f"{key}: plan {value!r}, dataset {recorded.get(key)!r}" for key, value in wanted.items()
           if recorded.get(key) != value]
    if not isinstance(recorded.get("n_cases"), int) or recorded["n_cases"] < int(n_cases):
        out.append(f"n_cases: plan {int(n_cases)}, dataset {recorded.get('n_cases')!r}")
    return out

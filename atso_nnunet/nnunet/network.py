"""Changes to nnU-Net's planned network for small runs and tests (:class:`NetworkOverride`)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Tuple

from atso_nnunet.errors import InputError


# --------------------------------------------------------------------------------------------
# Network override
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkOverride:
    """Changes to nnU-Net's planned network for one configuration (small CPU runs, tests).

    ``None`` leaves nnU-Net's planned value untouched.

    Attributes:
        batch_size: training batch size (>= 1).
        max_features: cap on ``features_per_stage`` (>= 1).
        n_stages: number of resolution stages (1 .. the planned number); the per-stage lists of the
            architecture (kernel sizes, strides, convolutions per stage) are truncated with it.
        patch_size: patch size, one entry per axis of the configuration (2 for ``2d``), each
            divisible by the network's total downsampling along that axis.
    """

    batch_size: Optional[int] = None
    max_features: Optional[int] = None
    n_stages: Optional[int] = None
    patch_size: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        for name in ("batch_size", "max_features", "n_stages"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"network.{name} must be a positive integer or null, got {value!r}")
        if self.patch_size is not None:
            ps = self.patch_size
            if (not isinstance(ps, (list, tuple)) or not ps
                    or any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in ps)):
                raise InputError(f"network.patch_size must be a list of positive integers or null, got {ps!r}")
            object.__setattr__(self, "patch_size", tuple(ps))

    @classmethod
    def from_dict(cls, d: Optional[Mapping]) -> Optional["NetworkOverride"]:
        """Build from a plan's ``network`` mapping (``None`` -> ``None``); unknown keys are errors."""
        if d is None:
            return None
        unknown = sorted(set(d) - {"batch_size", "max_features", "n_stages", "patch_size"})
        if unknown:
            raise InputError(f"network: unknown option(s) {unknown}; allowed: batch_size, max_features, "
                             "n_stages, patch_size")
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["patch_size"] is not None:
            d["patch_size"] = list(d["patch_size"])
        return d

    def apply(self, plans: dict, configuration: str) -> dict:
        """Return a copy of ``plans`` with this override applied to ``configuration``.

        Raises:
            InputError: an option does not fit the planned network (names the option).
        """
        plans = json.loads(json.dumps(plans))  # deep copy; never mutate the caller's dict
        config = plans["configurations"].get(configuration)
        if config is None or "architecture" not in config:
            raise InputError(f"network override: configuration {configuration!r} has no architecture of its own "
                             f"in plans {plans.get('plans_name')!r}")
        arch = config["architecture"]["arch_kwargs"]
        if self.n_stages is not None:
            planned = arch["n_stages"]
            if self.n_stages > planned:
                raise InputError(f"network.n_stages={self.n_stages} exceeds the {planned} stages nnU-Net planned "
                                 f"for {plans.get('plans_name')} {configuration}; use at most {planned}")
            n = self.n_stages
            arch["n_stages"] = n
            for key in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage"):
                arch[key] = arch[key][:n]
            arch["n_conv_per_stage_decoder"] = arch["n_conv_per_stage_decoder"][: n - 1]
        if self.max_features is not None:
            arch["features_per_stage"] = [min(int(f), self.max_features) for f in arch["features_per_stage"]]
        if self.batch_size is not None:
            config["batch_size"] = self.batch_size
        if self.patch_size is not None:
            dims = len(config["patch_size"])
            if len(self.patch_size) != dims:
                raise InputError(f"network.patch_size {list(self.patch_size)} needs {dims} entries for "
                                 f"configuration {configuration!r}")
            divisor = [1] * dims
            for stride in arch["strides"]:
                divisor = [d * int(s) for d, s in zip(divisor, stride)]
            bad = [(p, d) for p, d in zip(self.patch_size, divisor) if p % d]
            if bad:
                raise InputError(f"network.patch_size {list(self.patch_size)} must be divisible by {divisor} "
                                 f"(the network's downsampling per axis)")
            config["patch_size"] = list(self.patch_size)
        return plans

"""The sections of an experiment plan: one frozen dataclass each, with the checks of its keys and values.

Each section class knows its keys and checks its values (``problems``), naming every offending
entry by its path in the plan (``network.max_features``, ``synthetic.<source>.shape``); the
generator's and the SLURM backend's own option classes are imported only to check a plan that has
such a section. :class:`~atso_nnunet.plan.schema.ExperimentPlan` holds them.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from atso_nnunet.limits import limit_problem, limits
from atso_nnunet.plan.training import (MAX_LEARNING_RATE, TRAINING_KEYS, TrainingSettings, field_problems, got,
                                       kind_field)

# Patch dimensions of the configurations the tri-view planner makes.
PATCH_DIMS: Dict[str, int] = {"2d": 2, "3d_fullres": 3}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
SOURCE_ID_RE = re.compile(r"^Dataset(\d+)_(.+)$")
# Upper limits of the network overrides: nnU-Net plans at most 512 features, 8 stages and batches of
# tens of patches; these are far above, low enough that a typo is refused before anything is planned.
MAX_BATCH_SIZE = 1024
MAX_FEATURES = 4096
MAX_STAGES = 12
MAX_PATCH_EDGE = 2048                 # voxels along one axis
MAX_PATCH_VOXELS = 2 ** 25            # 33.5 million: 2048 x 2048 in 2d, 320 x 320 x 320 in 3d
# Cases a synthetic source may have (each is generated on first use).
MAX_SYNTHETIC_CASES = 10_000
# Folds of a case rule.
MAX_CASE_RULE_FOLDS = 1000


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def unknown_keys(data: Mapping[str, Any], allowed: Sequence[str], path: str, word: str = "key") -> List[str]:
    """``<path>.<key>: unknown key (did you mean '<closest>'?)`` for each key not in ``allowed``."""
    out = []
    for key in data:
        if key in allowed:
            continue
        hint = difflib.get_close_matches(str(key), list(allowed), n=1)
        where = f"{path}.{key}" if path else str(key)
        out.append(f"{where}: unknown {word}" + (f" (did you mean {hint[0]!r}?)" if hint
                                                 else f"; allowed: {', '.join(allowed)}"))
    return out


def _compact(section: Any) -> Dict[str, Any]:
    """A section's entries that are set (not None), tuples as lists: the JSON of the plan files."""
    out = {}
    for f in dataclasses.fields(section):
        v = getattr(section, f.name)
        if v is not None and v != f.default:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _config_message(message: str, cls_name: str, path: str) -> str:
    """``"SyntheticConfig.shape must ..."`` -> ``"<path>.shape: must ..."``."""
    m = re.match(rf"^{cls_name}\.(\w+)\s*(.*)$", message, flags=re.S)
    if not m:
        return f"{path}: {message}"
    rest = m.group(2)[1:].lstrip() if m.group(2).startswith(":") else m.group(2)
    return f"{path}.{m.group(1)}: " + rest.replace(f"{cls_name}.", f"{path}.")


# ---------------------------------------------------------------------------------------------
# sections


@dataclass(frozen=True)
class NetworkSection:
    """Overrides of nnU-Net's planned network for small runs (``planning.NetworkOverride``'s fields).

    Attributes:
        batch_size: training batch size.
        max_features: cap on the features per stage.
        n_stages: resolution stages (at most the planned number, checked after planning).
        patch_size: one entry per axis of the configuration (2 for ``2d``, 3 for ``3d_fullres``);
            divisibility by the network's downsampling is checked after planning.
    """

    batch_size: Optional[int] = kind_field("positive_int", MAX_BATCH_SIZE)
    max_features: Optional[int] = kind_field("positive_int", MAX_FEATURES)
    n_stages: Optional[int] = kind_field("positive_int", MAX_STAGES)
    patch_size: Optional[Tuple[int, ...]] = field(default=None, metadata=limits(
        limits_text=f"each 1 to {MAX_PATCH_EDGE}; at most {MAX_PATCH_VOXELS} voxels in all"))

    @classmethod
    def problems(cls, data: Mapping[str, Any], path: str = "network",
                 configuration: Optional[str] = None) -> List[str]:
        """Every problem of a ``network`` object (unknown keys, values, patch dimensions)."""
        names = [f.name for f in dataclasses.fields(cls)]
        out = unknown_keys(data, names, path)
        out += field_problems(data, dataclasses.fields(cls), lambda n: f"{path}.{n}")
        ps = data.get("patch_size")
        if ps is not None:
            if not isinstance(ps, (list, tuple)) or not ps or not all(is_int(i) and i >= 1 for i in ps):
                out.append(f"{path}.patch_size: must be a list of positive integers, got {got(ps)}")
            elif configuration in PATCH_DIMS and len(ps) != PATCH_DIMS[configuration]:
                out.append(f"{path}.patch_size: configuration {configuration!r} needs "
                           f"{PATCH_DIMS[configuration]} entries, got {got(list(ps))}")
            else:
                out += [f"{path}.patch_size: {p}" for p in filter(None, (limit_problem(i, 1, MAX_PATCH_EDGE) for i in ps))]
                voxels = 1
                for i in ps:
                    voxels *= i
                if all(i <= MAX_PATCH_EDGE for i in ps) and voxels > MAX_PATCH_VOXELS:
                    out.append(f"{path}.patch_size: {got(list(ps))} is {voxels} voxels, above the limit "
                               f"{MAX_PATCH_VOXELS}; use a smaller patch")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NetworkSection":
        d = dict(data)
        if d.get("patch_size") is not None:
            d["patch_size"] = tuple(d["patch_size"])
        return cls(**d)

    def to_dict(self) -> Dict[str, Any]:
        return _compact(self)


@dataclass(frozen=True)
class TrainingSection(TrainingSettings):
    """The plan's ``training`` section: the :class:`TrainingSettings`, per-role overrides, and two
    plan-only keys. All unset = nnU-Net's defaults. (Old plans call this section ``schedule``.)

    Attributes:
        roles: overrides of the settings for the models of one role (:data:`TRAINING_ROLES`):
            ``{"self": {"initial_lr": 0.001, "num_epochs": 50}, "final": {...}}``.
        student_initial_lr: deprecated: ``roles.self.initial_lr``.
        test_time_augmentation: nnU-Net's mirroring at prediction (``False``: ``--disable_tta``).
    """

    roles: Optional[Dict[str, Dict[str, Any]]] = None
    student_initial_lr: Optional[float] = kind_field("positive_number", MAX_LEARNING_RATE)
    test_time_augmentation: bool = kind_field("bool", default=True)

    @classmethod
    def keys(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def problems(cls, data: Mapping[str, Any], path: str = "training") -> List[str]:
        out = unknown_keys(data, cls.keys(), path)
        out += field_problems(data, dataclasses.fields(cls), lambda n: f"{path}.{n}")
        roles = data.get("roles")
        if roles is not None and not isinstance(roles, Mapping):
            return out + [f"{path}.roles: must be an object such as {{\"self\": {{\"initial_lr\": 0.001}}}}, "
                          f"got {got(roles)}"]
        for role, settings in (roles or {}).items():
            where = f"{path}.roles.{role}"
            if role not in TRAINING_ROLES:
                out += unknown_keys({role: None}, TRAINING_ROLES, f"{path}.roles", word="role")
                continue
            if not isinstance(settings, Mapping):
                out.append(f"{where}: must be an object of training settings, got {got(settings)}")
                continue
            out += unknown_keys(settings, TRAINING_KEYS, where, word="setting")
            out += field_problems(settings, dataclasses.fields(TrainingSettings), lambda n, w=where: f"{w}.{n}")
        return out

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]]) -> "TrainingSection":
        d = {k: v for k, v in (data or {}).items() if v is not None}
        if "roles" in d:
            d["roles"] = {r: dict(v) for r, v in d["roles"].items()}
        return cls(**d)

    def to_dict(self) -> Dict[str, Any]:
        return _compact(self)

    def for_role(self, role: str) -> Dict[str, Any]:
        """The trainer settings of the models of ``role``: the base settings, then the role's.

        Self-learning students (``self``) continue from their teacher: unless the plan says
        otherwise they fine-tune (:data:`SELF_DEFAULTS`): a tenth of the base learning rate and
        half the base epochs, so the two baselines differ the way the paper's do.
        """
        out = self.settings()
        if role == "self":
            given = dict((self.roles or {}).get("self", {}))
            if self.student_initial_lr is not None:
                given.setdefault("initial_lr", self.student_initial_lr)
            base_lr = out.get("initial_lr", NNUNET_DEFAULTS["initial_lr"])
            base_epochs = out.get("num_epochs", NNUNET_DEFAULTS["num_epochs"])
            out.update({"initial_lr": base_lr * SELF_DEFAULTS["lr_factor"],
                        "num_epochs": max(1, int(round(base_epochs * SELF_DEFAULTS["epoch_factor"])))})
            out.update(given)
            return out
        out.update((self.roles or {}).get(role, {}))
        return out

    def iterations(self, role: str) -> int:
        """Training iterations of one model of ``role``: epochs x iterations per epoch (nnU-Net's
        1000 x 250 where the plan is silent)."""
        st = self.for_role(role)
        return int(st.get("num_epochs", NNUNET_DEFAULTS["num_epochs"])
                   * st.get("num_iterations_per_epoch", NNUNET_DEFAULTS["num_iterations_per_epoch"]))


# Roles of the models of a run, each of which may have its own training settings.
TRAINING_ROLES: Tuple[str, ...] = ("M0", "student", "self", "combined", "final", "oracle")
NNUNET_DEFAULTS: Dict[str, Any] = {"initial_lr": 1e-2, "num_epochs": 1000, "num_iterations_per_epoch": 250}
# Self-learning's fine-tuning defaults relative to the base settings.
SELF_DEFAULTS: Dict[str, float] = {"lr_factor": 0.1, "epoch_factor": 0.5}


# The generator's options (data.synthetic.SyntheticConfig fields); a test keeps them equal.
GENERATOR_OPTIONS: Tuple[str, ...] = ("domain", "shape", "spacing", "seed", "noise_sigma", "hu_offset", "lesions")


@dataclass(frozen=True)
class SyntheticSpec:
    """How to generate one synthetic source (``plan.synthetic[<source>]``) when it is missing.

    Attributes:
        n_cases: number of cases (required).
        case_prefix: case id prefix; default ``syn<domain>`` (``synA_0000``, ...).
        domain, shape, spacing, seed, noise_sigma, hu_offset, lesions: the options of
            :class:`atso_nnunet.data.synthetic_config.SyntheticConfig` (``None``: the domain's default).
    """

    n_cases: int = field(metadata=limits(1, MAX_SYNTHETIC_CASES))
    domain: str = "A"
    shape: Optional[Tuple[int, ...]] = None
    spacing: Optional[Tuple[float, ...]] = None
    seed: int = 0
    noise_sigma: Optional[float] = None
    hu_offset: Optional[float] = None
    lesions: Optional[bool] = None
    case_prefix: Optional[str] = None

    @classmethod
    def keys(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def problems(cls, source: str, data: Any, sources: Optional[Sequence[str]] = None) -> List[str]:
        """Every problem of one generator spec (name, unknown options, n_cases, generator values)."""
        path = f"synthetic.{source}"
        out = []
        m = SOURCE_ID_RE.match(source)
        if not m or not 1 <= int(m.group(1)) <= 999 or not NAME_RE.match(m.group(2)):
            out.append(f"{path}: a generated source is named Dataset<id>_<Name> (id 1-999), e.g. "
                       "Dataset980_SyntheticA")
        if sources is not None and source not in sources:
            out.append(f"{path}: not one of sources {list(sources)}; generator settings apply to a source "
                       "of the plan")
        if not isinstance(data, Mapping):
            return out + [f"{path}: must be an object of generator options, got {got(data)}"]
        out += unknown_keys(data, cls.keys(), path, word="option")
        n = data.get("n_cases")
        if n is None:
            out.append(f"{path}.n_cases: required (the number of cases to generate)")
        elif not (is_int(n) and n >= 1):
            out.append(f"{path}.n_cases: must be a positive integer, got {got(n)}")
        elif n > MAX_SYNTHETIC_CASES:
            out.append(f"{path}.n_cases: {limit_problem(n, 1, MAX_SYNTHETIC_CASES)}")
        prefix = data.get("case_prefix")
        if prefix is not None and not (isinstance(prefix, str) and NAME_RE.match(prefix)):
            out.append(f"{path}.case_prefix: must be letters, digits, '_' or '-', got {got(prefix)}")
        return out + _generator_problems(data, path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SyntheticSpec":
        d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if v is not None}
        return cls(**d)

    def generator_options(self) -> Dict[str, Any]:
        """Keyword arguments of ``SyntheticConfig`` (unset options left out)."""
        return {k: getattr(self, k) for k in GENERATOR_OPTIONS if getattr(self, k) is not None}

    def to_dict(self) -> Dict[str, Any]:
        out = {"n_cases": self.n_cases, "domain": self.domain, "seed": self.seed}
        out.update(_compact(self))
        return out


def _generator_problems(data: Mapping[str, Any], path: str) -> List[str]:
    """The generator's own checks, one option at a time so that every bad option is named."""
    given = {k: data[k] for k in GENERATOR_OPTIONS if data.get(k) is not None}
    if not given:
        return []
    from atso_nnunet.data.synthetic_config import DOMAINS, SyntheticConfig
    from atso_nnunet.errors import InputError

    out = []
    domain = given.get("domain", "A")
    if domain not in DOMAINS:
        out.append(f"{path}.domain: must be one of {', '.join(DOMAINS)}, got {got(domain)}")
        domain = "A"
    for key, value in given.items():
        if key == "domain":
            continue
        try:
            SyntheticConfig(**{"domain": domain, key: value})
        except InputError as e:
            out.append(_config_message(str(e), "SyntheticConfig", path))
    return out


@dataclass(frozen=True)
class CaseRule:
    """Reference and test sets read from a converted source instead of listed.

    The source's labeled cases (minus the plan's labeled ones) sorted by id, cut into ``folds``
    contiguous folds (larger folds last); ``test_folds`` are E, the others R
    (:func:`atso_nnunet.plan.splits.apply_case_rule`).

    Attributes:
        source: the converted source dataset whose labeled cases are split.
        folds: number of contiguous folds.
        test_folds: the folds (0-based) that are the test set E; the others are R.
    """

    source: str
    folds: int = field(metadata=limits(2, MAX_CASE_RULE_FOLDS))
    test_folds: Tuple[int, ...]

    KEYS = ("source", "folds", "test_folds")

    @classmethod
    def problems(cls, data: Mapping[str, Any], sources: Optional[Sequence[str]] = None) -> List[str]:
        out = unknown_keys(data, cls.KEYS, "case_rule")
        src = data.get("source")
        if not isinstance(src, str) or not src:
            out.append("case_rule.source: required, the source dataset whose labeled cases are split (one of sources)")
        elif sources is not None and src not in sources:
            out.append(f"case_rule.source: {src!r} is not one of sources {list(sources)}")
        k = data.get("folds")
        if not is_int(k) or k < 2:
            out.append(f"case_rule.folds: must be an integer >= 2, got {got(k)}")
        elif k > MAX_CASE_RULE_FOLDS:
            out.append(f"case_rule.folds: {limit_problem(k, 2, MAX_CASE_RULE_FOLDS)}")
        tf = data.get("test_folds")
        if not isinstance(tf, (list, tuple)) or not all(is_int(f) for f in tf) or (is_int(k) and k >= 2 and (
                not tf or len(set(tf)) >= k or any(not 0 <= f < k for f in tf))):
            out.append("case_rule.test_folds: must be a non-empty list of fold numbers in [0, folds), not all of "
                       f"them; got {got(tf)}")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CaseRule":
        return cls(source=data["source"], folds=data["folds"], test_folds=tuple(data["test_folds"]))

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "folds": self.folds, "test_folds": list(self.test_folds)}


def slurm_problems(data: Mapping[str, Any], path: str = "slurm") -> List[str]:
    """Keys and values of a ``slurm`` section against ``execution.slurm.SlurmConfig`` (imported here)."""
    from atso_nnunet.execution.slurm.config import SlurmConfig

    names = [f.name for f in dataclasses.fields(SlurmConfig)]
    out = unknown_keys(data, names, path)
    known = {k: v for k, v in data.items() if k in names}
    try:
        SlurmConfig(**known)
    except (TypeError, ValueError) as e:
        out.append(_config_message(str(e), "SlurmConfig", path))
    return out

"""The training settings: the one list of what a plan's ``training`` section and a trainer run config share.

:class:`TrainingSettings` declares each setting once, with its check, its ``ATSO_*`` environment
variable and the nnU-Net trainer attribute it sets. Everything else is derived from it: the plan's
:class:`~atso_nnunet.plan.schema.TrainingSection` (these settings plus two plan-only keys), the
trainers' :class:`~atso_nnunet.nnunet.trainers.config.TrainerRunConfig` and its ``ENV_VARS``, and the
attributes ``ATSOTrainer`` overrides. This module imports nothing heavy (the trainer process and
the plan loader both read it).
"""
from __future__ import annotations

import json
from dataclasses import Field, dataclass, field, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from atso_nnunet.limits import SEED_MAX, limits, metadata_problem


def parse_bool(text: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any case) as a bool.

    Raises:
        ValueError: anything else.
    """
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# kind -> (accepts the value, what the message says a value must be)
KINDS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "positive_int": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "non_negative_int": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "positive_number": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "fraction": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "path": (lambda v: isinstance(v, str) and bool(v), "a path"),
}


def got(value: Any) -> str:
    """A value as messages quote it: JSON (``"3"`` for a string), shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# kind -> (the lower limit it implies, whether the value must be strictly above it, its upper limit)
KIND_LIMITS: Dict[str, Tuple[Optional[float], bool, Optional[float]]] = {
    "positive_int": (1, False, None), "non_negative_int": (0, False, None), "positive_number": (0, True, None),
    "fraction": (0, False, 1),
}
# The upper limits of the training settings: far above any real training (nnU-Net: 1000 epochs of 250
# iterations, learning rate 0.01), low enough that a typo is refused before a run is planned.
MAX_EPOCHS = 100_000
MAX_ITERATIONS_PER_EPOCH = 100_000
MAX_LEARNING_RATE = 10.0


def value_problem(kind: str, value: Any, metadata: Optional[Mapping[str, Any]] = None) -> Optional[str]:
    """What is wrong with ``value`` (not None): ``"must be <what>, got <value>"`` when it is not of
    ``kind``, else the limits of ``metadata`` (``"<value> is above the limit <max>"``); None when fine."""
    ok, what = KINDS[kind]
    if value is None:
        return None
    if not ok(value):
        return f"must be {what}, got {got(value)}"
    return metadata_problem(value, metadata or {})


def kind_field(kind: str, maximum: Optional[float] = None, default: Any = None, **metadata: Any) -> Any:
    """A dataclass field of ``kind`` (:data:`KINDS`) with its limits in its metadata (:mod:`atso_nnunet.limits`)."""
    lo, above, hi = KIND_LIMITS.get(kind, (None, False, None))
    return field(default=default, metadata=limits(lo, maximum if maximum is not None else hi, above,
                                                  kind=kind, **metadata))


def setting(kind: str, env: str, parse: Callable[[str], Any], trainer_attribute: Optional[str] = None,
            maximum: Optional[float] = None) -> Any:
    """A settings field: default None (nnU-Net's value), with its check and its ``ATSO_*`` variable.

    Args:
        kind: a key of :data:`KINDS`.
        env: the environment variable that sets it in a trainer process.
        parse: turns the variable's text into the value.
        trainer_attribute: the ``nnUNetTrainer`` attribute the value replaces, if any.
        maximum: the largest value allowed (numbers; the kind gives the lower limit).
    """
    return kind_field(kind, maximum, env=env, parse=parse, trainer_attribute=trainer_attribute)


@dataclass(frozen=True)
class TrainingSettings:
    """How one nnU-Net training runs; ``None`` keeps nnU-Net's default.

    Attributes:
        num_epochs: epochs (nnU-Net: 1000).
        num_iterations_per_epoch: training iterations per epoch (nnU-Net: 250).
        num_val_iterations_per_epoch: validation iterations per epoch (nnU-Net: 50).
        save_every: epochs between ``checkpoint_latest.pth`` saves (nnU-Net: 50): a killed training
            continued with ``--c`` redoes up to ``save_every - 1`` epochs. On a CPU, where an epoch
            takes minutes, set it small (1-5).
        plot_every: epochs between redraws of ``progress.png`` (nnU-Net: 1); the last epoch always
            draws it. nnU-Net's plot is a 3000 x 5400 pixel PNG, seconds of CPU for small networks.
        best_checkpoint_every: epochs between checks for a new best EMA pseudo Dice, which saves
            ``checkpoint_best.pth`` (nnU-Net: every epoch); the last epoch is always checked. The
            pipeline predicts with ``checkpoint_final.pth``; the best checkpoint is for people.
        final_validation: run nnU-Net's full-case validation after training (nnU-Net: yes);
            ``False`` skips it (on CPU it dominates tiny runs).
        initial_lr: initial learning rate (nnU-Net: 1e-2).
        labeled_fraction: share of training samples drawn from labeled cases (``None`` = uniform
            over all cases).
        oversample_foreground: share of patches forced to contain foreground (nnU-Net: 0.33).
        seed: seed of torch, numpy and random in the training process (weights init, sampling,
            augmentation), reseeded at every epoch from (seed, epoch), so a training killed and
            continued with ``--c`` ends with the same weights as one that ran through (CPU,
            single-process augmentation: :mod:`atso_nnunet.nnunet.trainers.seeding`); ``None``: nnU-Net's
            unseeded default, and a resumed training differs. Training on a GPU stays
            non-deterministic (cuDNN), so repeated runs still differ somewhat.
    """

    num_epochs: Optional[int] = setting("positive_int", "ATSO_NUM_EPOCHS", int, "num_epochs", MAX_EPOCHS)
    num_iterations_per_epoch: Optional[int] = setting("positive_int", "ATSO_ITERATIONS_PER_EPOCH", int,
                                                      "num_iterations_per_epoch", MAX_ITERATIONS_PER_EPOCH)
    num_val_iterations_per_epoch: Optional[int] = setting("non_negative_int", "ATSO_VAL_ITERATIONS_PER_EPOCH", int,
                                                          "num_val_iterations_per_epoch", MAX_ITERATIONS_PER_EPOCH)
    save_every: Optional[int] = setting("positive_int", "ATSO_SAVE_EVERY", int, "save_every", MAX_EPOCHS)
    plot_every: Optional[int] = setting("positive_int", "ATSO_PLOT_EVERY", int, maximum=MAX_EPOCHS)
    best_checkpoint_every: Optional[int] = setting("positive_int", "ATSO_BEST_CHECKPOINT_EVERY", int,
                                                   maximum=MAX_EPOCHS)
    final_validation: Optional[bool] = setting("bool", "ATSO_FINAL_VALIDATION", parse_bool)
    initial_lr: Optional[float] = setting("positive_number", "ATSO_INITIAL_LR", float, "initial_lr",
                                          MAX_LEARNING_RATE)
    labeled_fraction: Optional[float] = setting("fraction", "ATSO_LABELED_FRACTION", float)
    oversample_foreground: Optional[float] = setting("fraction", "ATSO_OVERSAMPLE_FOREGROUND", float,
                                                     "oversample_foreground_percent")
    seed: Optional[int] = setting("non_negative_int", "ATSO_SEED", int, maximum=SEED_MAX)

    def settings(self) -> Dict[str, Any]:
        """The training settings that are set (not None), in declaration order."""
        return {f.name: getattr(self, f.name) for f in training_fields() if getattr(self, f.name) is not None}


def training_fields() -> Tuple[Field, ...]:
    """The fields of :class:`TrainingSettings` (the one list of training settings)."""
    return fields(TrainingSettings)


TRAINING_KEYS: Tuple[str, ...] = tuple(f.name for f in training_fields())


def field_problems(values: Mapping[str, Any], declared: Tuple[Field, ...],
                   name_of: Callable[[str], str]) -> List[str]:
    """Problems of the values of fields declared with :func:`setting` (or a ``kind`` in metadata).

    Args:
        values: field name -> value (None = unset, not checked).
        declared: the fields to check (those without a ``kind`` are skipped).
        name_of: how a message names a field (``"training.num_epochs"``, ``"ATSO_NUM_EPOCHS"``).

    Returns:
        ``"<name>: must be ..., got ..."`` per bad value.
    """
    out = []
    for f in declared:
        kind = f.metadata.get("kind")
        if kind is None or f.name not in values:
            continue
        problem = value_problem(kind, values[f.name], f.metadata)
        if problem:
            out.append(f"{name_of(f.name)}: {problem}")
    return out

"""A valid plan as JSON data for the plan tests, and helpers to plant mistakes in it."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.plan import plan_from_dict

PLAN = {
    "name": "tiny 3 labeled",
    "note": "unit test",
    "sources": ["Dataset980_SyntheticA"],
    "dataset_id": 981,
    "dataset_name": "Tiny3",
    "convert_hint": "atso_nnunet_synth --dataset-id 980",
    "labeled": ["s0", "s1", "s2"],
    "reference": ["r0", "r1", "r2", "r3", "r4"],
    "test": ["e0", "e1"],
    "seed": 0,
    "subsets": 2,
    "generations": 2,
    "views": ["axial", "coronal", "sagittal"],
    "configuration": "2d",
    "fold": "all",
    "method": "atso",
    "metric": "mean",
    "eval_label_map": {},
    "network": {"batch_size": 2},
    "training": {"num_epochs": 1},
    "synthetic": None,
}


def plan_data(**changes) -> dict:
    """A deep copy of :data:`PLAN` with top-level ``changes``."""
    data = copy.deepcopy(PLAN)
    data.update(changes)
    return data


def write_plan_file(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def problems_of(data: dict) -> str:
    """The message of the InputError that loading ``data`` raises."""
    with pytest.raises(InputError) as info:
        plan_from_dict(data)
    return str(info.value)

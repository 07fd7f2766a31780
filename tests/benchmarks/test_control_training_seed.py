"""benchmarks/control_training_seed.py: the retrained finals' seeds differ from the run's own."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import load_script

REPO = Path(__file__).resolve().parents[2]
SEED2_ATSO = REPO / "docs" / "benchmarks" / "r1" / "seed2" / "atso"


@pytest.fixture(scope="module")
def control():
    sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports its sibling control_volume_prior
    try:
        yield load_script("benchmarks/control_training_seed.py")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_the_run_s_own_final_seed_comes_from_its_plan(control):
    plan = {"training": {"seed": 2}}
    assert control.run_final_seed(plan) == 2
    plan["training"]["roles"] = {"final": {"seed": 5}}
    assert control.run_final_seed(plan) == 5
    assert control.run_final_seed({}) is None
    assert control.run_final_seed(json.loads((SEED2_ATSO / "plan.json").read_text())) == 2


def test_default_final_seeds_skip_the_run_s_own(control):
    assert control.other_seeds(0) == [1, 2]
    assert control.other_seeds(2) == [1, 3]
    assert control.other_seeds(None) == [1, 2]


def test_the_run_s_own_seed_is_refused_before_anything_runs(control, tmp_path):
    work = tmp_path / "work"
    with pytest.raises(SystemExit, match=r"--final-seeds: 2 is the training seed of the run's own final model.*--final-seeds 1 3"):
        control.main(["--run", str(SEED2_ATSO), "--work", str(work), "--final-seeds", "1", "2"])
    assert not work.exists()

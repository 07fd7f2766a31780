"""benchmarks/item7_decide.py applies item 7's rule fixed in advance to a published seed's records."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import load_script

REPO = Path(__file__).resolve().parents[2]
R1 = REPO / "docs" / "benchmarks" / "r1"


@pytest.fixture(scope="module")
def item7():
    return load_script("benchmarks/item7_decide.py")


def test_seed_0_asks_for_the_two_controls_that_were_run_on_it(item7):
    d = item7.decide(R1, 0)
    assert (d["atso_final"], d["labeled_only"], d["stso_final"]) == pytest.approx((58.294, 66.194, 62.524), abs=0.001)
    assert d["m1_equals_stso_g1"] and d["T"] == 3
    assert d["triggered"] and d["control_a"] and d["control_b"]
    cmds = item7.commands(d, Path("/runs"))
    assert "control_volume_prior.py --stso-run /runs/seed0/stso --work /runs_control_s0 " in cmds[0]
    assert "control_training_seed.py --run /runs/seed0/atso --work /runs_control_atso_s0 " in cmds[1]


def _copy_with_atso_final(tmp_path: Path, final: float) -> Path:
    for m in ("supervised", "stso", "atso"):
        shutil.copytree(R1 / "seed0" / m, tmp_path / "seed0" / m, ignore=shutil.ignore_patterns("logs", "eval", "*.png"))
    path = tmp_path / "seed0" / "atso" / "report.json"
    report = json.loads(path.read_text())
    report["final"]["test_dsc_mean"] = final
    path.write_text(json.dumps(report))
    return tmp_path


def test_atso_at_or_above_both_triggers_nothing(item7, tmp_path):
    d = item7.decide(_copy_with_atso_final(tmp_path, 0.70), 0)
    assert not d["triggered"] and not d["control_a"] and not d["control_b"]
    assert item7.commands(d, Path("/runs")) == []


def test_below_stso_but_within_2_of_m_t_minus_1_asks_for_control_a_only(item7, tmp_path):
    d = item7.decide(_copy_with_atso_final(tmp_path, 0.615), 0)  # STSO 62.5, M_2 62.9: 1.4 below M_2
    assert d["triggered"] and d["control_a"] and not d["control_b"]


def test_an_unpublished_seed_is_named(item7, tmp_path):
    with pytest.raises(SystemExit, match="seed 5 is not published"):
        item7.decide(R1, 5)


def test_seed_1_asks_for_control_a_only(item7):
    d = item7.decide(R1, 1)
    assert (d["atso_final"], d["stso_final"], d["atso_M_T-1"]) == pytest.approx((64.1, 67.2, 65.3), abs=0.05)
    assert d["m1_equals_stso_g1"] and d["triggered"] and d["control_a"] and not d["control_b"]


def test_seed_2_asks_for_both_controls_with_final_seeds_other_than_its_own(item7):
    d = item7.decide(R1, 2)
    assert (d["atso_final"], d["labeled_only"], d["stso_final"], d["atso_M_T-1"]) == pytest.approx(
        (56.2, 59.3, 58.9, 59.3), abs=0.05)
    assert d["m1_equals_stso_g1"] and d["control_a"] and d["control_b"]
    # seed 2's runs train with training seed 2: a final retrained with seed 2 is the stock arm again
    assert d["final_seeds"] == [1, 3]
    assert item7.commands(d, Path("/runs"))[1].endswith("--final-seeds 1 3")
    assert item7.decide(R1, 0)["final_seeds"] == [1, 2]

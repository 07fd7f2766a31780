"""The stability filter (atso_nnunet.monitors.stability): the change measure by hand, the cases left out, the plan option."""
from __future__ import annotations

import numpy as np
import pytest

from atso_nnunet.monitors.stability import StabilityFilter, change_fraction, stability_record, unstable_cases


def test_change_fraction_by_hand():
    a = np.array([0, 1, 1, 1, 0, 2])
    b = np.array([0, 0, 1, 1, 1, 1])
    # foreground in either: 5 voxels; differing among them: index 1, 4, 5 -> 3 / 5
    assert change_fraction(a, b) == pytest.approx(0.6)
    assert change_fraction(np.zeros(4), np.zeros(4)) == 0.0
    assert change_fraction(a, a) == 0.0


def test_unstable_cases_by_fraction_and_by_threshold():
    changes = {"a": 0.05, "b": 0.40, "c": 0.10, "d": 0.40, "e": 0.2}
    assert unstable_cases(changes, StabilityFilter(drop_fraction=0.4)) == ["b", "d"]  # 2 of 5, ties by id
    assert unstable_cases(changes, StabilityFilter(drop_fraction=0.05)) == []
    assert unstable_cases(changes, StabilityFilter(max_change=0.15)) == ["b", "d", "e"]


def test_the_plan_option_is_checked_with_messages_that_name_it():
    assert StabilityFilter.problems(None) == []
    assert StabilityFilter.problems({"drop_fraction": 0.1}) == []
    msgs = StabilityFilter.problems({"drop_fraction": 0, "max_chang": 0.1})
    assert any(m.startswith("stability_filter.max_chang: unknown key") for m in msgs)
    assert any(m.startswith("stability_filter.drop_fraction: must be a number with 0 < value < 1") for m in msgs)
    assert StabilityFilter.problems({}) == ["stability_filter: give exactly one of drop_fraction (the fraction "
                                            "of cases left out) or max_change (the largest change a kept case "
                                            "may have), got neither"]
    assert StabilityFilter.problems("yes")[0].startswith("stability_filter: must be an object")


def test_stability_record_reads_two_rounds(tmp_path):
    from atso_nnunet.io import Geometry, write_array

    geom = Geometry((4, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    for t, (na, nb) in enumerate(((10, 10), (10, 20))):
        for case, n in (("a", na), ("b", nb)):
            arr = np.zeros((4, 4, 4), np.uint8)
            arr.reshape(-1)[:n] = 1
            write_array(arr, geom, tmp_path / f"R_g{t}" / f"{case}.nii.gz")
    rec = stability_record(tmp_path / "R_g1", tmp_path / "R_g0", ["a", "b"], StabilityFilter(max_change=0.3))
    assert rec["change_per_case"] == {"a": 0.0, "b": pytest.approx(0.5)}
    assert rec["dropped"] == ["b"] and rec["kept"] == ["a"] and rec["value"] == 1

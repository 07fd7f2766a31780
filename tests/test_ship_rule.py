"""Which generation to ship without labels (atso_nnunet.ship_rule)."""
from __future__ import annotations

import pytest

from atso_nnunet.ship_rule import ship_generation


def test_before_drift_ships_the_generation_before_the_first_drifted_labels():
    tri_view_atso = {0: 44.9, 1: 36.9, 2: 34.0, 3: 28.9}  # drift first at G2
    assert ship_generation(tri_view_atso, last=3) == 1
    assert ship_generation(tri_view_atso, last=3, rule="last") == 3
    assert ship_generation({0: 10.0, 1: 7.0}, last=2) == 0  # drift at once: M0
    assert ship_generation({0: 10.0, 1: 9.5, 2: 9.9}, last=3) == 3  # no drift: T
    assert ship_generation({0: None, 1: None}, last=2) == 2  # nothing recorded: T
    with pytest.raises(ValueError, match="ship_generation: unknown rule 'best'"):
        ship_generation({}, last=1, rule="best")

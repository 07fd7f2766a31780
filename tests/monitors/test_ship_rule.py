"""Which generation to ship without labels (atso_nnunet.monitors.ship_rule)."""
from __future__ import annotations

import pytest

from atso_nnunet.monitors.ship_rule import ship_generation


def test_before_drift_ships_the_generation_before_the_first_drifted_labels():
    tri_view_atso = {0: 44.9, 1: 36.9, 2: 34.0, 3: 28.9}  # drift first at G2
    assert ship_generation(tri_view_atso, last=3) == 1
    assert ship_generation(tri_view_atso, last=3, rule="last") == 3
    assert ship_generation({0: 10.0, 1: 7.0}, last=2) == 0  # drift at once: M0
    assert ship_generation({0: 10.0, 1: 9.5, 2: 9.9}, last=3) == 3  # no drift: T
    assert ship_generation({0: None, 1: None}, last=2) == 2  # nothing recorded: T
    with pytest.raises(ValueError, match="ship_generation: unknown rule 'best'"):
        ship_generation({}, last=1, rule="best")


def test_the_regret_table_is_re_derived_from_the_published_records():
    from helpers import REPO, load_script

    script = load_script("benchmarks/ship_rule_regret.py")
    rows = script.collect(REPO / "docs" / "benchmarks")
    assert len(rows) == 42  # semi-supervised runs with pseudo-labels (the oracle has none)
    moved = [(r["comparison"], r["method"], r["ships"]) for r in rows if r["ships"] != r["last"]]
    assert moved == [("10pct_triview", "atso", 1)]
    tri = next(r for r in rows if r["comparison"] == "10pct_triview" and r["method"] == "atso")
    assert round(100 * (tri["at_last"] - tri["shipped"]), 1) == -12.1 and tri["best"] == tri["shipped"]
    table = script.render(rows)
    assert "| **all** | | 42 | 1 run(s) not at T | +1.2, +7.9 | -0.3, +0.0 |" in table
    assert (REPO / "docs" / "without_labels.md").read_text().count(table.strip()) == 1

"""The drift monitor and verdict (atso_nnunet.monitors.drift): volumes by hand, a planted shrinking chain warns,
a stable one does not."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from atso_nnunet.monitors.drift import DRIFT_THRESHOLD, drift_verdict, drift_warning, foreground_volume, volume_record
from atso_nnunet.io import Geometry, write_array

SPACING = (2.0, 1.0, 0.5)  # x, y, z mm: 1 mL = 1000 voxels


def _geometry(shape):
    return Geometry(tuple(reversed(shape)), SPACING, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _write(folder, case, voxels, shape=(20, 20, 20)):
    a = np.zeros(shape, np.uint8)
    a.reshape(-1)[:voxels] = 1
    write_array(a, _geometry(shape), folder / f"{case}.nii.gz")


def _chain(tmp_path, start, factor, generations, cases=("c1", "c2")):
    """Pseudo-label sets R_g0..R_gT whose volume is multiplied by ``factor`` every generation."""
    folders = []
    for t in range(generations + 1):
        folder = tmp_path / f"R_g{t}"
        for i, c in enumerate(cases):
            _write(folder, c, int(round((start + 100 * i) * factor ** t)))
        folders.append(folder)
    return folders


def test_volume_in_ml_from_the_spacing(tmp_path):
    _write(tmp_path, "c", 2000)
    assert foreground_volume(tmp_path / "c.nii.gz") == (2000, pytest.approx(2.0))


def test_volume_record_ratios_and_vote_against_views_by_hand(tmp_path):
    labels, v1, v2, v3 = (tmp_path / n for n in ("R_g1", "ax", "co", "sa"))
    _write(labels, "a", 600)
    _write(labels, "b", 1000)
    for folder, (na, nb) in ((v1, (800, 1000)), (v2, (1000, 1000)), (v3, (1200, 1000))):
        _write(folder, "a", na)
        _write(folder, "b", nb)
    rec = volume_record(labels, ["a", "b"], [(["a", "b"], [v1, v2, v3])], first={"total_ml": 3.2},
                        previous={"total_ml": 2.0})
    assert rec["total_ml"] == pytest.approx(1.6) and rec["per_case_ml"] == {"a": pytest.approx(0.6),
                                                                           "b": pytest.approx(1.0)}
    assert rec["vs_first"] == pytest.approx(0.5) and rec["vs_previous"] == pytest.approx(0.8)
    # a: 600 / mean(800, 1000, 1200) = 0.6; b: 1.0; median of two = 0.8
    assert rec["vote_vs_views_per_case"] == {"a": pytest.approx(0.6), "b": pytest.approx(1.0)}
    assert rec["vote_vs_views"] == pytest.approx(0.8)
    assert volume_record(labels, ["a"])["vs_first"] is None
    # against the labeled cases' mean organ volume: 0.8 mL a case over 1.6 mL
    assert rec["vs_labeled"] is None
    assert volume_record(labels, ["a", "b"], labeled_mean_ml=1.6)["vs_labeled"] == pytest.approx(0.5)


def _volumes(folders):
    recs = []
    for folder in folders:
        recs.append(volume_record(folder, ["c1", "c2"], first=recs[0] if recs else None,
                                  previous=recs[-1] if recs else None))
    return recs


def test_a_chain_shrinking_15_percent_per_generation_warns_at_the_second(tmp_path):
    recs = _volumes(_chain(tmp_path, 1000, 0.85, 3))
    assert [r["vs_first"] for r in recs[1:]] == [pytest.approx(0.85 ** t, abs=1e-3) for t in (1, 2, 3)]
    warnings = [drift_warning(r, t) for t, r in enumerate(recs)]
    assert warnings[:2] == [None, None] and warnings[2] and warnings[3]
    assert warnings[2].startswith("pseudo-labels lost 28 % of their volume over two generations")
    verdict = drift_verdict({t: r["total_ml"] for t, r in enumerate(recs)}, vote_vs_views=0.65)
    assert verdict.drifted and verdict.first_generation == 2
    assert verdict.words.startswith("pseudo-labels lost 28 % of their volume over two generations")
    assert "M0's fused pseudo-labels kept 65 % of the volume its views predicted" in verdict.words


def test_a_stable_chain_does_not_warn(tmp_path):
    recs = _volumes(_chain(tmp_path, 1000, 0.97, 3))  # -3 % a generation: -9 % after three
    assert all(drift_warning(r, t) is None for t, r in enumerate(recs))
    verdict = drift_verdict({t: r["total_ml"] for t, r in enumerate(recs)})
    assert not verdict.drifted and verdict.words.startswith("no drift")
    # growth is never a drift
    assert not drift_verdict({0: 10.0, 1: 20.0, 2: 40.0}).drifted


def test_the_verdict_on_the_published_tri_view_volumes():
    # docs/lab/benchmarks.md, tri-view seed 0: ATSO's pseudo-labels on R in mL
    v = drift_verdict({0: 44.9, 1: 36.9, 2: 34.0, 3: 28.9})
    assert v.first_generation == 2 and v.words.startswith("pseudo-labels lost 24 %")
    # STSO's, the same seed: no drift
    assert not drift_verdict({0: 44.9, 1: 45.1, 2: 43.8, 3: 43.0}).drifted
    assert DRIFT_THRESHOLD == 0.20
    assert "nothing to compare" in drift_verdict({0: 44.9}).words

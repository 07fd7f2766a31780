"""The model a run ships (``ship_generation``) is the one ``atso_nnunet_segment`` uses: a planted
shrinking chain ships the generation before the drift, a stable run its final model."""
from __future__ import annotations

import json

import pytest

from atso_nnunet.cli.segment import final_model_folders
from atso_nnunet.errors import InputError
from atso_nnunet.methods import get_method
from atso_nnunet.plan import plan_problems
from atso_nnunet.run.shipping import shipped_model

from helpers import fake_plan
from monitors.test_without_labels import _shrink_pseudo_labels


@pytest.mark.parametrize("method, model", [("stso", "g1_all"), ("self", "g1_all"), ("atso", "g1_comb")])
def test_before_drift_ships_the_generation_before_the_drift_to_segment(fake_run, monkeypatch, method, model):
    _shrink_pseudo_labels(monkeypatch)
    plan = fake_plan(method, generations=3, ship_generation="before_drift")
    _, _, run = fake_run(plan)
    shipped = shipped_model(run.root, plan)
    assert (shipped.generation, shipped.model) == (1, model)
    assert "drifted after G1" in shipped.why
    assert json.loads((run.root / "report.json").read_text())["without_labels"]["ship"]["model"] == model
    assert "atso_nnunet_segment uses its model " + repr(model) in (run.root / "report.md").read_text()
    folders, _ = final_model_folders(run.root)
    assert all(f"/models/{model}/" in folder.as_posix() for folder in folders.values())
    assert (run.root / "models" / model).is_dir()


def test_without_drift_or_with_rule_last_the_final_model_ships(fake_run, monkeypatch):
    plan = fake_plan("atso", generations=2, ship_generation="before_drift")
    _, _, run = fake_run(plan)
    assert shipped_model(run.root, plan).model == "final"
    _shrink_pseudo_labels(monkeypatch)
    last = fake_plan("stso", generations=3)
    assert shipped_model(run.root, last).model == "g3_all"      # 'last' reads no report


def test_before_drift_needs_the_run_finished(tmp_path):
    with pytest.raises(InputError, match="no report.json"):
        shipped_model(tmp_path, fake_plan("stso", generations=2, ship_generation="before_drift"))


def test_each_generation_has_the_model_that_ships_it():
    atso, stso = fake_plan("atso", generations=3), fake_plan("stso", generations=3)
    assert [get_method("atso").generation_model(atso, t) for t in range(4)] == ["M0", "g1_comb", "g2_comb", "final"]
    assert [get_method("stso").generation_model(stso, t) for t in range(4)] == ["M0", "g1_all", "g2_all", "g3_all"]
    ens = fake_plan("atso", generations=3, method_options={"atso": {"test_model": "ensemble"}})
    assert get_method("atso").generation_model(ens, 1) is None


def test_atso_ensemble_cannot_ship_before_the_last_generation():
    data = fake_plan("atso", generations=3, method_options={"atso": {"test_model": "ensemble"}}).to_dict()
    data["ship_generation"] = "before_drift"
    assert any(p.startswith("ship_generation: ATSO with method_options.atso.test_model 'ensemble'")
               for p in plan_problems(data))

"""atso_nnunet.plan.schema: the typed sections and their JSON."""
from __future__ import annotations

import dataclasses
import json

import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.plan import (CaseRule, ExperimentPlan, NetworkSection, SyntheticSpec, TrainingSection,
                              find_plan, load_plan, plan_from_dict)
from atso_nnunet.plan.sections import GENERATOR_OPTIONS
from plan_fixtures import plan_data


def test_constructing_an_invalid_plan_directly_raises():
    with pytest.raises(InputError, match="method"):
        ExperimentPlan(name="x", sources=("Dataset1_A",), dataset_id=2, dataset_name="B", labeled=("a",),
                       reference=("b", "c"), test=(), method="nope", generations=1)
    with pytest.raises(InputError, match="training.num_epochs: must be a positive integer"):
        ExperimentPlan(name="x", sources=("Dataset1_A",), dataset_id=2, dataset_name="B", labeled=("a",),
                       reference=("b", "c"), test=(), method="atso", generations=1,
                       training=TrainingSection(num_epochs=0))


def test_sections_given_as_mappings_become_their_classes():
    plan = ExperimentPlan(name="x", sources=("Dataset980_SyntheticA",), dataset_id=2, dataset_name="B",
                          labeled=["a"], reference=["b", "c"], test=[], method="atso", generations=1,
                          network={"batch_size": 2}, training={"num_epochs": 3},
                          synthetic={"Dataset980_SyntheticA": {"n_cases": 3}})
    assert plan.network == NetworkSection(batch_size=2)
    assert plan.training == TrainingSection(num_epochs=3)
    assert plan.synthetic == {"Dataset980_SyntheticA": SyntheticSpec(n_cases=3)}
    assert plan.labeled == ("a",)


def test_to_dict_writes_training_and_null_for_empty_sections():
    plan = plan_from_dict(plan_data(network=None, training=None))
    data = plan.to_dict()
    assert "schedule" not in data
    assert (data["network"], data["training"], data["synthetic"], data["slurm"], data["case_rule"]) == \
        (None, None, None, None, None)
    assert list(data)[:3] == ["name", "note", "sources"]
    assert "reference_split" not in data and plan.to_dict(include_split=True)["reference_split"] is None
    json.dumps(plan.to_dict())


def test_training_section_defaults_and_settings():
    assert TrainingSection().test_time_augmentation is True
    t = TrainingSection.from_dict({"num_epochs": 3, "student_initial_lr": 0.001, "test_time_augmentation": False,
                                   "initial_lr": None})
    assert t.to_dict() == {"num_epochs": 3, "student_initial_lr": 0.001, "test_time_augmentation": False}
    assert t.settings() == {"num_epochs": 3}  # what a trainer run config gets


def test_synthetic_spec_round_trip_and_generator_options():
    plan = load_plan(find_plan("synthetic", "transfer"))
    spec = plan.synthetic["Dataset983_SyntheticB"]
    assert (spec.n_cases, spec.domain, spec.shape) == (16, "B", (64, 64, 15))
    assert spec.generator_options() == {"domain": "B", "shape": (64, 64, 15), "spacing": (2.0, 2.0, 5.0),
                                        "seed": 0}
    assert SyntheticSpec.from_dict(spec.to_dict()) == spec


def test_synthetic_spec_options_are_the_generators():
    from atso_nnunet.data.synthetic import SyntheticConfig

    assert set(GENERATOR_OPTIONS) == {f.name for f in dataclasses.fields(SyntheticConfig)}
    assert set(SyntheticSpec.keys()) == set(GENERATOR_OPTIONS) | {"n_cases", "case_prefix"}
    options = SyntheticSpec(n_cases=2, domain="B", shape=(32, 32, 8)).generator_options()
    assert SyntheticConfig(**options).shape == (32, 32, 8)


def test_network_section_fields_are_the_network_overrides():
    from atso_nnunet.nnunet.planning import NetworkOverride

    assert [f.name for f in dataclasses.fields(NetworkSection)] == [f.name for f in dataclasses.fields(NetworkOverride)]
    section = NetworkSection(batch_size=2, patch_size=(32, 32))
    assert NetworkOverride(**dataclasses.asdict(section)).patch_size == (32, 32)


def test_case_rule_round_trip():
    rule = CaseRule.from_dict({"source": "Dataset802_MSDPancreas", "folds": 4, "test_folds": [0]})
    assert rule == CaseRule("Dataset802_MSDPancreas", 4, (0,))
    assert rule.to_dict() == {"source": "Dataset802_MSDPancreas", "folds": 4, "test_folds": [0]}


def test_pseudo_label_volume_needs_the_mean_fusion_and_is_written_only_when_set():
    plan = plan_from_dict(plan_data())
    assert plan.pseudo_label_volume == "predicted" and "pseudo_label_volume" not in plan.to_dict()
    matched = plan_from_dict(plan_data(fusion="mean", pseudo_label_volume="labeled_mean"))
    assert matched.to_dict()["pseudo_label_volume"] == "labeled_mean"
    assert plan_from_dict(matched.to_dict()) == matched
    with pytest.raises(InputError, match="pseudo_label_volume: 'labeled_mean' .* needs \"fusion\": \"mean\" "
                                         "\\(the plan has 'vote'\\)"):
        plan_from_dict(plan_data(fusion="vote", pseudo_label_volume="labeled_mean"))
    with pytest.raises(InputError, match="pseudo_label_volume: unknown value 'larger'; choose from predicted, "
                                         "labeled_mean"):
        plan_from_dict(plan_data(pseudo_label_volume="larger"))

"""atso_nnunet.plan.training: the one list of training settings, and what is derived from it."""
from __future__ import annotations

from dataclasses import fields

import pytest

from atso_nnunet.plan import TRAINING_KEYS, TrainingSection, TrainingSettings
from atso_nnunet.plan.training import field_problems, parse_bool, training_fields
from atso_nnunet.nnunet.trainers.config import ENV_VARS, TrainerRunConfig


def test_the_settings_are_declared_once_and_shared():
    names = [f.name for f in training_fields()]
    assert TRAINING_KEYS == tuple(names)
    # the plan's section and the trainer's run config both start with exactly these fields
    assert [f.name for f in fields(TrainingSection)][:len(names)] == names
    assert [f.name for f in fields(TrainerRunConfig)][:len(names)] == names
    assert set(TrainingSection.keys()) - set(names) == {"roles", "student_initial_lr", "test_time_augmentation"}


def test_env_vars_are_derived_from_the_declarations():
    for f in fields(TrainerRunConfig):
        assert ENV_VARS[f.metadata["env"]][0] == f.name
    assert ENV_VARS["ATSO_ITERATIONS_PER_EPOCH"][0] == "num_iterations_per_epoch"
    assert len(ENV_VARS) == len(fields(TrainerRunConfig))


def test_trainer_attributes_of_the_settings():
    attrs = {f.name: f.metadata["trainer_attribute"] for f in training_fields()}
    assert attrs["oversample_foreground"] == "oversample_foreground_percent"
    assert attrs["num_epochs"] == "num_epochs"
    assert attrs["final_validation"] is None and attrs["labeled_fraction"] is None


def test_field_problems_name_each_field():
    values = {"num_epochs": "3", "labeled_fraction": 2, "initial_lr": None}
    assert field_problems(values, training_fields(), lambda n: f"x.{n}") == [
        'x.num_epochs: must be a positive integer, got "3"', "x.labeled_fraction: must be a number in [0, 1], got 2"]


def test_parse_bool():
    assert parse_bool(" Yes") is True and parse_bool("0") is False
    try:
        parse_bool("maybe")
    except ValueError as e:
        assert "maybe" in str(e)
    else:
        raise AssertionError("no error")


def test_settings_keeps_only_set_values():
    assert TrainingSettings(num_epochs=2, final_validation=False).settings() == {"num_epochs": 2,
                                                                                 "final_validation": False}


def test_training_roles_override_the_base_settings_and_self_fine_tunes_by_default():
    from atso_nnunet.plan import TrainingSection

    t = TrainingSection.from_dict({"num_epochs": 100, "initial_lr": 0.03,
                                   "roles": {"final": {"num_epochs": 200}, "oracle": {"seed": 4}}})
    assert t.for_role("M0") == t.for_role("student") == {"num_epochs": 100, "initial_lr": 0.03}
    assert t.for_role("final") == {"num_epochs": 200, "initial_lr": 0.03}
    assert t.for_role("oracle")["seed"] == 4
    # self-learning continues from its teacher: a tenth of the learning rate, half the epochs
    assert t.for_role("self") == {"num_epochs": 50, "initial_lr": pytest.approx(0.003)}
    given = TrainingSection.from_dict({"roles": {"self": {"initial_lr": 0.001, "num_epochs": 7}}})
    assert given.for_role("self") == {"initial_lr": 0.001, "num_epochs": 7}
    # nnU-Net's defaults are the base when nothing is set
    assert TrainingSection().for_role("self") == {"initial_lr": pytest.approx(1e-3), "num_epochs": 500}


@pytest.mark.parametrize("roles, expected", [
    ({"slef": {}}, "training.roles.slef: unknown role (did you mean 'self'?)"),
    ({"self": {"num_epoch": 3}}, "training.roles.self.num_epoch: unknown setting (did you mean 'num_epochs'?)"),
    ({"final": {"initial_lr": -1}}, "training.roles.final.initial_lr: must be a number > 0, got -1"),
    ({"final": 3}, "training.roles.final: must be an object"),
])
def test_training_role_mistakes_name_their_path(roles, expected):
    from atso_nnunet.plan import TrainingSection

    assert any(expected in p for p in TrainingSection.problems({"roles": roles}))

"""atso_nnunet.plan.training: the one list of training settings, and what is derived from it."""
from __future__ import annotations

from dataclasses import fields

from atso_nnunet.plan import TRAINING_KEYS, TrainingSection, TrainingSettings
from atso_nnunet.plan.training import field_problems, parse_bool, training_fields
from atso_nnunet.trainers.config import ENV_VARS, TrainerRunConfig


def test_the_settings_are_declared_once_and_shared():
    names = [f.name for f in training_fields()]
    assert TRAINING_KEYS == tuple(names)
    # the plan's section and the trainer's run config both start with exactly these fields
    assert [f.name for f in fields(TrainingSection)][:len(names)] == names
    assert [f.name for f in fields(TrainerRunConfig)][:len(names)] == names
    assert set(TrainingSection.keys()) - set(names) == {"student_initial_lr", "test_time_augmentation"}


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

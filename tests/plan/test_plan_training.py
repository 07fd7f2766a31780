"""atso_nnunet.plan.training: the one list of training settings, and what is derived from it."""
from __future__ import annotations

from dataclasses import fields

import pytest

from atso_nnunet.plan import TRAINING_KEYS, TrainingSection, TrainingSettings
from atso_nnunet.plan.training import field_problems, parse_bool, training_fields
from atso_nnunet.nnunet.trainers.config import TrainerRunConfig


def test_the_settings_are_declared_once_and_shared():
    names = [f.name for f in training_fields()]
    assert TRAINING_KEYS == tuple(names)
    # the plan's section and the trainer's run config both start with exactly these fields
    assert [f.name for f in fields(TrainingSection)][:len(names)] == names
    assert [f.name for f in fields(TrainerRunConfig)][:len(names)] == names
    assert set(TrainingSection.keys()) - set(names) == {"roles", "student_initial_lr", "test_time_augmentation"}


# The variables as the README spells them ("Trainer settings"), written out here rather than derived
# from the declarations: variable -> (field, value as set in the environment, value read).
DOCUMENTED_VARIABLES = {
    "ATSO_NUM_EPOCHS": ("num_epochs", "3", 3),
    "ATSO_ITERATIONS_PER_EPOCH": ("num_iterations_per_epoch", "7", 7),
    "ATSO_VAL_ITERATIONS_PER_EPOCH": ("num_val_iterations_per_epoch", "2", 2),
    "ATSO_SAVE_EVERY": ("save_every", "5", 5),
    "ATSO_PLOT_EVERY": ("plot_every", "4", 4),
    "ATSO_BEST_CHECKPOINT_EVERY": ("best_checkpoint_every", "6", 6),
    "ATSO_FINAL_VALIDATION": ("final_validation", "no", False),
    "ATSO_INITIAL_LR": ("initial_lr", "0.05", 0.05),
    "ATSO_LABELED_FRACTION": ("labeled_fraction", "0.5", 0.5),
    "ATSO_OVERSAMPLE_FOREGROUND": ("oversample_foreground", "1", 1.0),
    "ATSO_SEED": ("seed", "11", 11),
    "ATSO_INIT_CHECKPOINT": ("init_checkpoint", "/m/checkpoint_final.pth", "/m/checkpoint_final.pth"),
    "ATSO_PSEUDOLABELS": ("pseudo_label_dir", "/p", "/p"),
    "ATSO_PSEUDOLABEL_CASES": ("pseudo_label_cases", "c1,c2", ["c1", "c2"]),
}


def test_each_documented_variable_sets_its_field():
    for var, (name, raw, value) in DOCUMENTED_VARIABLES.items():
        env = {var: raw, **({"ATSO_PSEUDOLABELS": "/p"} if var == "ATSO_PSEUDOLABEL_CASES" else {})}
        assert getattr(TrainerRunConfig.from_env(env), name) == value, var
    assert TrainerRunConfig.from_env({"ATSO_INIT_CHECKPOINT": "/m/c.pth"}).init == "checkpoint"


def test_every_field_goes_through_the_environment_and_back():
    config = TrainerRunConfig.from_env({var: raw for var, (_, raw, _) in DOCUMENTED_VARIABLES.items()})
    assert set(config.to_env()) == set(DOCUMENTED_VARIABLES) | {"ATSO_INIT"}
    assert TrainerRunConfig.from_env(config.to_env()) == config
    assert all(getattr(config, f.name) is not None for f in fields(TrainerRunConfig))


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

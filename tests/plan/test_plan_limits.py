"""Issue 29: every number of a plan has limits and must be finite; the message names the field and the limit."""
from __future__ import annotations

import json

import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.limits import limit_problem, limits_text
from atso_nnunet.plan import load_plan, plan_problems
from plan_fixtures import plan_data, write_plan_file

SYNTH = "Dataset980_SyntheticA"
BIG = 10 ** 12


@pytest.mark.parametrize("changes, expected", [
    ({"generations": BIG}, "generations: 1000000000000 is above the limit 100"),
    ({"subsets": BIG}, "subsets: 1000000000000 is above the limit 100"),
    ({"seed": 2 ** 40}, "seed: 1099511627776 is above the limit 4294967295"),
    ({"dataset_id": 1000}, "dataset_id: must be between 1 and 999, got 1000"),
    ({"training": {"num_epochs": BIG}}, "training.num_epochs: 1000000000000 is above the limit 100000"),
    ({"training": {"num_iterations_per_epoch": BIG}},
     "training.num_iterations_per_epoch: 1000000000000 is above the limit 100000"),
    ({"training": {"num_val_iterations_per_epoch": BIG}},
     "training.num_val_iterations_per_epoch: 1000000000000 is above the limit 100000"),
    ({"training": {"save_every": BIG}}, "training.save_every: 1000000000000 is above the limit 100000"),
    ({"training": {"initial_lr": 1e6}}, "training.initial_lr: 1000000.0 is above the limit 10.0"),
    ({"training": {"seed": 2 ** 40}}, "training.seed: 1099511627776 is above the limit 4294967295"),
    ({"training": {"roles": {"final": {"num_epochs": BIG}}}},
     "training.roles.final.num_epochs: 1000000000000 is above the limit 100000"),
    ({"training": {"student_initial_lr": 100.0}}, "training.student_initial_lr: 100.0 is above the limit 10.0"),
    ({"network": {"max_features": 10 ** 6}}, "network.max_features: 1000000 is above the limit 4096"),
    ({"network": {"n_stages": 50}}, "network.n_stages: 50 is above the limit 12"),
    ({"network": {"batch_size": 10 ** 6}}, "network.batch_size: 1000000 is above the limit 1024"),
    ({"network": {"patch_size": [10 ** 5, 64]}}, "network.patch_size: 100000 is above the limit 2048"),
    ({"configuration": "3d_fullres", "network": {"patch_size": [2048, 2048, 2048]}},
     "network.patch_size: [2048, 2048, 2048] is 8589934592 voxels, above the limit 33554432"),
    ({"synthetic": {SYNTH: {"n_cases": 10 ** 7}}}, "synthetic.Dataset980_SyntheticA.n_cases: 10000000 is above the limit 10000"),
    ({"synthetic": {SYNTH: {"n_cases": 3, "shape": [10 ** 5, 64, 64]}}},
     "synthetic.Dataset980_SyntheticA.shape: (100000, 64, 64) is above the limit"),
    ({"synthetic": {SYNTH: {"n_cases": 3, "seed": 2 ** 40}}}, "synthetic.Dataset980_SyntheticA.seed: must be an integer from 0"),
    ({"slurm": {"time_min": BIG}}, "slurm.time_min: 1000000000000 is above the limit 527040"),
    ({"slurm": {"retries": 1000}}, "slurm.retries: 1000 is above the limit 100"),
    ({"eval_label_map": {"2": 10 ** 6}}, "eval_label_map.2: must map a label value"),
    ({"eval_label_map": {"99999999": 1}}, "eval_label_map.99999999: must map a label value"),
])
def test_numbers_above_their_limit_are_refused_naming_field_and_limit(changes, expected):
    problems = "\n".join(plan_problems(plan_data(**changes)))
    assert expected in problems


def test_a_huge_generation_count_gets_one_message_not_the_methods_too():
    assert plan_problems(plan_data(generations=BIG)) == ["generations: 1000000000000 is above the limit 100"]


@pytest.mark.parametrize("text, expected", [
    ('{"initial_lr": Infinity}', "training.initial_lr: Infinity is not a finite number"),
    ('{"initial_lr": NaN}', "training.initial_lr: must be a number > 0, got NaN"),
    ('{"initial_lr": 1e400}', "training.initial_lr: Infinity is not a finite number"),
    ('{"labeled_fraction": NaN}', "training.labeled_fraction: must be a number in [0, 1], got NaN"),
])
def test_infinite_and_nan_numbers_in_a_plan_file_are_refused(tmp_path, text, expected):
    """Python's json reads Infinity, NaN and 1e400 (= inf): the plan loader must refuse them."""
    data = plan_data()
    raw = json.dumps(data).replace('"training": {"num_epochs": 1}', '"training": ' + text)
    path = tmp_path / "plan.json"
    path.write_text(raw)
    with pytest.raises(InputError) as info:
        load_plan(path)
    assert expected in str(info.value)


@pytest.mark.parametrize("slurm, expected", [
    ('{"mem_gb": NaN}', "slurm.mem_gb: NaN is not a finite number"),
    ('{"poll_interval_s": Infinity}', "slurm.poll_interval_s: Infinity is not a finite number"),
])
def test_slurm_section_numbers_must_be_finite(tmp_path, slurm, expected):
    raw = json.dumps(plan_data(slurm={})).replace('"slurm": {}', '"slurm": ' + slurm)
    path = tmp_path / "plan.json"
    path.write_text(raw)
    with pytest.raises(InputError) as info:
        load_plan(path)
    assert expected in str(info.value)


def test_values_at_the_limits_are_accepted():
    data = plan_data(generations=100, seed=2 ** 32 - 1, training={"num_epochs": 100000, "initial_lr": 10.0},
                     network={"batch_size": 1024, "max_features": 4096, "n_stages": 12, "patch_size": [2048, 2048]})
    assert plan_problems(data) == []


def test_the_trainer_reads_the_same_limits_from_its_environment():
    from atso_nnunet.nnunet.trainers.config import TrainerRunConfig

    with pytest.raises(InputError, match="num_epochs: 1000000000000 is above the limit 100000"):
        TrainerRunConfig(num_epochs=BIG)


def test_limit_messages_and_reference_text():
    assert limit_problem(5, 1, 10) is None
    assert limit_problem(0, 1, 10) == "0 is below the minimum 1"
    assert limit_problem(0.0, 0, 1, above_minimum=True) == "0.0 is not above the minimum 0"
    assert limit_problem(float("nan"), 0, 1) == "NaN is not a finite number"
    assert limits_text({"min": 1, "max": 10}) == "1 to 10"
    assert limits_text({"min": 0, "max": 10, "above_min": True}) == "> 0, at most 10"
    assert limits_text({}) == ""


def test_the_plan_reference_lists_the_limits():
    from atso_nnunet.plan.reference import plan_reference

    text = plan_reference()
    assert "| `num_epochs` | `Optional[int]` | unset | 1 to 100000 |" in text
    assert "| `generations` | `int` | required | 0 to 100 |" in text

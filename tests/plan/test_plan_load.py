"""atso_nnunet.plan.load: a plan is checked completely at load, each problem starting with its field's path."""
from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from atso_nnunet.errors import InputError
from atso_nnunet.plan import (ExperimentPlan, NetworkSection, TrainingSection, load_plan, plan_changes,
                              plan_from_dict, plan_problems, reference_subsets, resolved, with_overrides)
from plan_fixtures import plan_data, problems_of, write_plan_file

SYNTH = "Dataset980_SyntheticA"


def lines(data: dict) -> list:
    """The problems of ``data``, as plan_problems lists them."""
    return plan_problems(data)


# --- the whole plan --------------------------------------------------------------------------

def test_valid_plan_loads(tmp_path):
    plan = load_plan(write_plan_file(tmp_path / "p.json", plan_data()))
    assert isinstance(plan, ExperimentPlan)
    assert plan.labeled == ("s0", "s1", "s2")
    assert plan.views == ("axial", "coronal", "sagittal")
    assert plan.network == NetworkSection(batch_size=2)
    assert plan.training == TrainingSection(num_epochs=1)
    assert plan.synthetic == {} and plan.slurm is None and plan.case_rule is None
    assert plan.reference_split is None
    assert plan.final_model == "final"
    assert plan_from_dict(plan.to_dict()) == plan  # the JSON round trip gives the same plan


def test_optional_keys_take_defaults():
    data = {k: v for k, v in plan_data().items()
            if k in ("name", "sources", "dataset_id", "dataset_name", "labeled", "reference", "test",
                     "method", "generations")}
    plan = plan_from_dict(data)
    assert (plan.subsets, plan.configuration, plan.fold, plan.metric, plan.seed) == (2, "2d", "all", "mean", 0)
    assert plan.views == ("axial", "coronal", "sagittal")
    assert plan.training == TrainingSection() and plan.training.test_time_augmentation is True
    assert plan.network is None and plan.synthetic == {}


def test_planted_mistakes_in_every_section_are_all_reported_at_once(tmp_path):
    data = plan_data(method="atsoo", views=["axial", "frontal"], subsets=4, reference=["r0", "r1", "s1"],
                     fold=0, configuration="3d_lowres",
                     network={"max_feature": 8, "n_stages": 0},
                     training={"num_epochs": "3", "test_time_augmentation": "no"},
                     synthetic={SYNTH: {"domain": "A", "shpe": [64, 64, 24]}},
                     slurm={"partion": "gpu"},
                     case_rule={"source": "Dataset999_X", "folds": 1, "test_folds": [0]})
    data["labelled"] = ["x"]
    path = write_plan_file(tmp_path / "bad.json", data)
    with pytest.raises(InputError) as info:
        load_plan(path)
    msg = str(info.value)
    expected = [
        "labelled: unknown key (did you mean 'labeled'?)",
        "labeled/reference: 1 case(s) in both labeled and reference: s1",
        "reference: 3 reference case(s) cannot fill 4 subsets",
        "method: unknown method 'atsoo'",
        "views: unknown view(s) 'frontal'",
        "fold: 0 needs nnU-Net's 5-fold split",
        "configuration: '3d_lowres' cannot be made by the tri-view planner",
        "network.max_feature: unknown key (did you mean 'max_features'?)",
        "network.n_stages: must be a positive integer, got 0",
        'training.num_epochs: must be a positive integer, got "3"',
        'training.test_time_augmentation: must be true or false, got "no"',
        f"synthetic.{SYNTH}.n_cases: required",
        f"synthetic.{SYNTH}.shpe: unknown option (did you mean 'shape'?)",
        "slurm.partion: unknown key (did you mean 'partition'?)",
        "case_rule.source: 'Dataset999_X' is not one of sources",
        "case_rule.folds: must be an integer >= 2, got 1",
        "case_rule: reference and test must be empty",
    ]
    for part in expected:
        assert f"  - {part}" in msg, part
    assert str(path) in msg
    assert f"{len(expected)} problems" in msg


@pytest.mark.parametrize("changes, expected", [
    ({"labeled": []}, "labeled: the labeled set S is empty"),
    ({"test": ["e0", "r3"]}, "reference/test: 1 case(s) in both reference and test: r3"),
    ({"labeled": ["s0", "s0"]}, "labeled: case(s) listed more than once: s0"),
    ({"labeled": ["s0/x"]}, "labeled: malformed case id(s) 's0/x'"),
    ({"reference": ["r0"]}, "reference: 1 reference case(s) cannot fill 2 subsets"),
    ({"method": "supervised"}, "generations: method 'supervised' trains M0 only"),
    ({"generations": 0}, "generations: method 'atso' needs at least 1 generation"),
    ({"generations": -1}, "generations: must be >= 0"),
    ({"subsets": 1}, "subsets: method 'atso' needs at least 2"),
    ({"subsets": 0}, "subsets: must be >= 1"),
    ({"reference": [], "method": "stso"}, "reference: method 'stso' needs reference (unlabeled) cases"),
    ({"metric": "median"}, "metric: unknown metric 'median'"),
    ({"configuration": "2.5d"}, "configuration: unknown nnU-Net configuration '2.5d'"),
    ({"views": []}, "views: at least one view is needed"),
    ({"views": ["axial", "axial"]}, "views: repeated axial"),
    ({"dataset_id": "981"}, 'dataset_id: must be an integer, got "981"'),
    ({"dataset_id": 980}, "dataset_id: 980 is the id of source 'Dataset980_SyntheticA'"),
    ({"dataset_name": "a b"}, "dataset_name: 'a b' must be letters"),
    ({"generations": 2.0}, "generations: must be an integer, got 2.0"),
    ({"labeled": "s0"}, "labeled: must be a list of case ids"),
    ({"sources": ["relative/dir"]}, "sources: 'relative/dir' is a relative path"),
    ({"sources": []}, "sources: at least one source dataset is needed"),
    ({"fold": "first"}, 'fold: must be "all" or a fold number'),
    ({"eval_label_map": {"tumour": 1}}, 'eval_label_map.tumour: must map a label value'),
    ({"network": [2]}, "network: must be an object or null"),
    ({"reference_split": [["r0", "r1"], ["r2", "r3"]]}, "reference_split: reference case(s) in no subset: r4"),
    ({"reference_split": [["r0", "r1", "r2", "r3", "r4"]]}, "reference_split: has 1 subsets but subsets is 2"),
])
def test_each_mistake_names_its_field(changes, expected):
    assert expected in problems_of(plan_data(**changes))


def test_missing_required_keys_are_listed():
    data = plan_data()
    del data["labeled"], data["method"]
    msg = problems_of(data)
    assert "labeled: required key missing" in msg and "method: required key missing" in msg


def test_every_problem_starts_with_a_field_path():
    data = plan_data(network={"max_feature": 1}, training={"num_epoch": 1, "num_epochs": "3"}, fold=9, labelled=1,
                     synthetic={SYNTH: {"n_cases": 0, "domain": "C"}}, slurm={"mem_gb": 0, "partion": "x"},
                     eval_label_map={"x": 1}, reference=[], test=[],
                     case_rule={"source": SYNTH, "folds": 2, "test_folds": [0, 1], "fold": 1})
    fields = {"network", "training", "fold", "labelled", "synthetic", "slurm", "eval_label_map", "case_rule"}
    problems = lines(data)
    assert len(problems) >= 11
    for p in problems:
        assert p.split(":")[0].split(".")[0] in fields, p


def test_supervised_may_have_no_reference_set():
    plan = plan_from_dict(plan_data(method="supervised", generations=0, reference=[]))
    assert reference_subsets(plan) == []
    assert plan.final_model == "M0"


def test_load_plan_reports_missing_file_and_bad_json(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_plan(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_plan(bad)
    assert plan_problems([1]) == ["a plan must be a JSON object, got list"]


# --- sections ---------------------------------------------------------------------------------

@pytest.mark.parametrize("training, expected", [
    ({"num_epochs": "3"}, 'training.num_epochs: must be a positive integer, got "3"'),
    ({"num_epochs": 0}, "training.num_epochs: must be a positive integer, got 0"),
    ({"num_epoch": 3}, "training.num_epoch: unknown key (did you mean 'num_epochs'?)"),
    ({"num_val_iterations_per_epoch": -1}, "training.num_val_iterations_per_epoch: must be an integer >= 0"),
    ({"final_validation": 1}, "training.final_validation: must be true or false, got 1"),
    ({"initial_lr": 0}, "training.initial_lr: must be a number > 0"),
    ({"labeled_fraction": 1.5}, "training.labeled_fraction: must be a number in [0, 1]"),
    ({"oversample_foreground": True}, "training.oversample_foreground: must be a number in [0, 1]"),
    ({"student_initial_lr": -1}, "training.student_initial_lr: must be a number > 0"),
    ({"init": "checkpoint"}, "training.init: unknown key"),  # a per-run field, not a plan setting
])
def test_training_section_problems(training, expected):
    assert expected in problems_of(plan_data(training=training))


@pytest.mark.parametrize("network, changes, expected", [
    ({"max_feature": 8}, {}, "network.max_feature: unknown key (did you mean 'max_features'?)"),
    ({"batch_size": "2"}, {}, 'network.batch_size: must be a positive integer, got "2"'),
    ({"n_stages": 0}, {}, "network.n_stages: must be a positive integer, got 0"),
    ({"patch_size": [64, 64, 16]}, {}, "network.patch_size: configuration '2d' needs 2 entries, got [64, 64, 16]"),
    ({"patch_size": [64, 64]}, {"configuration": "3d_fullres"}, "network.patch_size: configuration '3d_fullres' "
                                                                "needs 3 entries"),
    ({"patch_size": [64, 0]}, {}, "network.patch_size: must be a list of positive integers"),
    ({"patch_size": 64}, {}, "network.patch_size: must be a list of positive integers, got 64"),
])
def test_network_section_problems(network, changes, expected):
    """Network keys and values are refused at load (before: a raw TypeError after materialising)."""
    assert expected in problems_of(plan_data(network=network, **changes))


def test_network_patch_size_fits_the_configuration():
    plan = plan_from_dict(plan_data(network={"patch_size": [32, 48], "n_stages": 3}))
    assert plan.network.patch_size == (32, 48)
    assert plan.to_dict()["network"] == {"n_stages": 3, "patch_size": [32, 48]}
    assert plan_from_dict(plan_data(network={})).network is None  # an empty override is none


@pytest.mark.parametrize("spec, expected", [
    ({"domain": "A"}, f"synthetic.{SYNTH}.n_cases: required"),
    ({"n_cases": 0}, f"synthetic.{SYNTH}.n_cases: must be a positive integer, got 0"),
    ({"n_cases": 4, "shpe": [64, 64, 24]}, f"synthetic.{SYNTH}.shpe: unknown option (did you mean 'shape'?)"),
    ({"n_cases": 4, "domain": "C"}, f"synthetic.{SYNTH}.domain: must be one of A, B"),
    ({"n_cases": 4, "shape": [8, 8, 2]}, f"synthetic.{SYNTH}.shape: (x, y, z) must be at least (16, 16, 4)"),
    ({"n_cases": 4, "spacing": [1, 1]}, f"synthetic.{SYNTH}.spacing: must have three values"),
    ({"n_cases": 4, "lesions": "yes"}, f"synthetic.{SYNTH}.lesions: must be true or false"),
    ({"n_cases": 4, "case_prefix": "a/b"}, f"synthetic.{SYNTH}.case_prefix: must be letters"),
    (3, f"synthetic.{SYNTH}: must be an object of generator options"),
])
def test_synthetic_spec_problems(spec, expected):
    assert expected in problems_of(plan_data(synthetic={SYNTH: spec}))


def test_synthetic_problems_of_several_options_are_all_listed():
    msg = problems_of(plan_data(synthetic={SYNTH: {"n_cases": 4, "domain": "B", "shape": [8, 8, 2],
                                                   "noise_sigma": -1, "hu_offset": 1000}}))
    for opt in ("shape", "noise_sigma", "hu_offset"):
        assert f"synthetic.{SYNTH}.{opt}: " in msg
    assert "3 problems" in msg


def test_synthetic_spec_must_name_a_source_of_the_plan():
    msg = problems_of(plan_data(synthetic={"Dataset983_SyntheticB": {"n_cases": 4}, "SynthC": {"n_cases": 4}}))
    assert "synthetic.Dataset983_SyntheticB: not one of sources ['Dataset980_SyntheticA']" in msg
    assert "synthetic.SynthC: a generated source is named Dataset<id>_<Name>" in msg


@pytest.mark.parametrize("slurm, expected", [
    ({"partion": "gpu"}, "slurm.partion: unknown key (did you mean 'partition'?)"),
    ({"time_min": 0}, "slurm.time_min: must be an integer >= 1, got 0"),
    ({"mem_gb": "lots"}, "slurm.mem_gb: must be a number > 0"),
])
def test_slurm_section_problems(slurm, expected):
    assert expected in problems_of(plan_data(slurm=slurm))


def test_case_rule_problems():
    msg = problems_of(plan_data(reference=[], test=[], case_rule={"source": SYNTH, "folds": 3,
                                                                  "test_folds": [0, 1, 2], "fold": 1}))
    assert "case_rule.fold: unknown key (did you mean 'folds'?)" in msg
    assert "case_rule.test_folds: must be a non-empty list of fold numbers in [0, folds), not all of them" in msg
    plan = plan_from_dict(plan_data(reference=[], test=[], case_rule={"source": SYNTH, "folds": 3,
                                                                      "test_folds": [0]}))
    assert plan.case_rule.test_folds == (0,)
    assert plan.to_dict()["case_rule"] == {"source": SYNTH, "folds": 3, "test_folds": [0]}


# --- what nnU-Net can train ---------------------------------------------------------------------

@pytest.mark.parametrize("fold, labeled, expected", [
    (7, ["s0", "s1", "s2", "s3", "s4"], "fold: 7 is not a fold of nnU-Net's 5-fold split (0-4); use \"all\""),
    (-1, ["s0", "s1", "s2", "s3", "s4"], "fold: -1 is not a fold of nnU-Net's 5-fold split"),
    (0, ["s0", "s1", "s2"], "fold: 0 needs nnU-Net's 5-fold split of the labeled cases, which needs at least 5 "
                            "labeled cases (the plan has 3); use \"all\""),
])
def test_fold_outside_what_nnunet_can_train_is_refused(fold, labeled, expected):
    assert expected in problems_of(plan_data(fold=fold, labeled=labeled))


def test_integer_fold_with_enough_labeled_cases_loads():
    plan = plan_from_dict(plan_data(fold=4, labeled=["s0", "s1", "s2", "s3", "s4"]))
    assert plan.fold == 4


@pytest.mark.parametrize("configuration, reason", [
    ("3d_lowres", "first stage of its 3d cascade"),
    ("3d_cascade_fullres", "needs 3d_lowres predictions"),
])
def test_configurations_the_planner_cannot_make_are_refused_with_the_reason(configuration, reason):
    msg = problems_of(plan_data(configuration=configuration))
    assert f"configuration: {configuration!r} cannot be made by the tri-view planner" in msg
    assert reason in msg and "use 2d or 3d_fullres" in msg


def test_planner_configurations_are_the_plans():
    """The schema's configurations are exactly those planning.plan_and_preprocess accepts."""
    from atso_nnunet.nnunet import planning
    from atso_nnunet.plan import CONFIGURATIONS

    assert planning.CONFIGURATIONS == CONFIGURATIONS
    plan_from_dict(plan_data(configuration="3d_fullres", network={"patch_size": [32, 32, 16]}))


# --- the old name of the training section -------------------------------------------------------

def test_schedule_is_read_as_training_with_a_deprecation_warning(caplog):
    new = plan_from_dict(plan_data())
    old_data = plan_data()
    old_data["schedule"] = old_data.pop("training")
    with caplog.at_level(logging.WARNING, logger="atso_nnunet.plan.load"):
        old = plan_from_dict(old_data, origin="plan old.json")
    assert old == new
    assert "old.json: the section 'schedule' is now called 'training'" in caplog.text
    assert "schedule" not in old.to_dict() and old.to_dict()["training"] == {"num_epochs": 1}


def test_schedule_and_training_together_are_an_error():
    data = plan_data(schedule={"num_epochs": 2})
    assert "schedule: old name of 'training'; both are given, keep only 'training'" in problems_of(data)


def test_schedule_values_are_checked_under_the_new_path():
    data = plan_data()
    data["schedule"] = {"num_epochs": "3"}
    del data["training"]
    assert 'training.num_epochs: must be a positive integer, got "3"' in problems_of(data)


def test_run_folder_plan_written_before_the_rename_loads_equal_and_is_the_same_plan(tmp_path):
    """A run folder's plan.json as the old code wrote it (every key, ``schedule``, null sections)."""
    plan = plan_from_dict(plan_data(training={"num_epochs": 1, "test_time_augmentation": True}))
    old_run_json = {**resolved(plan)}
    old_run_json["schedule"] = {"num_epochs": 1, "test_time_augmentation": True}
    del old_run_json["training"]
    old_run_json.update({"network": {"batch_size": 2}, "synthetic": None, "slurm": None, "case_rule": None})
    path = write_plan_file(tmp_path / "run" / "plan.json", old_run_json)
    split = tuple(tuple(s) for s in reference_subsets(plan))
    assert load_plan(path) == dataclasses.replace(plan, reference_split=split)
    assert plan_changes(json.loads(path.read_text()), resolved(plan)) == []
    assert plan_changes(json.loads(path.read_text()), resolved(with_overrides(plan, generations=3))) == \
        ["generations"]


# --- overrides ---------------------------------------------------------------------------------

def test_with_overrides_revalidates():
    plan = plan_from_dict(plan_data())
    p2 = with_overrides(plan, method="stso", generations=3, views=["axial"], configuration="2d")
    assert (p2.method, p2.generations, p2.views) == ("stso", 3, ("axial",))
    assert p2.training == plan.training and p2.network == plan.network
    assert plan.method == "atso"  # the original is unchanged
    with pytest.raises(InputError, match="views: unknown view"):
        with_overrides(plan, views=["frontal"])
    with pytest.raises(InputError, match="cannot fill 6 subsets"):
        with_overrides(plan, subsets=6)
    with pytest.raises(InputError, match="3d_lowres"):
        with_overrides(plan, configuration="3d_lowres")


def test_with_overrides_supervised_sets_generations_to_zero():
    plan = with_overrides(plan_from_dict(plan_data()), method="supervised")
    assert plan.generations == 0


def test_overriding_subsets_drops_an_explicit_split():
    plan = plan_from_dict(plan_data(reference_split=[["r0", "r1", "r2"], ["r3", "r4"]]))
    p3 = with_overrides(plan, subsets=3)
    assert p3.reference_split is None
    assert len(reference_subsets(p3)) == 3

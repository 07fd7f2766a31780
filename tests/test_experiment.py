"""Experiment plans: loading, validation (all problems at once), lookup, overrides, split, make_plan."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atso_nnunet.cli import make_plan
from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.experiment import (
    ExperimentPlan,
    dataset_problems,
    find_plan,
    load_plan,
    plan_from_dict,
    plans_root,
    reference_subsets,
    resolved,
    split_reference,
    validate_against_dataset,
    with_overrides,
)
from conftest import write_tiny_dataset


def plan_data(**changes) -> dict:
    data = {
        "name": "tiny 3 labeled",
        "note": "unit test",
        "sources": ["Dataset980_SyntheticA"],
        "dataset_id": 981,
        "dataset_name": "Tiny3",
        "convert_hint": "atso_nnunet_synth --dataset-id 980",
        "labeled": ["s0", "s1", "s2"],
        "reference": ["r0", "r1", "r2", "r3", "r4"],
        "test": ["e0", "e1"],
        "seed": 0,
        "subsets": 2,
        "generations": 2,
        "views": ["axial", "coronal", "sagittal"],
        "configuration": "2d",
        "fold": "all",
        "method": "atso",
        "metric": "mean",
        "eval_label_map": {},
        "network": {"batch_size": 2},
        "schedule": {"num_epochs": 1},
        "synthetic": None,
    }
    data.update(changes)
    return data


def write_plan_file(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def problems_of(data: dict) -> str:
    with pytest.raises(InputError) as info:
        plan_from_dict(data)
    return str(info.value)


# --- loading and validation ------------------------------------------------------------------

def test_valid_plan_loads(tmp_path):
    plan = load_plan(write_plan_file(tmp_path / "p.json", plan_data()))
    assert isinstance(plan, ExperimentPlan)
    assert plan.labeled == ("s0", "s1", "s2")
    assert plan.views == ("axial", "coronal", "sagittal")
    assert plan.network == {"batch_size": 2}
    assert plan.reference_split is None
    assert plan.final_model == "final"
    # the JSON round trip gives the same plan
    assert plan_from_dict(plan.to_dict()) == plan


def test_optional_keys_take_defaults():
    data = {k: v for k, v in plan_data().items()
            if k in ("name", "sources", "dataset_id", "dataset_name", "labeled", "reference", "test",
                     "method", "generations")}
    plan = plan_from_dict(data)
    assert (plan.subsets, plan.configuration, plan.fold, plan.metric, plan.seed) == (2, "2d", "all", "mean", 0)
    assert plan.views == ("axial", "coronal", "sagittal")


def test_planted_mistakes_are_all_reported_at_once(tmp_path):
    data = plan_data(method="atsoo", views=["axial", "frontal"], subsets=4,
                     reference=["r0", "r1", "s1"])
    data["labelled"] = ["x"]
    path = write_plan_file(tmp_path / "bad.json", data)
    with pytest.raises(InputError) as info:
        load_plan(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "unknown key 'labelled'" in msg and "did you mean 'labeled'" in msg
    assert "s1" in msg and "both labeled and reference" in msg
    assert "cannot fill 4 subsets" in msg
    assert "method: unknown method 'atsoo'" in msg
    assert "views: unknown view(s) 'frontal'" in msg
    assert "5 problems" in msg


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
    ({"metric": "median"}, "metric: unknown metric 'median'"),
    ({"configuration": "2.5d"}, "configuration: unknown nnU-Net configuration '2.5d'"),
    ({"views": []}, "views: at least one view is needed"),
    ({"views": ["axial", "axial"]}, "views: repeated axial"),
    ({"dataset_id": "981"}, "dataset_id: must be an integer"),
    ({"dataset_id": 980}, "dataset_id: 980 is the id of source 'Dataset980_SyntheticA'"),
    ({"generations": 2.0}, "generations: must be an integer"),
    ({"labeled": "s0"}, "labeled: must be a list of case ids"),
    ({"sources": ["relative/dir"]}, "sources: 'relative/dir' is a relative path"),
    ({"sources": []}, "sources: at least one source dataset is needed"),
    ({"fold": "first"}, 'fold: must be "all" or a fold number'),
    ({"eval_label_map": {"tumour": 1}}, "eval_label_map: entry 'tumour'"),
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


def test_supervised_may_have_no_reference_set():
    plan = plan_from_dict(plan_data(method="supervised", generations=0, reference=[]))
    assert reference_subsets(plan) == []
    assert plan.final_model == "M0"


def test_constructing_an_invalid_plan_directly_raises():
    with pytest.raises(InputError, match="method"):
        ExperimentPlan(name="x", sources=("Dataset1_A",), dataset_id=2, dataset_name="B", labeled=("a",),
                       reference=("b", "c"), test=(), method="nope", generations=1)


def test_load_plan_reports_missing_file_and_bad_json(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_plan(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_plan(bad)


# --- overrides ------------------------------------------------------------------------------

def test_with_overrides_revalidates():
    plan = plan_from_dict(plan_data())
    p2 = with_overrides(plan, method="stso", generations=3, views=["axial"], configuration="2d")
    assert (p2.method, p2.generations, p2.views) == ("stso", 3, ("axial",))
    assert plan.method == "atso"  # the original is unchanged
    with pytest.raises(InputError, match="views: unknown view"):
        with_overrides(plan, views=["frontal"])
    with pytest.raises(InputError, match="cannot fill 6 subsets"):
        with_overrides(plan, subsets=6)


def test_with_overrides_supervised_sets_generations_to_zero():
    plan = with_overrides(plan_from_dict(plan_data()), method="supervised")
    assert plan.generations == 0


def test_overriding_subsets_drops_an_explicit_split():
    plan = plan_from_dict(plan_data(reference_split=[["r0", "r1", "r2"], ["r3", "r4"]]))
    p3 = with_overrides(plan, subsets=3)
    assert p3.reference_split is None
    assert len(reference_subsets(p3)) == 3


# --- reference split ------------------------------------------------------------------------

def test_split_reference_deterministic_balanced_disjoint_covering():
    ref = [f"case_{i:02d}" for i in range(23)]
    for k in (2, 3, 5):
        parts = split_reference(ref, k, seed=7)
        assert parts == split_reference(list(reversed(ref)), k, seed=7)  # order of input irrelevant
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) > 0
        assert sorted(c for p in parts for c in p) == ref
        assert len({c for p in parts for c in p}) == len(ref)
        assert all(p == sorted(p) for p in parts)
    assert split_reference(ref, 2, seed=7) != split_reference(ref, 2, seed=8)


def test_split_reference_errors_name_the_field():
    with pytest.raises(InputError, match="cannot fill 3 subsets"):
        split_reference(["a", "b"], 3, seed=0)
    with pytest.raises(InputError, match="subsets"):
        split_reference(["a", "b"], 0, seed=0)
    with pytest.raises(InputError, match="more than once: a"):
        split_reference(["a", "a", "b"], 2, seed=0)


def test_resolved_records_the_split():
    plan = plan_from_dict(plan_data())
    res = resolved(plan)
    assert res["reference_split"] == split_reference(plan.reference, 2, 0)
    json.dumps(res)  # JSON-able
    # a resolved plan loads again and keeps exactly that split
    again = plan_from_dict(res)
    assert reference_subsets(again) == res["reference_split"]


# --- plan lookup ----------------------------------------------------------------------------

def test_find_plan_from_another_working_directory(tmp_path, monkeypatch):
    root = tmp_path / "plans"
    write_plan_file(root / "mydata" / "10pct.json", plan_data())
    write_plan_file(root / "mydata" / "20pct.json", plan_data())
    monkeypatch.chdir(tmp_path / "plans" / "mydata")
    assert find_plan("mydata", "10pct", root=root) == root / "mydata" / "10pct.json"
    assert find_plan("mydata", "20pct.json", root=root).name == "20pct.json"
    with pytest.raises(InputError, match="available splits of mydata: 10pct, 20pct"):
        find_plan("mydata", "30pct", root=root)
    with pytest.raises(InputError, match="mydata: 10pct, 20pct"):
        find_plan("nothere", "10pct", root=root)


def test_packaged_plans_folder_is_importable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = plans_root()
    assert root.is_dir() and (root / "__init__.py").is_file()


def test_find_packaged_synthetic_plan(tmp_path, monkeypatch):
    if not (plans_root() / "synthetic" / "10pct.json").is_file():
        pytest.skip("plans/synthetic/10pct.json is not written yet")
    monkeypatch.chdir(tmp_path)
    path = find_plan("synthetic", "10pct")
    assert path.is_file()
    load_plan(path)


# --- checks against sources ------------------------------------------------------------------

def test_validate_against_dataset_lists_missing_cases():
    plan = plan_from_dict(plan_data())
    have = {"s0", "s1", "s2", "r0", "r1", "r2", "r3", "r4", "e0", "e1"}
    validate_against_dataset(plan, have)
    validate_against_dataset(plan, {c: object() for c in have})  # a mapping keyed by case id
    problems = dataset_problems(plan, have - {"s1", "r4", "e0"}, labeled_available={"s0"})
    text = "\n".join(problems)
    assert "labeled: 1 case(s) have no image" in text and "s1" in text
    assert "reference: 1 case(s) have no image" in text and "r4" in text
    assert "test: 1 case(s) have no image" in text and "e0" in text
    assert "labeled: 1 labeled case(s) have no ground-truth label" in text and "s2" in text
    with pytest.raises(InputError, match="4 problems"):
        validate_against_dataset(plan, have - {"s1", "r4", "e0"}, labeled_available={"s0"})


# --- atso_nnunet_make_plan -------------------------------------------------------------------

@pytest.fixture
def team_dataset(tmp_path):
    """A tiny raw dataset (3 labeled, 2 in imagesTs) and an unlabeled folder (its 4 imagesRef)."""
    ds = write_tiny_dataset(tmp_path / "raw", dataset_id=990, n_labeled=3, n_reference=4, n_test=2)
    unlabeled = tmp_path / "unlabeled"
    (ds / layout.IMAGES_REF).rename(unlabeled)
    return ds, unlabeled


def test_make_plan_writes_a_valid_plan(tmp_path, team_dataset, monkeypatch):
    ds, unlabeled = team_dataset
    test_list = tmp_path / "test.txt"
    test_list.write_text("# held-out cases\ntiny_003\n\ntiny_007_0000.nii.gz\n")
    out = tmp_path / "plans" / "mine.json"
    monkeypatch.chdir(tmp_path)
    rc = make_plan.main(["--raw-dataset", "raw/Dataset990_Tiny", "--unlabeled", "unlabeled",
                         "--test-list", str(test_list), "--out", str(out), "--dataset-id", "991",
                         "--generations", "3"])
    assert rc == 0
    plan = load_plan(out)
    assert plan.labeled == ("tiny_000", "tiny_001", "tiny_002")
    assert plan.reference == ("tiny_004", "tiny_005", "tiny_006")  # tiny_003 went to the test set
    assert plan.test == ("tiny_003", "tiny_007")
    assert plan.sources == (str(ds.resolve()), str(unlabeled.resolve()))
    assert all(Path(s).is_absolute() for s in plan.sources)
    assert "taken out of the reference set: tiny_003" in plan.note
    assert (plan.dataset_id, plan.dataset_name, plan.generations, plan.method) == (991, "TinyATSO", 3, "atso")
    # the recorded sources provide every case: S in imagesTr, R and part of E in the unlabeled
    # folder, the rest of E in imagesTs
    have = set(layout.case_ids_in(ds / layout.IMAGES_TR)) | set(layout.case_ids_in(unlabeled)) \
        | set(layout.case_ids_in(ds / layout.IMAGES_TS))
    validate_against_dataset(plan, have, labeled_available=layout.label_ids_in(ds / layout.LABELS_TR))


def test_make_plan_without_test_list(tmp_path, team_dataset):
    ds, unlabeled = team_dataset
    out = tmp_path / "p.json"
    assert make_plan.main(["--raw-dataset", str(ds), "--unlabeled", str(unlabeled), "--out", str(out),
                           "--dataset-id", "991", "--method", "supervised", "--name", "Mine"]) == 0
    plan = load_plan(out)
    assert (plan.test, plan.generations, plan.dataset_name) == ((), 0, "Mine")
    assert len(plan.reference) == 4


def test_make_plan_errors_exit_with_input_error_code(tmp_path, team_dataset, caplog):
    ds, unlabeled = team_dataset
    test_list = tmp_path / "test.txt"
    test_list.write_text("nosuchcase\n")
    out = tmp_path / "p.json"
    base = ["--raw-dataset", str(ds), "--unlabeled", str(unlabeled), "--out", str(out)]
    assert make_plan.main(base + ["--dataset-id", "991", "--test-list", str(test_list)]) == 2
    assert "nosuchcase" in caplog.text
    assert make_plan.main(base + ["--dataset-id", "990"]) == 2  # the raw dataset's own id
    assert "990 is the id of source" in caplog.text
    assert not out.exists()
    assert make_plan.main(base + ["--dataset-id", "991"]) == 0
    assert make_plan.main(base + ["--dataset-id", "991"]) == 2  # exists, no --force
    assert make_plan.main(base + ["--dataset-id", "991", "--force"]) == 0


def test_make_plan_requires_labels_of_labeled_cases(tmp_path, team_dataset, caplog):
    ds, unlabeled = team_dataset
    (ds / layout.LABELS_TR / "tiny_001.nii.gz").unlink()
    rc = make_plan.main(["--raw-dataset", str(ds), "--unlabeled", str(unlabeled), "--out",
                         str(tmp_path / "p.json"), "--dataset-id", "991"])
    assert rc == 2
    assert "without label file: tiny_001" in caplog.text

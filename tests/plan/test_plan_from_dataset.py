"""atso_nnunet.plan.from_dataset and atso_nnunet_make_plan: a plan for a team's own nnU-Net dataset."""
from __future__ import annotations

from pathlib import Path

import pytest

from atso_nnunet.cli import make_plan
from atso_nnunet.data import layout
from atso_nnunet.plan import TrainingSection, load_plan, plan_from_dataset, read_case_list, validate_against_dataset
from helpers import write_tiny_dataset


@pytest.fixture
def team_dataset(tmp_path):
    """A tiny raw dataset (3 labeled, 2 in imagesTs) and an unlabeled folder (its 4 imagesRef)."""
    ds = write_tiny_dataset(tmp_path / "raw", dataset_id=990, n_labeled=3, n_reference=4, n_test=2)
    unlabeled = tmp_path / "unlabeled"
    (ds / layout.IMAGES_REF).rename(unlabeled)
    return ds, unlabeled


def test_read_case_list_accepts_ids_and_file_names(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("# comment\na\n\nb_0000.nii.gz  # image\nsub/c.nii.gz\n")
    assert read_case_list(f) == ["a", "b", "c"]


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
    assert '"training": null' in out.read_text() and "schedule" not in out.read_text()
    have = set(layout.case_ids_in(ds / layout.IMAGES_TR)) | set(layout.case_ids_in(unlabeled)) \
        | set(layout.case_ids_in(ds / layout.IMAGES_TS))
    validate_against_dataset(plan, have, labeled_available=layout.label_ids_in(ds / layout.LABELS_TR))


def test_plan_from_dataset_takes_training_and_network_sections(team_dataset):
    ds, unlabeled = team_dataset
    plan = plan_from_dataset(ds, unlabeled, dataset_id=991, training={"num_epochs": 5},
                             network={"batch_size": 2})
    assert plan.training == TrainingSection(num_epochs=5) and plan.network.batch_size == 2


def test_make_plan_without_test_list(tmp_path, team_dataset):
    ds, unlabeled = team_dataset
    out = tmp_path / "p.json"
    assert make_plan.main(["--raw-dataset", str(ds), "--unlabeled", str(unlabeled), "--out", str(out),
                           "--dataset-id", "991", "--method", "supervised", "--dataset-name", "Mine"]) == 0
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
    assert make_plan.main(base + ["--dataset-id", "991"]) == 2  # exists, no --overwrite
    assert make_plan.main(base + ["--dataset-id", "991", "--overwrite"]) == 0


def test_make_plan_requires_labels_of_labeled_cases(tmp_path, team_dataset, caplog):
    ds, unlabeled = team_dataset
    (ds / layout.LABELS_TR / "tiny_001.nii.gz").unlink()
    rc = make_plan.main(["--raw-dataset", str(ds), "--unlabeled", str(unlabeled), "--out",
                         str(tmp_path / "p.json"), "--dataset-id", "991"])
    assert rc == 2
    assert "without label file: tiny_001" in caplog.text


def test_make_plan_holds_out_labeled_test_cases(tmp_path, team_dataset, caplog):
    """Test ids of imagesTr are held out of S (their labels only score E), not refused."""
    ds, unlabeled = team_dataset
    test_list = tmp_path / "test.txt"
    test_list.write_text("tiny_001\ntiny_007\n")
    out = tmp_path / "p.json"
    base = ["--raw-dataset", str(ds), "--unlabeled", str(unlabeled), "--dataset-id", "991"]
    assert make_plan.main(base + ["--test-list", str(test_list), "--out", str(out)]) == 0
    plan = load_plan(out)
    assert plan.labeled == ("tiny_000", "tiny_002") and plan.test == ("tiny_001", "tiny_007")
    assert "1 labeled case(s) held out as the test set E (listed in the test list): tiny_001" in plan.note
    assert "used only to score E" in plan.note
    # the experiment dataset puts the held-out case in imagesTs with its label in labelsTs
    from atso_nnunet.data.materialize import materialize

    target = materialize(tmp_path / "raw" / "Dataset991_Exp", [Path(s) for s in plan.sources], plan.labeled,
                         plan.reference, plan.test)
    assert layout.case_ids_in(target / layout.IMAGES_TR) == ["tiny_000", "tiny_002"]
    assert layout.label_ids_in(target / layout.LABELS_TS) == ["tiny_001", "tiny_007"]

    # every labeled case in the test list: nothing left to train on
    test_list.write_text("tiny_000\ntiny_001\ntiny_002\n")
    assert make_plan.main(base + ["--test-list", str(test_list), "--out", str(tmp_path / "q.json")]) == 2
    assert "keep at least one" in caplog.text and not (tmp_path / "q.json").exists()


def test_make_plan_test_fraction_is_seeded(tmp_path, team_dataset, caplog):
    ds, unlabeled = team_dataset
    base = ["--raw-dataset", str(ds), "--unlabeled", str(unlabeled), "--dataset-id", "991"]
    plans = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "5")):
        assert make_plan.main(base + ["--test-fraction", "0.34", "--seed", seed, "--out", str(tmp_path / name)]) == 0
        plans.append(load_plan(tmp_path / name))
    a, b, _ = plans
    assert len(a.test) == 1 and len(a.labeled) == 2 and a.test == b.test
    assert set(a.test) <= {"tiny_000", "tiny_001", "tiny_002"} and not set(a.test) & set(a.labeled)
    assert "drawn as fraction 0.34 of the labeled cases with seed 0" in a.note
    assert make_plan.main(base + ["--test-fraction", "1.5", "--out", str(tmp_path / "d")]) == 2
    assert "between 0 and 1" in caplog.text
    with pytest.raises(SystemExit):   # argparse: not both
        make_plan.main(base + ["--test-fraction", "0.3", "--test-list", "x.txt", "--out", str(tmp_path / "e")])

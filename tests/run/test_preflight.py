"""--dry-run and every run check the plan against its sources, the fold and --gpus before writing anything."""
from __future__ import annotations

import json
import logging

import pytest

from atso_nnunet.cli.run import main
from atso_nnunet.errors import InputError
from atso_nnunet.run.preflight import file_name_hint, parse_gpu_ids

from helpers import write_tiny_dataset
from helpers import tiny_plan


def _nn_with_source(tmp_path):
    nn = tmp_path / "nn"
    write_tiny_dataset(nn / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=9, n_reference=0, n_test=0)
    return nn


def _dry(tmp_path, plan, *extra):
    run = tmp_path / "run"
    return main(["--plan", str(plan), "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(run), "--dry-run",
                 *extra]), run


def test_unknown_case_ids_and_file_names_are_named(tmp_path, caplog):
    _nn_with_source(tmp_path)
    plan = tiny_plan(tmp_path, reference=["tiny_003", "tiny_004", "tiny_005_0000.nii.gz", "tiny_099"],
                      test=["tiny_007", "tiny_008_0000"])
    rc, run = _dry(tmp_path, plan)
    assert rc == 2 and not run.exists()
    text = caplog.text
    assert "tiny_099" in text and "no image in the sources" in text
    assert "drop the `_0000.nii.gz` (the case id is 'tiny_005')" in text
    assert "'tiny_008_0000' is not in the sources but 'tiny_008' is: drop the `_0000`" in text


def test_labeled_case_without_label_is_named(tmp_path, caplog):
    nn = _nn_with_source(tmp_path)
    (nn / "nnUNet_raw" / "Dataset990_Tiny" / "labelsTr" / "tiny_001.nii.gz").unlink()
    rc, run = _dry(tmp_path, tiny_plan(tmp_path))
    assert rc == 2 and "tiny_001" in caplog.text and "no ground-truth label" in caplog.text
    assert not run.exists()


def test_missing_source_is_an_error_in_a_dry_run(tmp_path, caplog):
    rc, run = _dry(tmp_path, tiny_plan(tmp_path))
    assert rc == 2 and "source Dataset990_Tiny: not found" in caplog.text
    assert not run.exists()


def test_synthetic_source_to_be_generated_is_named_as_such(tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO)
    rc = main(["-d", "synthetic", "-f", "10pct", "--nnunet-dir", str(tmp_path / "nn"), "--run-dir",
               str(tmp_path / "run"), "--dry-run"])
    assert rc == 0
    assert "Dataset980_SyntheticA does not exist yet: it is synthetic and is generated on first use" in caplog.text
    assert "nnUNetv2_train" in capsys.readouterr().out


@pytest.mark.parametrize("fold, words", [(7, "fold: 7 is not a fold"), (0, "at least 5 labeled cases")])
def test_fold_is_checked(tmp_path, caplog, fold, words):
    _nn_with_source(tmp_path)
    rc, run = _dry(tmp_path, tiny_plan(tmp_path, fold=fold))
    assert rc == 2 and words in caplog.text and not run.exists()


def test_fold_number_with_enough_labeled_cases_passes(tmp_path):
    _nn_with_source(tmp_path)
    plan = tiny_plan(tmp_path, labeled=[f"tiny_00{i}" for i in range(5)], reference=["tiny_005", "tiny_006"],
                      fold=2)
    assert _dry(tmp_path, plan)[0] == 0


@pytest.mark.parametrize("gpus", ["abc", "-1", "0,0", "0,,1"])
def test_bad_gpus_are_refused_before_anything(tmp_path, caplog, gpus):
    _nn_with_source(tmp_path)
    rc, run = _dry(tmp_path, tiny_plan(tmp_path), "--gpus", gpus)
    assert rc == 2 and "--gpus" in caplog.text and not run.exists()
    rc = main(["--plan", str(tiny_plan(tmp_path)), "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(run),
               "--gpus", gpus])
    assert rc == 2 and not run.exists()


def test_parse_gpu_ids_and_hints():
    assert parse_gpu_ids("0, 1,3") == ["0", "1", "3"] and parse_gpu_ids(None) is None
    assert parse_gpu_ids("GPU-8e1a7c2f-0000-1111") == ["GPU-8e1a7c2f-0000-1111"]
    with pytest.raises(InputError, match="not a GPU id"):
        parse_gpu_ids("cuda:0")
    assert file_name_hint("case_7.nii.gz") == "drop the `.nii.gz` (the case id is 'case_7')"
    assert file_name_hint("synA_0000") is None      # a case id may end in digits


def test_plan_refused_by_the_data_check_leaves_nothing_behind(tmp_path, caplog):
    """Refused at prepare (a truncated image): no plan recorded, no experiment dataset; a corrected plan runs."""
    nn = _nn_with_source(tmp_path)
    bad = nn / "nnUNet_raw" / "Dataset990_Tiny" / "imagesTr" / "tiny_006_0000.nii.gz"
    bad.write_bytes(bad.read_bytes()[:2000])
    run = tmp_path / "run"
    args = ["--nnunet-dir", str(nn), "--run-dir", str(run), "--step", "prepare"]
    assert main(["--plan", str(tiny_plan(tmp_path)), *args]) == 2
    assert f"-> {bad})" in caplog.text and "truncated" in caplog.text   # the source file, not only the link
    assert not (run / "plan.json").exists() and not (run / "state").exists()
    assert not (nn / "nnUNet_raw" / "Dataset991_TinyExp").exists()
    # the corrected plan (the broken case left out) is not refused as "a different plan"
    corrected = tiny_plan(tmp_path, reference=["tiny_003", "tiny_004", "tiny_005"])
    caplog.clear()
    rc = main(["--plan", str(corrected), "--nnunet-dir", str(nn), "--run-dir", str(run), "--dry-run"])
    assert rc == 0 and "different plan" not in caplog.text
    assert json.loads((run / "plan.json").read_text())["reference"] == ["tiny_003", "tiny_004", "tiny_005"]


def test_a_dataset_id_another_dataset_uses_is_refused_before_anything(tmp_path, caplog):
    """nnU-Net finds datasets by id: a second Dataset991_* would break this run's commands and the other's."""
    nn = _nn_with_source(tmp_path)
    other = nn / "nnUNet_preprocessed" / "Dataset991_OtherExperiment"
    other.mkdir(parents=True)
    rc, run = _dry(tmp_path, tiny_plan(tmp_path))
    assert rc == 2 and not run.exists()
    assert ("dataset_id 991: nnUNet_preprocessed" in caplog.text and "Dataset991_OtherExperiment" in caplog.text
            and "give the plan another dataset_id" in caplog.text)
    assert other.is_dir() and not (nn / "nnUNet_raw" / "Dataset991_TinyExp").exists()
    other.rename(other.with_name("Dataset991_TinyExp"))  # its own name: this run's dataset, resumed
    caplog.clear()
    assert _dry(tmp_path, tiny_plan(tmp_path))[0] == 0


def test_source_whose_file_ending_matches_no_file_is_named(tmp_path, caplog):
    """Issue 29: the source's dataset.json file_ending is named, not the case ids it hides."""
    nn = _nn_with_source(tmp_path)
    dj_path = nn / "nnUNet_raw" / "Dataset990_Tiny" / "dataset.json"
    dj = json.loads(dj_path.read_text())
    dj["file_ending"] = ".mha"
    dj_path.write_text(json.dumps(dj))
    for extra in ((), ("--dry-run",)):
        caplog.clear()
        run = tmp_path / "run"
        rc = main(["--plan", str(tiny_plan(tmp_path)), "--nnunet-dir", str(nn), "--run-dir", str(run), *extra])
        assert rc == 2 and not run.exists()
        assert "source Dataset990_Tiny: dataset.json file_ending is '.mha'" in caplog.text
        assert "numTraining" not in caplog.text and "not in the sources" not in caplog.text


def test_a_plan_with_a_validation_set_prepares_without_putting_it_in_the_experiment(tmp_path, caplog, monkeypatch):
    """Issue 25: V is checked against the sources like every set, and left out of the experiment dataset
    (no run reads it); a V case the sources lack is named before anything is built."""
    from atso_nnunet.execution import group_child

    # nnU-Net's planning and preprocessing (run in a child process group): not what is tested here
    monkeypatch.setattr(group_child, "run_in_process_group", lambda *a, **k: None)
    nn = _nn_with_source(tmp_path)
    run = tmp_path / "run"
    plan = tiny_plan(tmp_path, reference=["tiny_003", "tiny_004", "tiny_005"], validation=["tiny_006"])
    assert main(["--plan", str(plan), "--nnunet-dir", str(nn), "--run-dir", str(run), "--step", "prepare"]) == 0
    exp = nn / "nnUNet_raw" / "Dataset991_TinyExp"
    assert exp.is_dir() and not [p for p in exp.rglob("tiny_006*")]
    caplog.clear()
    lost = tiny_plan(tmp_path, reference=["tiny_003", "tiny_004", "tiny_005"], validation=["tiny_099"],
                     dataset_id=992)
    assert main(["--plan", str(lost), "--nnunet-dir", str(nn), "--run-dir", str(tmp_path / "run2"),
                 "--step", "prepare"]) == 2
    assert "tiny_099" in caplog.text and not (nn / "nnUNet_raw" / "Dataset992_TinyExp").exists()


def _synthetic_plan(tmp_path, **spec):
    """A plan over a tiny generated source Dataset970_SynGen (6 cases, 24 x 24 x 8)."""
    options = {"n_cases": 6, "domain": "A", "shape": [24, 24, 8], "seed": 0, **spec}
    return tiny_plan(tmp_path, sources=["Dataset970_SynGen"], synthetic={"Dataset970_SynGen": options},
                     labeled=["synA_0000", "synA_0001"], reference=["synA_0002", "synA_0003"],
                     test=["synA_0004", "synA_0005"])


def _generate(tmp_path, seed=0, n_cases=6):
    from atso_nnunet.data.synthetic import SyntheticConfig, write_source_dataset

    write_source_dataset(tmp_path / "nn" / "nnUNet_raw", 970, "SynGen", n_cases,
                         SyntheticConfig(domain="A", shape=(24, 24, 8), seed=seed))


def test_generated_source_with_the_plans_options_is_reused(tmp_path, caplog):
    _generate(tmp_path, n_cases=8)  # more cases than the plan asks for hold the asked ones
    rc, run = _dry(tmp_path, _synthetic_plan(tmp_path))
    assert rc == 0, caplog.text
    assert "other options" not in caplog.text


@pytest.mark.parametrize("spec, words", [
    ({"seed": 1}, "seed: plan 1, dataset 0"),
    ({"noise_sigma": 2.0}, "noise_sigma: plan 2.0, dataset 12.0"),
    ({"n_cases": 7}, "n_cases: plan 7, dataset 6"),
])
def test_generated_source_made_with_other_options_is_refused(tmp_path, caplog, spec, words):
    # Without the check a plan whose generator seed changed ran silently on the old cases.
    _generate(tmp_path)
    rc, run = _dry(tmp_path, _synthetic_plan(tmp_path, **spec))
    assert rc == 2 and not run.exists()
    assert "Dataset970_SynGen exists" in caplog.text and "other options than the plan's" in caplog.text
    assert words in caplog.text and "another --nnunet-dir" in caplog.text


def test_source_not_written_by_the_generator_is_used_with_a_note(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    _nn_with_source(tmp_path)
    plan = tiny_plan(tmp_path, synthetic={"Dataset990_Tiny": {"n_cases": 9}})
    rc, run = _dry(tmp_path, plan)
    assert rc == 0, caplog.text
    assert "records no generator options" in caplog.text


def test_comparison_refuses_a_generated_source_made_with_other_options(tmp_path):
    # atso_nnunet_compare reads the sources (the seeds' labeled pool) before any run's preflight.
    from atso_nnunet.paths import NnUNetPaths
    from atso_nnunet.plan import load_plan
    from atso_nnunet.run.prepare import ensure_sources

    _generate(tmp_path)
    paths = NnUNetPaths.under(tmp_path / "nn")
    with pytest.raises(InputError, match="seed: plan 3, dataset 0"):
        ensure_sources(load_plan(_synthetic_plan(tmp_path, seed=3)), paths)
    assert ensure_sources(load_plan(_synthetic_plan(tmp_path)), paths)[0].name == "Dataset970_SynGen"


def _two_foreground_labels(nn):
    ds = nn / "nnUNet_raw" / "Dataset990_Tiny" / "dataset.json"
    data = json.loads(ds.read_text())
    data["labels"] = {"background": 0, "pancreas": 1, "tumour": 2}
    ds.write_text(json.dumps(data))


@pytest.mark.parametrize("labels", [1, 2])
def test_labeled_mean_volume_needs_one_foreground_label_before_any_work(tmp_path, caplog, labels):
    # The threshold is one probability for one organ; the check ran at the first pseudo-label
    # fusion, after M0 had trained: now before the run folder exists.
    nn = _nn_with_source(tmp_path)
    if labels == 2:
        _two_foreground_labels(nn)
    rc, run = _dry(tmp_path, tiny_plan(tmp_path, fusion="mean", pseudo_label_volume="labeled_mean"))
    if labels == 1:
        assert rc == 0, caplog.text
        return
    assert rc == 2 and not run.exists()
    assert ("pseudo_label_volume: 'labeled_mean' is for tasks with one foreground label; the labeled cases' "
            "source Dataset990_Tiny has 2 (pancreas, tumour)") in caplog.text
    assert "set pseudo_label_volume to 'predicted'" in caplog.text


def test_labeled_mean_volume_is_checked_on_a_synthetic_source_not_generated_yet(tmp_path, caplog):
    plan = json.loads(_synthetic_plan(tmp_path, lesions=True).read_text())
    plan.update(fusion="mean", pseudo_label_volume="labeled_mean")
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    rc, run = _dry(tmp_path, tmp_path / "plan.json")
    assert rc == 2 and not run.exists()
    assert "source Dataset970_SynGen has 2 (pancreas, tumour)" in caplog.text
    assert not (tmp_path / "nn" / "nnUNet_raw" / "Dataset970_SynGen").exists()     # nothing generated


def test_predicted_volume_runs_on_two_foreground_labels(tmp_path, caplog):
    _two_foreground_labels(_nn_with_source(tmp_path))
    rc, _ = _dry(tmp_path, tiny_plan(tmp_path, fusion="mean"))
    assert rc == 0, caplog.text

"""Issue 29: every bad command-line input is refused before any work, the same with and without
``--dry-run``, with exit status 2, a message naming the option and the fix, and nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atso_nnunet.cli import compare, convert, run, synth

from helpers import tiny_plan, write_tiny_dataset


def tree(root: Path) -> list:
    """Every path below ``root`` (with a / after folders): what a refused command must leave as it was."""
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A source dataset and a plan in tmp_path; commands run with tmp_path as the current folder."""
    write_tiny_dataset(tmp_path / "nn" / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=9, n_reference=0,
                       n_test=0)
    plan = tiny_plan(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATSO_WARM_WORKERS", "0")
    return tmp_path, plan


def run_args(tmp_path, plan, *extra):
    return ["--plan", str(plan), "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(tmp_path / "run"), *extra]


def refused_while_parsing(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("flags, words", [
    (["--cpu-jobs", "0"], "argument --cpu-jobs: 0 is below the minimum 1; give a whole number from 1 to 1024"),
    (["--retries", "-1"], "argument --retries: -1 is below the minimum 0"),
    (["--num-processes", "0"], "argument --num-processes: 0 is below the minimum 1"),
    (["--jobs-per-gpu", "0"], "argument --jobs-per-gpu: 0 is below the minimum 1"),
    (["--generations", "1000000000000"], "argument --generations: 1000000000000 is above the limit 100"),
    (["--subsets", "0"], "argument --subsets: 0 is below the minimum 1"),
    (["--sec-per-iter", "nan"], "argument --sec-per-iter: NaN is not a finite number"),
    (["--sec-per-iter", "0"], "argument --sec-per-iter: 0.0 is not above the minimum 0"),
    (["--executor", "slurm", "--slurm-mem-gb", "inf"], "argument --slurm-mem-gb: Infinity is not a finite number"),
    (["--executor", "slurm", "--slurm-time-min", "99999999"], "argument --slurm-time-min: 99999999 is above the limit"),
    (["--cpu-jobs", "two"], "argument --cpu-jobs: 'two' is not a whole number"),
])
def test_numbers_out_of_their_limits_are_refused_while_parsing(workspace, capsys, flags, words):
    tmp_path, plan = workspace
    before = tree(tmp_path)
    for dry in ([], ["--dry-run"]):
        err = refused_while_parsing(run.main, run_args(tmp_path, plan, *flags, *dry), capsys)
        assert words in err and "Traceback" not in err
        assert tree(tmp_path) == before


@pytest.mark.parametrize("flags, words", [
    (["--slurm-partition", "gpu"], "--slurm-partition: SLURM option(s) given with the local executor"),
    (["--slurm-cpus", "4", "--slurm-max-parallel", "2"], "--slurm-cpus, --slurm-max-parallel: SLURM option(s)"),
    (["--executor", "slurm", "--gpus", "0"], "--gpus: local option(s) given with --executor slurm"),
    (["--executor", "slurm", "--cpu-jobs", "1"], "--cpu-jobs: local option(s) given with --executor slurm"),
    (["--executor", "slurm", "--no-warm-workers"], "--no-warm-workers: local option(s)"),
    (["--gpus", "0,0"], "GPU 0 given more than once"),
    (["--step", "g9/train/nothing"], "--step g9/train/nothing: no such step"),
    (["--step", "g1/train/g1_h1/axia"], "did you mean g1/train/g1_h1/axial"),
])
def test_bad_options_are_refused_before_any_work_with_and_without_dry_run(workspace, caplog, flags, words):
    tmp_path, plan = workspace
    before = tree(tmp_path)
    for dry in ([], ["--dry-run"]):
        caplog.clear()
        assert run.main(run_args(tmp_path, plan, *flags, *dry)) == 2, dry
        assert words in caplog.text and "Traceback" not in caplog.text
        assert tree(tmp_path) == before, dry       # no preprocessed file, no run folder, no nnU-Net folder


@pytest.mark.parametrize("flags, words", [
    (["--sec-per-iter", "0.5"], "--sec-per-iter prices a schedule in GPU-hours and only works with --dry-run"),
    (["--timing-from", "."], "--timing-from prices a schedule in GPU-hours and only works with --dry-run"),
    (["--device", "cuda"], "--device cuda: torch finds no CUDA GPU on this machine"),
])
def test_dry_run_only_options_and_a_missing_gpu_are_refused_before_any_work(workspace, caplog, flags, words):
    import torch

    if flags[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    tmp_path, plan = workspace
    before = tree(tmp_path)
    assert run.main(run_args(tmp_path, plan, *flags)) == 2
    assert words in caplog.text and "Traceback" not in caplog.text
    assert tree(tmp_path) == before


def test_unknown_step_is_refused_before_planning_writes_preprocessed_files(workspace, caplog):
    """Issue 29: without --dry-run an unknown --step wrote 28 preprocessed files first."""
    tmp_path, plan = workspace
    assert run.main(run_args(tmp_path, plan, "--step", "no/such/step")) == 2
    assert not (tmp_path / "nn" / "nnUNet_preprocessed").exists() and not (tmp_path / "run").exists()
    assert "see --dry-run for the step ids" in caplog.text


@pytest.mark.parametrize("option", ["--nnunet-dir", "--run-dir"])
def test_a_file_where_a_folder_is_expected_is_refused(workspace, capsys, option):
    tmp_path, plan = workspace
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file")
    before = tree(tmp_path)
    base = {"--nnunet-dir": str(tmp_path / "nn"), "--run-dir": str(tmp_path / "run")}
    for target, words in ((a_file, f"{a_file} is a file, not a folder"),
                          (a_file / "sub", f"is inside {a_file}, which is a file")):
        base[option] = str(target)
        for dry in ([], ["--dry-run"]):
            err = refused_while_parsing(run.main, ["--plan", str(plan), *(x for kv in base.items() for x in kv), *dry],
                                        capsys)
            assert f"argument {option}: " in err and words in err
            assert tree(tmp_path) == before


def test_a_file_named_like_an_nnunet_folder_is_refused(workspace, caplog):
    tmp_path, plan = workspace
    (tmp_path / "nn" / "nnUNet_results").write_text("not a folder")
    for dry in ([], ["--dry-run"]):
        caplog.clear()
        assert run.main(run_args(tmp_path, plan, *dry)) == 2
        assert f"nnUNet_results {tmp_path / 'nn' / 'nnUNet_results'} is a file, not a folder" in caplog.text


def test_a_plan_with_a_huge_generation_count_is_refused_with_and_without_dry_run(workspace, caplog):
    """One dry run ran out of memory building a schedule of 10**12 generations."""
    tmp_path, _ = workspace
    plan = tiny_plan(tmp_path, generations=10 ** 12, training={"num_epochs": 10 ** 12, "initial_lr": 1e400})
    before = tree(tmp_path)
    for dry in ([], ["--dry-run"]):
        caplog.clear()
        assert run.main(run_args(tmp_path, plan, *dry)) == 2
        for words in ("generations: 1000000000000 is above the limit 100",
                      "training.num_epochs: 1000000000000 is above the limit 100000",
                      "training.initial_lr: Infinity is not a finite number"):
            assert words in caplog.text
        assert tree(tmp_path) == before


def test_compare_refuses_the_same_options(workspace, capsys, caplog):
    tmp_path, plan = workspace
    before = tree(tmp_path)
    base = ["--plan", str(plan), "--nnunet-dir", str(tmp_path / "nn"), "--out", str(tmp_path / "cmp")]
    err = refused_while_parsing(compare.main, [*base, "--seeds", "-1"], capsys)
    assert "argument --seeds: -1 is below the minimum 0" in err
    err = refused_while_parsing(compare.main, [*base, "--num-processes", "0"], capsys)
    assert "argument --num-processes" in err
    assert compare.main([*base, "--slurm-partition", "gpu"]) == 2
    assert "--slurm-partition: SLURM option(s) given with the local executor" in caplog.text
    (tmp_path / "cmp.txt").write_text("x")
    before = tree(tmp_path)
    err = refused_while_parsing(compare.main, [*base[:-1], str(tmp_path / "cmp.txt")], capsys)
    assert "argument --out" in err and "is a file, not a folder" in err
    assert tree(tmp_path) == before


@pytest.mark.parametrize("main, argv", [
    (convert.main, ["nih", "--dicom-root", "d", "--labels-root", "l", "--dataset-id", "1000"]),
    (convert.main, ["msd", "--task-folder", "t", "--dataset-id", "0"]),
    (synth.main, ["--dataset-id", "1000"]),
])
def test_dataset_ids_outside_the_plans_range_are_refused(workspace, capsys, main, argv):
    tmp_path, _ = workspace
    before = tree(tmp_path)
    err = refused_while_parsing(main, [*argv, "--nnunet-dir", str(tmp_path / "nn")], capsys)
    assert "argument --dataset-id" in err and "give a whole number from 1 to 999" in err
    assert tree(tmp_path) == before


def test_the_layout_refuses_a_dataset_id_nnunet_cannot_have():
    from atso_nnunet.data import layout
    from atso_nnunet.errors import InputError

    assert layout.dataset_folder_name(801, "NIHPancreas") == "Dataset801_NIHPancreas"
    for bad in (0, 1000, 12345):
        with pytest.raises(InputError, match="nnU-Net dataset ids are 1 to 999"):
            layout.dataset_folder_name(bad, "X")


def test_plan_json_is_valid_after_the_refusals(workspace):
    """The plan the refusals used is itself fine: a dry run of it succeeds."""
    tmp_path, plan = workspace
    assert run.main(run_args(tmp_path, plan, "--dry-run")) == 0
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["dataset_id"] == 991


def test_a_bad_cpu_jobs_variable_is_refused_with_and_without_dry_run(workspace, monkeypatch, caplog):
    tmp_path, plan = workspace
    monkeypatch.setenv("ATSO_CPU_JOBS", "0")
    before = tree(tmp_path)
    for dry in ([], ["--dry-run"]):
        caplog.clear()
        assert run.main(run_args(tmp_path, plan, *dry)) == 2
        assert "ATSO_CPU_JOBS must be an integer from 1 to 1024, got '0'" in caplog.text
        assert tree(tmp_path) == before
    assert run.main(run_args(tmp_path, plan, "--cpu-jobs", "1", "--dry-run")) == 0   # the flag beats it

"""benchmarks/bench_fullsize_iteration.py: its plan is a valid full-size labeled-only plan, and it times epochs from nnU-Net's logs."""
from __future__ import annotations

import json

import pytest

from atso_nnunet.plan.load import plan_from_dict
from helpers import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_fullsize_iteration.py")


def test_timing_plan_is_labeled_only_on_512_slices_with_nnunets_planned_network(bench):
    data = bench.timing_plan(4, 64, ["axial", "coronal"], 8, 50)
    plan = plan_from_dict(data)
    assert plan.method == "supervised" and plan.generations == 0
    assert "network" not in data  # nnU-Net's default planner sizes the network, patch and batch
    assert len(plan.labeled) == 4 and len(plan.test) == 1 and not plan.reference
    assert data["synthetic"][bench.SOURCE]["shape"] == [512, 512, 64]
    assert plan.training.iterations("M0") == 8 * 50


def write_log(folder, view, starts):
    log_dir = folder / "run" / "models" / "M0" / "nnUNet_results" / "Dataset989_FullSize" \
        / f"ATSOTrainer__ATSOPlans_{view}__2d" / "fold_all"
    log_dir.mkdir(parents=True)
    lines = [f"2026-12-07 00:{m:02d}:{s:02d}.000000: Epoch {i}" for i, (m, s) in enumerate(starts)]
    (log_dir / "training_log_2026_12_7_00_00_00.txt").write_text("\n".join(lines) + "\n")


def test_view_timing_leaves_out_the_warmup_and_reads_the_planned_network(bench, tmp_path):
    # epochs start at 0 s, 60 s (compilation), 70 s, 80 s, 92 s: timed epochs 60, 10, 10, 12 (the last is untimed)
    write_log(tmp_path, "axial", [(0, 0), (1, 0), (1, 10), (1, 20), (1, 32)])
    pre = tmp_path / "nnunet" / "nnUNet_preprocessed" / "Dataset989_FullSize"
    pre.mkdir(parents=True)
    arch = {"arch_kwargs": {"n_stages": 8, "features_per_stage": [32, 64, 128, 256, 512, 512, 512, 512]}}
    (pre / "ATSOPlans_axial.json").write_text(json.dumps(
        {"configurations": {"2d": {"patch_size": [512, 512], "batch_size": 12, "architecture": arch}}}))
    timing = bench.view_timing(tmp_path, "axial", iterations=50, warmup=1)
    assert timing["epoch_wall_s"] == [60.0, 10.0, 10.0, 12.0]
    assert timing["sec_per_iteration"] == pytest.approx(10.0 / 50)
    assert timing["batch_size"] == 12 and timing["patch_size"] == [512, 512] and timing["n_stages"] == 8
    assert bench.view_timing(tmp_path, "sagittal", iterations=50, warmup=1)["sec_per_iteration"] is None


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "3", "--warmup", "2"], "--epochs (3) must exceed --warmup (2"),
    (["--iterations", "0"], "--iterations must be at least 1"),
])
def test_bad_options_are_refused_before_any_work(bench, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(tmp_path / "out")] + argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

"""nnU-Net's Weights & Biases logging through the driver: one offline W&B run per training, named
after its step, warm workers included (skipped where ``wandb`` is not installed: ``pip install
atso_nnunet[wandb]``; the test extra installs it)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import offline_wandb_env, offline_wandb_runs, tiny_plan, write_tiny_dataset

pytest.importorskip("wandb", reason="wandb is not installed (pip install atso_nnunet[wandb])")


@pytest.mark.e2e
def test_every_training_of_a_tiny_run_logs_an_offline_wandb_run_named_after_its_step(tmp_path):
    nn = tmp_path / "nn"
    write_tiny_dataset(nn / "nnUNet_raw", dataset_id=990, name="Tiny", n_labeled=9, n_reference=0, n_test=0)
    # the full ATSO schedule of one generation: M0, the two half-models side by side, the final model
    plan = tiny_plan(tmp_path, generations=1,
                     method_options={"atso": {"test_model": "ensemble", "final_labels": "last"}})
    run = tmp_path / "run"
    base = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA" and not k.startswith("ATSO_")}
    env = dict(offline_wandb_env(base, tmp_path / "wandb_home", project="atso-test", group="tiny-run"),
               ATSO_WARM_WORKERS="1")
    cmd = [sys.executable, "-m", "atso_nnunet.cli.run", "--plan", str(plan), "--nnunet-dir", str(nn),
           "--run-dir", str(run), "--num-processes", "1"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]

    trainings = sorted(str(p.relative_to(run / "state").with_suffix(""))
                       for p in (run / "state").rglob("*.done") if "/train/" in str(p))
    assert trainings == ["final/train/final/axial", "g0/train/M0/axial", "g1/train/g1_h1/axial",
                         "g1/train/g1_h2/axial"]
    for step in trainings:
        assert f"job {step.replace('/', '__')}: attempt 1 started (warm worker)" in res.stderr, step
    runs = offline_wandb_runs(run)
    assert sorted(runs) == trainings
    assert {(r["group"], r["project"]) for r in runs.values()} == {("tiny-run", "atso-test")}
